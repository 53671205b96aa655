"""Greedy answers of the base model and of a DPO run to the first N test prompts, formatted as in training.

    python experiments/preference_hh/generations.py <dpo run dir> <n> <out.md>
"""

import sys
from pathlib import Path

from omegaconf import OmegaConf

from lft.data.preference_pairs import PairEncoder, load_preference_splits
from lft.generation.generator import Generator
from lft.models.loading import load_tokenizer
from lft.runs.folder import load_run_config, load_trained_model
from lft.tasks import build_task


def main(run: str, n: int, out: str) -> None:
    cfg = load_run_config(run)
    tokenizer = load_tokenizer(cfg.model)
    task = build_task(cfg.data, cfg.model)
    test = load_preference_splits(cfg.data, cfg.seed)["test"].select(range(n))
    encoder = PairEncoder(cfg.data, tokenizer, eos=True)
    prompts = [encoder.encode(r["prompt"], r["chosen"], r["rejected"]).prompt for r in test]
    generator = Generator(tokenizer, OmegaConf.create({"max_new_tokens": 48}), decoder_only=True)
    answers = {name: generator.generate(load_trained_model(task, cfg.model, weights).eval(), prompts)
               for name, weights in (("base", None), ("dpo", run))}
    lines = []
    for i, row in enumerate(test):
        last_turn = row["prompt"].rsplit("Human:", 1)[-1].rsplit("Assistant:", 1)[0].strip()
        lines += [f"### Test pair {i}", "", f"**Last user turn:** {last_turn}", "",
                  f"- **chosen (data):** {row['chosen'].strip()}", f"- **rejected (data):** {row['rejected'].strip()}",
                  f"- **base:** {answers['base'][i]}", f"- **DPO:** {answers['dpo'][i]}", ""]
    Path(out).write_text("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3])
