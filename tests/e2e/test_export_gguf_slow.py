"""GGUF export of the real SmolLM2-135M-Instruct (packaged GGUF) after LoRA on a DialogSum slice: transformers reads
the file back to the merged weights and the same greedy summaries; llama.cpp (the `llama-cpp` extra) runs it."""

import json

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lft.export import export
from tests.conftest import shared_data

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2_export(tmp_path_factory):
    from hydra import compose, initialize_config_dir
    from omegaconf import open_dict

    from lft.config.paths import CONFIG_DIR
    from lft.train import train

    data, root = shared_data("dialogsum"), tmp_path_factory.mktemp("smollm2_gguf")
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", ["model=smollm2_135m", "data=dialogsum", f"data.path={data}", "strategy=lora",
                                "data.batch_size=2", "data.max_source_length=192", "data.train_size=8",
                                "data.val_size=2", "data.test_size=2", "test=false"])
    with open_dict(cfg):
        cfg.paths.output_dir, cfg.paths.cache_dir = str(root / "run"), str(tmp_path_factory.getbasetemp() / "lft-cache")
        cfg.trainer.update(max_steps=2, limit_val_batches=1, enable_progress_bar=False, accelerator="cpu")
        cfg.data.generate.val_samples = 0
        cfg.monitor.metric, cfg.monitor.mode = "val/loss", "min"
    train(cfg)
    out = export(cfg.paths.output_dir, str(root / "smollm2-dialogsum"), format="gguf", quantization="f16")
    rows = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()[:2]]
    tokenizer = AutoTokenizer.from_pretrained(out)
    prompts = [tokenizer.apply_chat_template([{"role": "user", "content": cfg.data.template.format(**row)}],
                                             tokenize=False, add_generation_prompt=True) for row in rows]
    return out, out / "smollm2-dialogsum-f16.gguf", prompts


def greedy_ids(model, tokenizer, prompt: str, n: int = 24) -> list[int]:
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    with torch.no_grad():
        out = model.eval().generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist()


def test_smollm2_gguf_reads_back_to_the_merged_model(smollm2_export, tmp_path):
    out, gguf_file, prompts = smollm2_export
    only = tmp_path / "only"
    only.mkdir()
    (only / gguf_file.name).symlink_to(gguf_file)
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    back = AutoModelForCausalLM.from_pretrained(only, gguf_file=gguf_file.name, dtype=torch.float32)
    expected, found = merged.state_dict(), back.state_dict()
    assert set(found) == set(expected)
    for name, tensor in expected.items():
        assert torch.equal(found[name], tensor.half().float()), name
    tokenizer, tokenizer_back = AutoTokenizer.from_pretrained(out), AutoTokenizer.from_pretrained(only, gguf_file=gguf_file.name)
    for prompt in prompts:
        assert tokenizer_back(prompt, add_special_tokens=False).input_ids == tokenizer(prompt, add_special_tokens=False).input_ids
        ids, ids_back = greedy_ids(merged, tokenizer, prompt), greedy_ids(back, tokenizer_back, prompt)
        assert tokenizer_back.decode(ids_back) == tokenizer.decode(ids)
    assert tokenizer_back.chat_template == tokenizer.chat_template


def test_llama_cpp_runs_the_exported_gguf(smollm2_export):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama.cpp's Python binding is not installed: "
                                    "pip install -e '.[llama-cpp]' (builds llama.cpp from source, minutes)")
    out, gguf_file, prompts = smollm2_export
    llm = llama_cpp.Llama(model_path=str(gguf_file), n_ctx=512, verbose=False, seed=0)
    tokenizer = AutoTokenizer.from_pretrained(out)
    merged = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    for prompt in prompts:
        tokens = llm.tokenize(prompt.encode(), add_bos=False, special=True)
        assert tokens == tokenizer(prompt, add_special_tokens=False).input_ids  # llama.cpp splits text as lft did
        reply = llm(prompt, max_tokens=24, temperature=0.0, top_k=1)["choices"][0]["text"]
        expected = tokenizer.decode(greedy_ids(merged, tokenizer, prompt), skip_special_tokens=True)
        # llama.cpp's own kernels on the f16 file: the same greedy text as transformers on the merged folder.
        assert reply.strip() and reply == expected, (reply, expected)
    llm.close()  # now, not at interpreter exit, where llama-cpp-python's finalizer fails noisily
