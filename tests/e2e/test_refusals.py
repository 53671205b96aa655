"""What lft refuses: every bad input below stops train() with one ConfigError line, in seconds, before training.

This table is the source of truth for docs/refusals.md ("What lft refuses"). To add a case, append a `refusal(...)`:
  id        what a test report shows
  overrides Hydra overrides, with placeholders: {data} = a folder holding the case's files;
            {bert}, {gpt2}, {t5} = tiny random models (tiny_bert is the model unless the case names another);
            {{ and }} stand for literal braces
  files     {name: content} written into {data} first (bytes, or text written as UTF-8); names may hold folders
            ("old_run/config.yaml"), so a case can also stage a folder that is not a run
  match     a regex the message must match
  fast      False keeps the composed trainer settings (make_cfg otherwise forces a short CPU run, overwriting
            trainer.accelerator and comparing trainer.max_epochs)
"""

import gzip
import importlib.util
import json
import time
from pathlib import Path

import pytest
import torch

from lft.config.errors import ConfigError
from lft.train import train
from tests.e2e.test_cli import run_cli

# A refusal may cost tokenizer, data and (tiny) model loading, never training. Alone one takes under a second; the
# first in an xdist worker also pays lazy imports beside the other worker's load (5.1 s once in CI).
MAX_SECONDS = 10
MODELS = {"bert": "tiny_bert", "gpt2": "tiny_gpt2", "t5": "tiny_t5"}
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


REVIEWS = [{"text": f"review number {i}", "label": ["negative", "positive"][i % 2]} for i in range(8)]
GOOD_JSONL = jsonl(REVIEWS)
GOOD_CSV = "text,label\n" + "".join(f"{r['text']},{r['label']}\n" for r in REVIEWS)
DIALOGUES = jsonl([{"dialogue": f"#Person1#: Hi {i}. #Person2#: Hello.", "summary": "They greet."} for i in range(8)])


def refusal(id: str, *overrides: str, match: str, files: dict | None = None, fast: bool = True, marks=()):
    return pytest.param(overrides, files or {}, match, fast, id=id, marks=marks)


