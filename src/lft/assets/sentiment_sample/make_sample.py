"""Writes the smoke-test sentiment sample that ships with lft (run once; output is committed).

The sentences are composed from short hand-written phrases, so the set is obviously
synthetic: it exists so `make train` runs offline in minutes, not to measure anything.
"""

import json
import random
from pathlib import Path

SUBJECTS = ["The film", "This movie", "The plot", "The acting", "The soundtrack", "The ending",
            "The cast", "The script", "The director's work", "The cinematography"]
POSITIVE = ["was wonderful", "was a delight from start to finish", "moved me to tears in the best way",
            "is brilliant and fresh", "kept me smiling", "felt warm and honest", "is a real triumph",
            "was beautifully done", "deserves every award", "left me inspired"]
NEGATIVE = ["was terrible", "was a chore to sit through", "bored me to sleep", "is dull and lifeless",
            "made no sense at all", "felt cheap and lazy", "is a total mess", "was painfully bad",
            "wasted two hours of my life", "left me annoyed"]
CODAS = ["", " I would watch it again.", " Highly recommended.", " Avoid it.", " What a night.",
         " My friends agreed.", " Not what I expected."]


def sentence(rng: random.Random, positive: bool) -> str:
    phrase = rng.choice(POSITIVE if positive else NEGATIVE)
    coda = rng.choice([c for c in CODAS if not (positive and "Avoid" in c) and not (not positive and "recommended" in c)])
    return f"{rng.choice(SUBJECTS)} {phrase}.{coda}"


def main() -> None:
    rng = random.Random(0)
    here = Path(__file__).parent
    for split, n in {"train": 240, "validation": 60, "test": 60}.items():
        with open(here / f"{split}.jsonl", "w") as f:
            for i in range(n):
                positive = i % 2 == 0
                row = {"text": sentence(rng, positive), "label": "positive" if positive else "negative"}
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
