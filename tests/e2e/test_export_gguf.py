"""`lft.export format=gguf`, the model card and push_to_hub: a GGUF that transformers (and llama.cpp) read back to
the merged model, a card that says how the model was made, and refusals before any work."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from lft.config.errors import ConfigError
from lft.export import export, parse
from lft.exporting.gguf import supported

PROMPTS = ["#Person1#: Amy here. Can you bring the tickets?", "#Person2#: Sure, Bob will bring a cake tomorrow."]


@pytest.fixture(scope="module")
def tiny_bpe_llama(tmp_path_factory, pairs_data) -> str:
    """A random 2-layer Llama with a byte-level BPE tokenizer (SmolLM2/GPT-2 style) learned from the pairs data."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    from tests.conftest import seeded

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    text = [json.loads(line)["dialogue"] for line in Path(pairs_data, "train.jsonl").read_text().splitlines()]
    bpe.train_from_iterator(text + ["Summarize the following conversation. Summary:"], trainers.BpeTrainer(
        vocab_size=320, special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|endoftext|>",
                                        pad_token="<|endoftext|>")
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=False, bos_token_id=tokenizer.bos_token_id,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    path = tmp_path_factory.mktemp("tiny_bpe_llama")
    seeded(LlamaForCausalLM, config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return str(path)


def train_cli(folder: Path, *overrides: str) -> Path:
    """A run made as a user makes it (python -m lft.train), so it has .hydra/overrides.yaml for the card."""
    common = ["data=dialogsum", "data.batch_size=2", "data.eval_batch_size=2", "trainer.max_steps=2",
              "trainer.limit_val_batches=1", "trainer.limit_test_batches=1", "trainer.accelerator=cpu",
              "trainer.enable_progress_bar=false", "data.generate.max_new_tokens=4", "data.generate.val_samples=2",
              "data.generate.test_samples=2", f"hydra.run.dir={folder}"]
    result = subprocess.run([sys.executable, "-m", "lft.train", *common, *overrides], capture_output=True,
                            text=True, timeout=600, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    return folder


@pytest.fixture(scope="module")
def lora_run(tmp_path_factory, tiny_bpe_llama, pairs_data) -> Path:
    root = tmp_path_factory.mktemp("gguf_runs")
    return train_cli(root / "lora", f"model.name_or_path={tiny_bpe_llama}", "strategy=lora",
                     f"data.path={pairs_data}")


@pytest.fixture(scope="module")
def exported(lora_run, tmp_path_factory) -> Path:
    return export(str(lora_run), str(tmp_path_factory.mktemp("exports") / "tiny-chat"), format="gguf",
                  quantization="f16")


def gguf_only(gguf_file: Path, folder: Path) -> Path:
    """The GGUF alone in a folder: what it reads back to cannot come from the merged files beside it."""
    folder.mkdir()
    (folder / gguf_file.name).symlink_to(gguf_file)
    return folder


def greedy(model, tokenizer, prompt: str) -> tuple[list[int], str]:
    ids = tokenizer(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.eval().generate(ids, max_new_tokens=12, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return out[0, ids.shape[1]:].tolist(), tokenizer.decode(out[0, ids.shape[1]:])


def test_f16_gguf_reads_back_to_the_merged_model(exported, tmp_path):
    gguf_file = exported / "tiny-chat-f16.gguf"
    only = gguf_only(gguf_file, tmp_path / "only")
    merged = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32)
    back = AutoModelForCausalLM.from_pretrained(only, gguf_file=gguf_file.name, dtype=torch.float32)
    expected, found = merged.state_dict(), back.state_dict()
    assert set(found) == set(expected)
    for name, tensor in expected.items():  # f16 in the file: equal to the merged weights rounded to f16
        assert torch.equal(found[name], tensor.half().float()), name
    tokenizer = AutoTokenizer.from_pretrained(exported)
    tokenizer_back = AutoTokenizer.from_pretrained(only, gguf_file=gguf_file.name)
    for prompt in PROMPTS:
        assert tokenizer_back(prompt).input_ids == tokenizer(prompt).input_ids
        assert greedy(back, tokenizer_back, prompt) == greedy(merged, tokenizer, prompt)
    assert back.config.eos_token_id == merged.config.eos_token_id and not back.config.tie_word_embeddings


@pytest.mark.parametrize("quantization", ["f16", "q8_0"])
def test_llama_cpp_generates_the_merged_models_tokens(lora_run, tmp_path, quantization):
    llama_cpp = pytest.importorskip("llama_cpp", reason="llama.cpp's Python binding is not installed: "
                                    "pip install -e '.[llama-cpp]' (builds llama.cpp from source, minutes)")
    out = export(str(lora_run), str(tmp_path / "out"), format="gguf", quantization=quantization)
    llm = llama_cpp.Llama(model_path=str(out / f"out-{quantization}.gguf"), n_ctx=256, verbose=False)
    tokenizer, merged = AutoTokenizer.from_pretrained(out), AutoModelForCausalLM.from_pretrained(out)
    for prompt in PROMPTS:
        ids = tokenizer(prompt).input_ids
        assert llm.tokenize(prompt.encode(), add_bos=False) == ids
        expected = greedy(merged, tokenizer, prompt)[0]
        found = [token for token, _ in zip(llm.generate(ids, top_k=1, temp=0.0), expected, strict=False)]
        assert found == expected
    llm.close()


def test_q8_0_gguf_loads_with_close_logits(lora_run, exported, tmp_path):
    out = export(str(lora_run), str(tmp_path / "q8"), format="gguf", quantization="q8_0")
    from gguf import GGUFReader

    types = {t.name: t.tensor_type.name for t in GGUFReader(out / "q8-q8_0.gguf").tensors}
    assert types["blk.0.attn_q.weight"] == "Q8_0" and types["blk.0.attn_norm.weight"] == "F32"
    back = AutoModelForCausalLM.from_pretrained(gguf_only(out / "q8-q8_0.gguf", tmp_path / "only"),
                                                gguf_file="q8-q8_0.gguf", dtype=torch.float32)
    merged = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32)
    ids = AutoTokenizer.from_pretrained(exported)(PROMPTS, return_tensors="pt", padding=True)
    with torch.no_grad():
        expected, found = merged.eval()(**ids).logits, back.eval()(**ids).logits
    torch.testing.assert_close(found, expected, rtol=0, atol=2e-2)
    assert (found - expected).abs().max() > 0  # really quantized: not the f16 weights again


def test_card_holds_metrics_command_and_method(lora_run, exported):
    card = (exported / "README.md").read_text()
    front = card.split("---\n")[1]
    assert "library_name: transformers" in front and "license: unknown" in front and "- gguf" in front
    assert "pipeline_tag: text-generation" in front  # a decoder, though trained on seq2seq data
    metrics = json.loads((lora_run / "metrics.json").read_text())
    for name, value in metrics.items():
        shown = f"{value:.4g}" if isinstance(value, float) else str(value)
        assert f"| {name} | {shown} |" in card
    assert "python -m lft.train data=dialogsum" in card and "strategy=lora" in card
    assert "| strategy.r | 8 |" in card and "| strategy.alpha | 16 |" in card
    assert "licence is unknown" in card and "tiny-chat-f16.gguf" in card and "| transformers |" in card


def test_push_to_hub_offline_stops_before_any_work(lora_run, tmp_path):
    with pytest.raises(ConfigError, match="HF_HUB_OFFLINE=1 is set, so nothing can be uploaded"):
        export(str(lora_run), str(tmp_path / "out"), format="gguf", push_to_hub="me/tiny")
    assert not (tmp_path / "out").exists()
    # An unreachable Hub without the offline flag: the same check (in a fresh process, as huggingface_hub reads
    # HF_ENDPOINT and HF_HUB_OFFLINE when imported) fails in one short request with one message.
    env = {**os.environ, "HF_HUB_OFFLINE": "0", "HF_ENDPOINT": "http://127.0.0.1:9"}
    code = "from lft.exporting.hub import check_reachable; check_reachable('me/tiny')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert result.returncode == 1
    assert "ConfigError: push_to_hub=me/tiny: the Hub (http://127.0.0.1:9) cannot be reached" in result.stderr


def test_what_gguf_cannot_write_is_refused_before_work(lora_run, tiny_gpt2, tiny_llama, tmp_path):
    from transformers import AutoConfig

    with pytest.raises(ConfigError, match=r"lft writes GGUF for LlamaForCausalLM .* this run's model is GPT2LMHeadModel"):
        supported(AutoConfig.from_pretrained(tiny_gpt2), AutoTokenizer.from_pretrained(tiny_gpt2), "f16")
    with pytest.raises(ConfigError, match="byte-level BPE tokenizers .* this one is WordPiece"):
        supported(AutoConfig.from_pretrained(tiny_llama), AutoTokenizer.from_pretrained(tiny_llama), "f16")
    with pytest.raises(ConfigError, match="quantization='q4_k': use one of f32, f16, q8_0"):
        export(str(lora_run), str(tmp_path / "q4"), format="gguf", quantization="q4_k")
    with pytest.raises(ConfigError, match="format=gguf holds a whole model: use merge=true"):
        export(str(lora_run), str(tmp_path / "adapter"), format="gguf", merge=False)
    with pytest.raises(ConfigError, match="format='onnx' must be one of hf, gguf"):
        parse([f"run={lora_run}", f"out={tmp_path / 'onnx'}", "format=onnx"])  # the command's one validation
    assert not list(tmp_path.iterdir())