REFUSALS = [
    # --- data files: empty, malformed, mislabelled ---
    refusal("empty-file", "data.path={data}/train.jsonl", files={"train.jsonl": b""},
            match=r"train\.jsonl is empty \(0 bytes\)"),
    refusal("csv-header-only", "data.path={data}/train.csv", files={"train.csv": "text,label\n"},
            match=r"train\.csv holds no data rows \(a header only\?\)"),
    refusal("gz-not-gzip", "data.path={data}/train.jsonl.gz", files={"train.jsonl.gz": GOOD_JSONL},
            match=r"train\.jsonl\.gz ends in \.gz but is not gzip-compressed; rename it to 'train\.jsonl'"),
    refusal("gz-truncated", "data.path={data}/train.jsonl.gz",
            files={"train.jsonl.gz": gzip.compress(GOOD_JSONL.encode())[:40]}, match=r"is a damaged gzip file"),
    refusal("jsonl-malformed-line", "data.path={data}/train.jsonl",
            files={"train.jsonl": jsonl(REVIEWS[:2]) + '{"text": oops}\n' + jsonl(REVIEWS[2:])},
            match=r"train\.jsonl is not valid JSON: line 3 is not JSON"),
    refusal("csv-named-jsonl", "data.path={data}/train.jsonl", files={"train.jsonl": GOOD_CSV},
            match=r"train\.jsonl is not valid JSON: line 1 is not JSON"),
    refusal("csv-ragged-row", "data.path={data}/train.csv",
            files={"train.csv": "text,label\ngood film,positive\nbad, boring film,negative\n"},
            match=r"train\.csv has 3 fields on line 3 where the header has 2"),
    refusal("csv-latin-1", "data.path={data}/train.csv",
            files={"train.csv": "text,label\ngood,positive\nun caf\xe9 froid,negative\n".encode("latin-1")},
            match=r"train\.csv is not utf-8 text \(line 3 .*data\.encoding=latin-1"),
    refusal("jsonl-latin-1", "data.path={data}/train.jsonl",
            files={"train.jsonl": jsonl(REVIEWS).replace("review number 5", "caf\xe9 5").encode("latin-1")},
            match=r"train\.jsonl is not utf-8 text \(line 6 holds the bytes b'\\xe9'\)"),
    refusal("unknown-encoding", "data.encoding=latin-9000",
            match=r"data\.encoding='latin-9000' must be a text encoding Python knows"),
    refusal("parquet-1-byte", "data.path={data}/train.parquet", files={"train.parquet": b"x"},
            match=r"train\.parquet is not a readable parquet file"),
    refusal("csv-empty-cell", "data.path={data}/train.csv",
            files={"train.csv": GOOD_CSV + ",positive\n"},
            match=r"data: 1 of 9 rows of \S+train\.csv have no value in a column lft needs \(data\.text_column='text': "
                  r"1 \(row 9\);.*over data\.max_bad_fraction=0\.05\. Fill or remove those rows"),
    refusal("folder-without-data-files", "data.path={data}", files={"notes.md": "# my data"},
            match=r"holds no data files"),
    refusal("unknown-file-format", "data.path={data}/train.xlsx", files={"train.xlsx": b"PK"},
            match=r"'train\.xlsx' has an unknown format"),
    refusal("split-file-is-a-folder", "data.path={{train: {data}/train.jsonl}}", files={"train.jsonl/x": ""},
            match=r"the train file '.*train\.jsonl' is a folder, not a file"),
    refusal("missing-path", "data.path=/no/such/folder", match=r"data\.path='/no/such/folder' does not exist"),
    refusal("missing-column", "data.text_column=review", match=r"data\.text_column='review' is not a column"),
    refusal("one-row-cannot-carve-validation", "data.path={data}/train.jsonl", files={"train.jsonl": jsonl(REVIEWS[:1])},
            match=r"train split has 1 row\(s\), too few to carve"),
    refusal("one-class-train", "data.path={data}",
            files={"train.jsonl": jsonl([r | {"label": "positive"} for r in REVIEWS]), "validation.jsonl": GOOD_JSONL,
                   "test.jsonl": GOOD_JSONL},
            match=r"every train row has the label 'positive'.*needs at least two classes"),
    refusal("label-outside-label_names", "data.label_names=[bad,good]",
            match=r"value '(positive|negative)' .* is not in data\.label_names"),
    refusal("empty-split-subset", "data.val_size=0", match=r"data\.val_size=0 must be an integer >= 1 or null"),
    refusal("template-names-missing-column", "data=dialogsum", "data.path={data}", "model.name_or_path={t5}",
            "data.template='Summarize: {{dialog}}'", files={"train.jsonl": DIALOGUES},
            match=r"data\.template references column 'dialog'"),
    # --- wrong types and out-of-range values ---
    refusal("max_epochs-not-int", "trainer.max_epochs=abc", fast=False,  # make_cfg's shortening would compare 'abc'
            match=r"trainer\.max_epochs='abc' must be an integer >= 1, -1 or null \(e\.g\. trainer\.max_epochs=3\)"),
    refusal("max_steps-negative", "trainer.max_steps=-5", match=r"trainer\.max_steps=-5 must be an integer >= 1 or -1"),
    refusal("accumulate-zero", "trainer.accumulate_grad_batches=0",
            match=r"trainer\.accumulate_grad_batches=0 must be an integer >= 1"),
    refusal("gradient_clip-not-number", "trainer.gradient_clip_val=abc",
            match=r"trainer\.gradient_clip_val='abc' must be a number >= 0 or null"),
    refusal("limit_train_batches-over-1", "trainer.limit_train_batches=1.5",
            match=r"trainer\.limit_train_batches=1\.5 must be a fraction in \[0, 1\]"),
    refusal("devices-zero", "trainer.devices=0", match=r"trainer\.devices=0 must be an integer >= 1"),
    refusal("lr-zero", "optimizer.lr=0", match=r"optimizer\.lr=0 must be a number > 0"),
    refusal("lr-not-number", "optimizer.lr=fast", match=r"optimizer\.lr='fast' must be a number > 0"),
    refusal("warmup_ratio-over-1", "scheduler.warmup_ratio=1.5",
            match=r"scheduler\.warmup_ratio=1\.5 must be a number in \[0, 1\)"),
    refusal("warmup_steps-negative", "scheduler.warmup_steps=-10",
            match=r"scheduler\.warmup_steps=-10 must be an integer >= 0"),
    refusal("both-warmups", "scheduler.warmup_steps=10", "scheduler.warmup_ratio=0.1",
            match=r"set only one of warmup_steps and warmup_ratio"),
    refusal("batch_size-zero", "data.batch_size=0", match=r"data\.batch_size=0 must be an integer >= 1"),
    refusal("seed-not-int", "seed=abc", match=r"seed='abc' must be an integer >= 0"),
    refusal("one-label-name", "data.label_names=[positive]",
            match=r"data\.label_names=\['positive'\] must be null or a list of at least two distinct labels"),
    refusal("long_targets-unknown", "data=dialogsum", "data.long_targets=ignore",
            match=r"data\.long_targets='ignore' must be one of error, truncate, drop"),
    refusal("monitor-mode-unknown", "monitor.mode=maximize", match=r"monitor\.mode='maximize' must be one of min, max"),
    # --- unknown names and keys ---
    refusal("unknown-scheduler", "scheduler.name=warmup_cosine",
            match=r"scheduler\.name='warmup_cosine' is unknown; choose one of constant, linear"),
    refusal("unknown-trainer-argument", "+trainer.max_epoch=3",
            match=r"trainer\.max_epoch is not an argument of lightning\.pytorch\.Trainer \(did you mean "
                  r"trainer\.max_epochs\?\)"),
    refusal("unknown-optimizer-argument", "+optimizer.momentum=0.9",
            match=r"optimizer\.momentum is not an argument of torch\.optim\.AdamW \(it takes lr, betas"),
    refusal("unknown-data-key", "+data.max_lenght=128",
            match=r"data\.max_lenght is not a setting lft reads \(did you mean data\.max_length\?\)"),
    refusal("unknown-precision", "precision.lightning=fp8", match=r"trainer\.precision='fp8' is not a Lightning precision"),
    refusal("unknown-accelerator", "trainer.accelerator=gpuu", fast=False, match=r"trainer\.accelerator='gpuu' must be one of auto"),
    refusal("unknown-task", "data.task=regression", match=r"data\.task='regression' is unknown"),
    refusal("missing-model-folder", "model.name_or_path=/no/such/model",
            match=r"model\.name_or_path='/no/such/model': no such folder"),
    # --- impossible combinations ---
    refusal("fp16-on-cpu", "precision=fp16", match=r"fp16 needs a CUDA GPU", marks=NO_CUDA),
    refusal("gpu-without-cuda", "trainer=gpu", match=r"trainer\.accelerator=gpu but no CUDA GPU is visible",
            fast=False, marks=NO_CUDA),
    refusal("k-bit-with-full-strategy", "model.quantization={bits:4}",
            match=r"model\.quantization \(bits=4\) with strategy=full: k-bit weights cannot be trained directly"),
    refusal("text-to-text-on-decoder-without-template", "data=dialogsum", "data.template=null",
            "model.name_or_path={gpt2}", match=r"data\.task=seq2seq on the decoder-only model .* needs a prompt template"),
    refusal("raw-text-on-encoder-decoder", "data=english_quotes", "model.name_or_path={t5}",
            match=r"data\.task=causal_lm \(raw text\) needs a decoder-only model"),
    refusal("lora-target-module-missing", "strategy=lora", "strategy.target_modules=[q_proj]",
            match=r"strategy\.target_modules: \['q_proj'\] not found in Bert"),
    refusal("freeze-more-layers-than-model", "strategy=freeze", "strategy.freeze_bottom_layers=5",
            match=r"strategy\.freeze_bottom_layers=5: the model has 2 layers; use 0\.\.2"),
    refusal("deepspeed-not-installed", "trainer=deepspeed_zero2", match=r"DeepSpeed, which is not installed",
            fast=False, marks=pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None,
                                                 reason="DeepSpeed is installed")),
    refusal("k-bit-under-fsdp", "trainer=fsdp", "strategy=qlora",
            match=r"with fsdp: the engine cannot shard bitsandbytes k-bit weights", fast=False),
    refusal("dpo-unknown-loss-variant", "data=hh_rlhf_harmless", "data.path={data}", "model.name_or_path={gpt2}",
            "data.preference.loss=cpo",
            match=r"data\.preference\.loss='cpo' must be one of sigmoid, ipo, simpo, orpo, kto"),
    refusal("kto-batch-of-one", "data=hh_rlhf_harmless", "data.path={data}", "model.name_or_path={gpt2}",
            "data.preference.loss=kto", "data.batch_size=1",
            match=r"data\.batch_size=1 with data\.preference\.loss=kto: KTO estimates its reference point"),
    refusal("packing-on-classification", "+data.packing=true",
            match=r"data\.packing=true packs text for decoder-only LMs .* not apply to ClassificationTask"),
    refusal("packing-with-prompt-tuning", "data=dialogsum", "data.path={data}", "model.name_or_path={gpt2}",
            "strategy=prompt_tuning", "data.packing=true", files={"train.jsonl": DIALOGUES},
            match=r"data\.packing=true with strategy=prompt_tuning: the virtual tokens"),
    refusal("monitor-generated-metric-without-generation", "data=dialogsum", "data.path={data}",
            "model.name_or_path={gpt2}", "data.generate.val_samples=0", files={"train.jsonl": DIALOGUES},
            match=r"monitor\.metric=val/rouge1 is scored on generated text, but data\.generate\.val_samples=0"),
    # --- data augmentation (conf/augment) ---
    refusal("augment-unknown-name", "augment=eda", "augment.name=back_translate",
            match=r"augment\.name='back_translate' is unknown; choose augment=none, eda, synonym or back_translation"),
    refusal("augment-p-over-1", "augment=eda", "augment.p=1.5",
            match=r"augment\.p=1\.5 must be a number in \[0, 1\] \(e\.g\. augment\.p=0\.5\)"),
    refusal("augment-p-negative", "augment=synonym", "augment.p=-0.1", match=r"augment\.p=-0\.1 must be a number in"),
    refusal("augment-unknown-operation", "augment=eda", "augment.operations=[synonym,shuffle]",
            match=r"augment\.operations=\['synonym', 'shuffle'\]: use a non-empty list of synonym, insert, swap"),
    refusal("augment-no-operations", "augment=eda", "augment.operations=[]",
            match=r"augment\.operations=\[\]: use a non-empty list of synonym, insert, swap, delete"),
    refusal("augment-on-raw-text", "data=english_quotes", "model.name_or_path={gpt2}", "augment=eda",
            match=r"augment=eda does not apply to data\.task=causal_lm: raw text is all target"),
    refusal("augment-on-preference-pairs", "data=hh_rlhf_harmless", "model.name_or_path={gpt2}", "augment=synonym",
            match=r"augment=synonym does not apply to data\.task=dpo: preference pairs compare two fixed answers"),
    refusal("back-translation-prompt-without-text", "augment=back_translation", "augment.prompts=[paraphrase]",
            match=r"augment\.prompts=\['paraphrase'\]: give a list of prompts that each contain \{text\}"),
    refusal("augment-unknown-key", "augment=eda", "+augment.rate=0.2",
            match=r"augment\.rate is not a setting lft reads"),
    # --- run folders ---
    refusal("output-folder-holds-a-run", "paths.output_dir={data}/old_run", files={"old_run/config.yaml": "seed: 1\n"},
            match=r"old_run already holds a run; runs never overwrite each other"),
    refusal("output-folder-unwritable", "paths.output_dir={data}/a_file/run", files={"a_file": ""},
            match=r"a_file/run cannot be written \(Not a directory\); set hydra\.run\.dir"),
    refusal("resume-a-folder-that-is-not-a-run", "+resume={data}/photos", "paths.output_dir={data}/photos",
            files={"photos/cat.jpg": b"\xff\xd8"}, match=r"resume=.*photos: not an lft run folder \(no config\.yaml\)"),
    refusal("resume-a-run-without-last-checkpoint", "+resume={data}/run", "paths.output_dir={data}/run",
            files={"run/config.yaml": "seed: 1\n"}, match=r"the run has no checkpoints/last\.ckpt to continue from"),
]


