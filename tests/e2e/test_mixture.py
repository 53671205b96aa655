"""Task mixtures through train(): a mixture trains and reports each member; bad mixtures are refused."""

import json

import pytest

from lft.config.errors import ConfigError
from lft.train import train


@pytest.fixture(scope="module")
def mixture_data(tmp_path_factory):
    """A raw-text file and IMDB-shaped sentiment rows (integer labels)."""
    path = tmp_path_factory.mktemp("mixture")
    (path / "text.txt").write_text("\n".join(f"line {i} of some plain text about the weather" for i in range(300)))
    words = {0: "awful boring bad", 1: "great fun lovely"}
    for split, n in (("train", 24), ("test", 12)):
        with (path / f"{split}.jsonl").open("w") as f:
            for i in range(n):
                f.write(json.dumps({"text": f"review {i}: {words[i % 2]}", "label": i % 2}) + "\n")
    return path


def _mixture_cfg(make_cfg, model, pairs_data, mixture_data, mixture: str, *extra):
    short = "{max_new_tokens: 4, val_samples: 4, test_samples: 4}"
    return make_cfg("data=mixture", f"data.mixture={mixture}", f"model.name_or_path={model}",
                    f"data.members.dialogsum.path={pairs_data}", f"data.members.text.path={mixture_data}/text.txt",
                    f"data.members.imdb_instruct.path={mixture_data}", "data.batch_size=4", "data.eval_batch_size=4",
                    f"+data.members.dialogsum.generate={short}", f"+data.members.imdb_instruct.generate={short}",
                    "+data.members.text.block_size=16", "+data.members.dialogsum.max_source_length=64", *extra)


def test_a_mixture_trains_and_reports_each_member(make_cfg, tiny_llama, pairs_data, mixture_data):
    cfg = _mixture_cfg(make_cfg, tiny_llama, pairs_data, mixture_data, "{dialogsum: 2, text: 1, imdb_instruct: 1}",
                       "trainer.limit_val_batches=100", "trainer.limit_test_batches=100",
                       "data.monitor.metric=val/dialogsum/rouge1", "data.monitor.mode=max")
    metrics = train(cfg)
    for key in ("val/loss", "val/dialogsum/rouge1", "val/dialogsum/loss", "val/text/perplexity", "val/text/loss",
                "val/imdb_instruct/accuracy", "test/dialogsum/bleu", "test/imdb_instruct/accuracy",
                "best_val/dialogsum/rouge1"):
        assert key in metrics, sorted(metrics)
    assert metrics["val/text/perplexity"] > 1
    assert "val/text/rouge1" not in metrics  # raw text is scored by perplexity only


@pytest.mark.parametrize(("mixture", "model", "message"), [
    ("{dialogsum: 1, nosuch: 1}", "tiny_llama", "'nosuch' is not a data config"),
    ("{dialogsum: 1, alpaca: 0}", "tiny_llama", "weights must be positive numbers"),
    ("{dialogsum: 1, imdb: 1}", "tiny_llama", "member 'imdb' is a classification data config"),
    ("{dialogsum: 1, text: 1}", "tiny_t5", "needs a decoder-only model"),
])
def test_bad_mixtures_are_refused(make_cfg, request, pairs_data, mixture_data, mixture, model, message):
    cfg = _mixture_cfg(make_cfg, request.getfixturevalue(model), pairs_data, mixture_data, mixture,
                       "data.members.alpaca.path=unused")
    with pytest.raises(ConfigError, match=message):
        train(cfg)
