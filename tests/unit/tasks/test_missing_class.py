"""A train split without a row of some class is warned about when the task encodes it."""

from tests.e2e.test_refusals import GOOD_JSONL, REVIEWS, jsonl


def test_train_split_missing_a_class_is_warned(make_cfg, tiny_bert, tmp_path, caplog):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "train.jsonl").write_text(jsonl([r | {"label": ["negative", "neutral"][i % 2]} for i, r in enumerate(REVIEWS)]))
    (folder / "validation.jsonl").write_text(GOOD_JSONL)
    cfg = make_cfg(f"model.name_or_path={tiny_bert}", f"data.path={folder}", "data.label_names=[negative,neutral,positive]",
                   "data.val_fraction=0.25")
    from lft.models.loading import load_tokenizer
    from lft.tasks import build_task

    with caplog.at_level("WARNING"):
        build_task(cfg.data, cfg.model).encode(load_tokenizer(cfg.model), seed=0)
    assert "The train split has no row labelled ['positive']" in caplog.text
