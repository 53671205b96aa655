"""A merged Llama-family model as one GGUF file, the format llama.cpp and Ollama run.

llama.cpp's own converter (convert_hf_to_gguf.py) is not in the `gguf` package, so this writes the file with
gguf's GGUFWriter the way that converter does for LlamaForCausalLM: gguf's tensor-name map, q/k rows permuted
into llama.cpp's rotary layout, 1-D tensors (norms) in f32, the byte-level BPE vocabulary with its merges and
special tokens. transformers' GGUF loader reads the file back to the same weights (tests/test_export_gguf.py).
`supported()` runs before any merge, so a model or tokenizer this cannot write is refused before work is spent.
"""

import json
from pathlib import Path

import numpy as np
import torch

from lft.config.errors import ConfigError

ARCHITECTURES = {"LlamaForCausalLM": "llama"}  # transformers class -> GGUF architecture
SUPPORTED = "LlamaForCausalLM (Llama 2/3, SmolLM, TinyLlama, ... decoders)"
QUANTIZATIONS = ("f32", "f16", "q8_0")

# Byte-level BPE pre-tokenizers by the shape of their tokenizer.json entry -> llama.cpp's name for the same split.
GPT2_REGEX_BYTE_LEVEL = {"type": "ByteLevel", "add_prefix_space": False, "use_regex": True}
LLAMA3_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def supported(config, tokenizer, quantization: str) -> str:
    """Refuse what cannot become a faithful GGUF (before any work); returns llama.cpp's pre-tokenizer name."""
    if quantization not in QUANTIZATIONS:
        raise ConfigError(f"quantization={quantization!r}: use one of {', '.join(QUANTIZATIONS)} (format=gguf).")
    arch = (getattr(config, "architectures", None) or ["?"])[0]
    if arch not in ARCHITECTURES:
        raise ConfigError(f"format=gguf: lft writes GGUF for {SUPPORTED}; this run's model is {arch}. "
                          "Export the Hugging Face folder (format=hf) and convert it with llama.cpp's "
                          "convert_hf_to_gguf.py.")
    rope = getattr(config, "rope_parameters", None) or getattr(config, "rope_scaling", None) or {}
    if rope.get("rope_type", rope.get("type", "default")) != "default":
        raise ConfigError(f"format=gguf: the model uses {rope.get('rope_type')!r} rope scaling, which transformers' "
                          "GGUF loader does not read back, so the file would not reproduce the model; export "
                          "format=hf and convert it with llama.cpp's convert_hf_to_gguf.py.")
    if getattr(config, "attention_bias", False) or getattr(config, "mlp_bias", False):
        raise ConfigError("format=gguf: this Llama has attention or MLP biases, which GGUF readers of the llama "
                          "architecture do not expect; export format=hf instead.")
    return pre_tokenizer(tokenizer)


def pre_tokenizer(tokenizer) -> str:
    """llama.cpp's name for how the tokenizer splits text before BPE (it cannot read tokenizer.json's regexes)."""
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    model, steps = spec["model"], spec.get("pre_tokenizer") or {}
    steps = steps.get("pretokenizers", [steps]) if steps.get("type") == "Sequence" else [steps]
    byte_level = (model.get("type") == "BPE" and not model.get("byte_fallback")
                  and (spec.get("decoder") or {}).get("type") == "ByteLevel")
    shape = [{k: step.get(k) for k in ("type", "add_prefix_space", "use_regex", "individual_digits", "pattern")
              if k in step} for step in steps]
    if byte_level and shape == [GPT2_REGEX_BYTE_LEVEL]:
        return "gpt-2"
    if byte_level and shape[1:] == [GPT2_REGEX_BYTE_LEVEL] and shape[0] == {"type": "Digits", "individual_digits": True}:
        return "smollm"
    if (byte_level and len(shape) == 2 and shape[0].get("pattern") == {"Regex": LLAMA3_SPLIT}
            and shape[1].get("type") == "ByteLevel" and not shape[1].get("use_regex")):
        return "llama-bpe"
    raise ConfigError(
        f"format=gguf: lft writes byte-level BPE tokenizers (GPT-2, SmolLM, Llama-3 style); this one is "
        f"{model.get('type')} with pre-tokenizer {[s.get('type') for s in steps]}. Export format=hf and convert it "
        "with llama.cpp's convert_hf_to_gguf.py, which knows more tokenizers."
    )


def check_run(weights: Path, merge: bool, quantization: str) -> str:
    """The checks of supported() on a run's saved config and tokenizer; merge=false cannot make a GGUF."""
    from transformers import AutoConfig, AutoTokenizer

    if not merge:
        raise ConfigError("format=gguf holds a whole model: use merge=true (the adapter merged into the base), or "
                          "format=hf merge=false for the adapter alone.")
    return supported(AutoConfig.from_pretrained(weights), AutoTokenizer.from_pretrained(weights), quantization)