@pytest.mark.parametrize(("overrides", "files", "match", "fast"), REFUSALS)
def test_bad_input_is_refused_with_one_clear_message(request, make_cfg, tmp_path, overrides, files, match, fast):
    folder = tmp_path / "data"
    folder.mkdir()
    for name, content in files.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    places = {"{data}": str(folder)}
    places.update({f"{{{key}}}": request.getfixturevalue(fixture) for key, fixture in MODELS.items()
                   if any(f"{{{key}}}" in o for o in overrides)})
    if not any(o.startswith("model.name_or_path=") for o in overrides):
        overrides = (f"model.name_or_path={request.getfixturevalue('tiny_bert')}", *overrides)
    overrides = [_fill(o, places) for o in overrides]
    cfg = make_cfg(*overrides, fast=fast)
    for override in overrides:  # make_cfg points every run at a fresh folder; a case may name its own
        if override.startswith("paths.output_dir="):
            cfg.paths.output_dir = override.partition("=")[2]

    start = time.perf_counter()
    with pytest.raises(ConfigError, match=match) as refused:
        train(cfg)
    seconds = time.perf_counter() - start
    assert seconds < MAX_SECONDS, f"the message took {seconds:.1f} s"
    assert "\n" not in str(refused.value), "one line"
    assert not (Path(cfg.paths.output_dir) / "metrics.json").exists(), "no run folder that looks complete"


def _fill(override: str, places: dict[str, str]) -> str:
    """Put paths in for {data}/{bert}/...; {{ and }} stand for literal braces (data.template)."""
    for key, value in places.items():
        override = override.replace(key, value)
    return override.replace("{{", "{").replace("}}", "}")


def test_command_line_refusal_is_one_line_exit_code_2_and_no_traceback(tmp_path):
    result = run_cli("trainer.max_epochs=abc", cwd=tmp_path, timeout=120)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output[-2000:]
    assert "trainer.max_epochs='abc' must be an integer" in output
    assert "Traceback" not in output
    assert not list(tmp_path.rglob("metrics.json"))
