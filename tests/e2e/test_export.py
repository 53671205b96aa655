"""`python -m lft.export`: merged models equal base + adapter and load with plain transformers; bad input."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from lft.config.errors import ConfigError
from lft.export import export, main, parse
from lft.runs.folder import load_run_model, saved_base
from lft.train import train

IDS = torch.tensor([[101, 2023, 3185, 2001, 2307, 102], [101, 6659, 1010, 5949, 102, 0]])
MASK = (IDS != 0).long()


@pytest.fixture(scope="module")
def runs(tmp_path_factory, tiny_bert):
    """One finished tiny run per strategy the tests export (trained once for the module)."""
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from lft.config.paths import CONFIG_DIR

    root, found = tmp_path_factory.mktemp("runs"), {}
    for name, model, extra in [("lora", tiny_bert, ["strategy.target_modules=[query,value,dense]"]),
                               ("ia3", tiny_bert, []), ("prompt_tuning", tiny_bert, []), ("full", tiny_bert, [])]:
        with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
            cfg = compose("train", [f"strategy={name}", f"model.name_or_path={model}", "test=false", *extra])
        with open_dict(cfg):
            cfg.paths.output_dir, cfg.paths.cache_dir = str(root / name), str(root / "cache")
            cfg.trainer.update(max_epochs=1, limit_train_batches=3, limit_val_batches=1, enable_progress_bar=False,
                               accelerator="cpu")
        train(cfg)
        found[name] = root / name
    return found


def _logits(model):
    with torch.no_grad():
        return model.eval()(input_ids=IDS, attention_mask=MASK).logits


@pytest.mark.parametrize("strategy", ["lora", "ia3"])
def test_merged_logits_equal_base_plus_adapter(runs, tmp_path, strategy):
    unmerged = _logits(load_run_model(runs[strategy]))
    out = export(str(runs[strategy]), str(tmp_path / "out"), merge=True)
    merged = AutoModelForSequenceClassification.from_pretrained(out)  # plain transformers, a plain folder
    assert not (out / "adapter_config.json").exists() and (out / "tokenizer.json").exists()
    torch.testing.assert_close(_logits(merged), unmerged, rtol=1e-5, atol=1e-5)
    assert merged.config.id2label == {0: "negative", 1: "positive"}


def test_export_loads_without_lft_or_peft(runs, tmp_path):
    out = tmp_path / "merged"
    main([f"run={runs['lora']}", f"out={out}", "merge=true"])
    expected = _logits(load_run_model(runs["lora"])).argmax(-1).tolist()
    code = (  # peft and lft made unimportable: only transformers (and torch) remain
        "import sys; sys.modules['peft'] = None; sys.modules['lft'] = None\n"
        "import torch; from transformers import AutoModelForSequenceClassification, AutoTokenizer\n"
        f"m = AutoModelForSequenceClassification.from_pretrained({str(out)!r}).eval()\n"
        f"ids = torch.tensor({IDS.tolist()}); print(m(input_ids=ids, attention_mask=(ids != 0).long()).logits"
        ".argmax(-1).tolist())\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == str(expected)


def test_adapter_only_export_and_full_runs(runs, tmp_path):
    out = export(str(runs["prompt_tuning"]), str(tmp_path / "adapter"), merge=False)
    assert (out / "adapter_config.json").exists() and (out / "config.json").exists() and (out / "tokenizer.json").exists()
    out = export(str(runs["full"]), str(tmp_path / "full"), merge=True)
    torch.testing.assert_close(_logits(AutoModelForSequenceClassification.from_pretrained(out)),
                               _logits(load_run_model(runs["full"])))


def test_bad_exports_say_what_to_do(runs, tmp_path):
    with pytest.raises(ConfigError, match="PROMPT_TUNING adapter .* cannot merge into the base; .* merge=false"):
        export(str(runs["prompt_tuning"]), str(tmp_path / "x"), merge=True)
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="exists and is not empty"):
        export(str(runs["lora"]), str(taken))
    assert (taken / "keep.txt").read_text() == "mine"
    with pytest.raises(ConfigError, match="not a finished lft run"):
        export(str(tmp_path), str(tmp_path / "y"))
    with pytest.raises(ConfigError, match="unknown argument"):
        parse(["run=a", "out=b", "merge_adapter=true"])
    with pytest.raises(ConfigError, match="out= is required"):
        parse(["run=a"])


def kbit_forward_rounding(run: Path) -> float:
    """Relative error of one bitsandbytes 4-bit layer of the run's base, forward against its own dequantized
    weights in fp32, on this machine: ~1e-7 where it computes in fp32, bf16's ~4e-3 where its CPU kernel rounds
    to bf16 (seen on CPUs with AVX-512-BF16, whatever compute_dtype says)."""
    import bitsandbytes as bnb
    from peft import PeftConfig

    adapter = run / "adapter"
    base = saved_base(run, adapter, PeftConfig.from_pretrained(adapter), dequantize=False)
    layer = next(m for m in base.modules() if isinstance(m, bnb.nn.Linear4bit))
    weight = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state).float()
    x = torch.randn(2, 8, layer.in_features, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        exact = x @ weight.T + (layer.bias if layer.bias is not None else 0)
        return ((layer(x).float() - exact).abs().max() / exact.abs().max()).item()


def test_kbit_adapters_merge_into_their_dequantized_base(make_cfg, tiny_bert_64, tmp_path, caplog):
    cfg = make_cfg("strategy=qlora", f"model.name_or_path={tiny_bert_64}", "test=false")
    train(cfg)
    trained = _logits(load_run_model(cfg.paths.output_dir))  # 4-bit base + adapter, as trained
    caplog.set_level("INFO", logger="lft")
    out = export(cfg.paths.output_dir, str(tmp_path / "merged"), merge=True)
    model = AutoModelForSequenceClassification.from_pretrained(out)
    assert not hasattr(model.config, "quantization_config") and "dequantized to float, then the adapter" in caplog.text
    # Merged into the k-bit weights it learned against (not the original ones): the trained model's outputs, within
    # the k-bit forward's own rounding here (merging into the original weights is off by NF4's error, far more).
    tolerance = max(1e-4, 4 * kbit_forward_rounding(Path(cfg.paths.output_dir)) * trained.abs().max().item())
    torch.testing.assert_close(_logits(model), trained, rtol=0, atol=tolerance)
    # merge=false keeps the adapter for a k-bit base as trained.
    assert (export(cfg.paths.output_dir, str(tmp_path / "adapter"), merge=False) / "adapter_config.json").exists()


def test_cli_entry_point(runs, tmp_path, capsys):
    out = tmp_path / "cli"
    result = subprocess.run([sys.executable, "-m", "lft.export", f"run={runs['lora']}", f"out={out}"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (Path(out) / "model.safetensors").exists()
    with pytest.raises(SystemExit) as exit_info:  # bad input: one line, exit status 2, no traceback
        main([f"run={runs['lora']}", f"out={out}"])
    assert exit_info.value.code == 2