def write_gguf(model, folder: Path, path: Path, quantization: str, pre: str, license: str | None = None) -> Path:
    """Write `model` (merged, in memory) and the tokenizer saved in `folder` as one GGUF file at `path`."""
    import gguf
    from transformers import AutoTokenizer

    config, tokenizer = model.config, AutoTokenizer.from_pretrained(folder)
    tokens, types = _vocab(tokenizer, config.vocab_size)
    # use_temp_file: each converted tensor goes to disk as it is added, so a large model is not held twice in memory.
    writer = gguf.GGUFWriter(path, ARCHITECTURES[type(model).__name__], use_temp_file=True)
    writer.add_name(path.stem)
    if license:
        writer.add_license(license)
    _add_hyperparameters(writer, config, quantization)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    # Merges, bos/eos/pad ids, add_bos and the chat template, read from tokenizer.json as llama.cpp reads them;
    # where the files do not say whether BOS/EOS are added, what the tokenizer does says it (llama.cpp would guess).
    special = gguf.SpecialVocab(folder, load_merges=True, n_vocab=len(tokens))
    for kind, added in _adds_special(tokenizer).items():
        special.add_special_token.setdefault(kind, added)
    special.add_to_gguf(writer, quiet=True)
    for name, array, qtype in _tensors(model, quantization):
        writer.add_tensor(name, array, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def _add_hyperparameters(writer, config, quantization: str) -> None:
    import gguf

    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    rope = getattr(config, "rope_parameters", None) or {}
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads or config.num_attention_heads)
    writer.add_rope_freq_base(float(rope.get("rope_theta", getattr(config, "rope_theta", 10000.0))))
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_dimension_count(head_dim)
    if head_dim != config.hidden_size // config.num_attention_heads:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_vocab_size(config.vocab_size)
    writer.add_file_type({"f32": gguf.LlamaFileType.ALL_F32, "f16": gguf.LlamaFileType.MOSTLY_F16,
                          "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0}[quantization])


def _vocab(tokenizer, size: int) -> tuple[list[str], list[int]]:
    """One token per embedding row, typed as llama.cpp types them: added special tokens CONTROL, other added
    tokens USER_DEFINED, rows no token uses UNUSED (named [PAD<i>], as llama.cpp's converter names them)."""
    from gguf import TokenType

    ids = {i: token for token, i in tokenizer.get_vocab().items()}
    if max(ids) >= size:
        raise ConfigError(f"format=gguf: the tokenizer has ids up to {max(ids)} but the model only {size} embedding "
                          "rows; resize the model's embeddings to the tokenizer before exporting.")
    added = tokenizer.added_tokens_decoder
    tokens, types = [], []
    for i in range(size):
        if i not in ids:
            tokens.append(f"[PAD{i}]")
            types.append(TokenType.UNUSED)
        elif i in added:
            tokens.append(added[i].content)
            types.append(TokenType.CONTROL if added[i].special else TokenType.USER_DEFINED)
        else:
            tokens.append(ids[i])
            types.append(TokenType.NORMAL)
    return tokens, types


def _adds_special(tokenizer) -> dict[str, bool]:
    ids = tokenizer("a").input_ids
    return {"bos": tokenizer.bos_token_id is not None and ids[0] == tokenizer.bos_token_id,
            "eos": tokenizer.eos_token_id is not None and ids[-1] == tokenizer.eos_token_id}


def _tensors(model, quantization: str):
    """(GGUF name, array, ggml type) per weight, in llama.cpp's names and layout."""
    import gguf

    config = model.config
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.LLAMA, config.num_hidden_layers)
    heads, kv_heads = config.num_attention_heads, config.num_key_value_heads or config.num_attention_heads
    for hf_name, tensor in model.state_dict().items():
        if hf_name == "lm_head.weight" and config.tie_word_embeddings:
            continue  # tied: readers reuse token_embd, and they tell tying from output.weight being absent
        base, suffix = hf_name.rsplit(".", 1)
        name = names.get_name(base)
        if name is None:
            raise ConfigError(f"format=gguf: no GGUF name for the model's tensor {hf_name}; export format=hf instead.")
        array = tensor.detach().to(torch.float32).cpu().numpy()
        if name.endswith("attn_q"):
            array = _permute(array, heads)
        elif name.endswith("attn_k"):
            array = _permute(array, kv_heads)
        yield f"{name}.{suffix}", *_encode(array, quantization)


def _permute(weights: np.ndarray, heads: int) -> np.ndarray:
    """HF's rotary halves -> llama.cpp's interleaved pairs, per head (convert_hf_to_gguf.py's LlamaModel.permute)."""
    return (weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:])
            .swapaxes(1, 2).reshape(weights.shape))


def _encode(array: np.ndarray, quantization: str):
    """As llama.cpp's converter stores them: 1-D tensors in f32; matrices in the chosen type, f16 where a row does
    not fill whole q8_0 blocks (32 values)."""
    import gguf

    Q = gguf.GGMLQuantizationType
    if array.ndim == 1 or quantization == "f32":
        return array.astype(np.float32), Q.F32
    if quantization == "q8_0":
        try:
            return gguf.quants.quantize(array, Q.Q8_0), Q.Q8_0
        except gguf.quants.QuantError:
            pass
    return array.astype(np.float16), Q.F16
