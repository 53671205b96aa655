"""lft.runs.console holds back exactly the messages lft expects: transformers' report of the head lft adds (a
report of anything else still shows), and bitsandbytes' kernel note until a run loads k-bit weights on the CPU."""

import logging
from pathlib import Path

from safetensors.torch import load_file, save_file
from transformers import AutoModelForSequenceClassification

from lft.models.loading import load_pretrained
from lft.runs import console


def load_classifier(make_cfg, path: str):
    return load_pretrained(make_cfg(f"model.name_or_path={path}").model, AutoModelForSequenceClassification,
                           num_labels=2)


def test_the_head_lft_adds_loads_quietly_and_a_missing_backbone_weight_still_reports(make_cfg, tiny_bert, tmp_path,
                                                                                      caplog):
    load_classifier(make_cfg, tiny_bert)  # a BertModel checkpoint: the classifier is new
    assert "LOAD REPORT" not in caplog.text

    broken = tmp_path / "broken"
    broken.mkdir()
    for item in Path(tiny_bert).iterdir():
        (broken / item.name).write_bytes(item.read_bytes())
    weights = load_file(broken / "model.safetensors")
    (dropped,) = [k for k in weights if k.endswith("layer.0.attention.self.query.weight")]
    del weights[dropped]
    save_file(weights, broken / "model.safetensors", metadata={"format": "pt"})
    load_classifier(make_cfg, str(broken))
    assert "LOAD REPORT" in caplog.text and "attention.self.query.weight | MISSING" in caplog.text


def test_a_report_of_a_checkpoint_that_had_the_head_is_not_expected(make_cfg, tiny_teacher):
    model, info = AutoModelForSequenceClassification.from_pretrained(tiny_teacher, output_loading_info=True)
    info = {**info, "missing_keys": {"classifier.weight"}}  # its own head missing: a broken checkpoint
    assert not console.only_new_head(model, info, ["BertForSequenceClassification"])
    assert console.only_new_head(model, info, ["BertModel"])
    assert not console.only_new_head(model, {**info, "missing_keys": {"bert.pooler.dense.weight"}}, ["BertModel"])
    assert console.only_new_head(model, {**info, "unexpected_keys": {"lm_head.weight"}}, ["BertLMHeadModel"])
    assert not console.only_new_head(model, {**info, "unexpected_keys": {"encoder.layer.9.x"}}, ["BertModel"])


def test_bitsandbytes_kernel_note_waits_for_a_k_bit_run_on_the_cpu(caplog):
    # bitsandbytes logs this once, at import, on CPUs with AVX512-BF16 (this machine has none): the same call here.
    console.hold_bitsandbytes_kernel_note()  # as `import lft` does; an earlier k-bit test in this process showed it
    bnb = logging.getLogger(console.BNB_KERNEL[0])
    caplog.set_level(logging.WARNING)
    bnb.warning("Failed to load CPU gemm_4bit_forward from kernels-community: %s. Please make sure you already "
                "`pip install kernels` and the kernels >= 0.11.1", OSError("offline"))
    bnb.warning("Some other bitsandbytes warning")
    assert [r.getMessage() for r in caplog.records] == ["Some other bitsandbytes warning"]
    console.show_bitsandbytes_kernel_note()  # what load_pretrained does for k-bit weights without CUDA
    assert "gemm_4bit_forward" in caplog.records[-1].getMessage()
