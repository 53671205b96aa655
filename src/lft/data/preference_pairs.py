"""Preference pairs (prompt, chosen, rejected): loading, splitting conversations, checks and truncation.

Rows either have a prompt column, or two full conversations (chosen, rejected) that share a prefix: the prompt is
then the shared text up to its last `data.assistant_marker`. HH-style prompts ("\\n\\nHuman: ...\\n\\nAssistant:")
become chat messages where the tokenizer has a chat template.

Truncation keeps the end of the prompt and the response: the oldest dialogue turns go first, down to the last
user turn; only then is the response cut (at its end). Unusable rows (an empty answer, identical answers, a last
user turn over `data.max_prompt_length`) are dropped and counted; past `data.max_bad_fraction` of a split,
encoding stops with one error.
"""

import logging
import os
from collections import Counter
from dataclasses import dataclass

from datasets import DatasetDict

from lft.config.errors import ConfigError
from lft.config.schema import default
from lft.data.sources import load_splits, require_columns
from lft.data.templates import chat_enabled, chat_setting
from lft.data.values import preference_columns

log = logging.getLogger(__name__)
BAD_REASONS = {"empty": "empty prompt or answer", "identical": "identical answers",
               "prompt_too_long": "last user turn over data.max_prompt_length"}
COLUMNS = {"pairs": "data.prompt_column/chosen_column/rejected_column",
           "rows": "data.prompt_column/completion_column, or chosen_column/rejected_column of pairs"}


def load_preference_splits(cfg, seed: int) -> DatasetDict:
    """Splits with `prompt`, `chosen`, `rejected` string columns (conversations split at their shared prefix)."""
    return pair_triplets(cfg, load_splits(cfg, seed, preference_columns(cfg)))


def pair_triplets(cfg, splits) -> DatasetDict:
    """Loaded splits of pairs as `prompt`, `chosen`, `rejected` string columns."""
    require_columns(splits, {"chosen_column": cfg.chosen_column, "rejected_column": cfg.rejected_column})
    prompt_col, marker = cfg.get("prompt_column"), cfg.get("assistant_marker") or ""

    def to_triplet(row):
        chosen, rejected = str(row[cfg.chosen_column] or ""), str(row[cfg.rejected_column] or "")
        if prompt_col and prompt_col in row:
            return {"prompt": str(row[prompt_col] or ""), "chosen": chosen, "rejected": rejected}
        return dict(zip(("prompt", "chosen", "rejected"), split_shared_prefix(chosen, rejected, marker),
                        strict=True))

    out = {}
    for split, ds in splits.items():
        if prompt_col and prompt_col not in ds.column_names:
            log.info("The %s split has no %r column: splitting chosen/rejected at their shared prefix.", split,
                     prompt_col)
        out[split] = ds.map(to_triplet, remove_columns=ds.column_names, desc=f"Reading {split} pairs")
    return DatasetDict(out)


def split_shared_prefix(chosen: str, rejected: str, marker: str) -> tuple[str, str, str]:
    """(prompt, chosen answer, rejected answer) of two conversations that differ only in their last answer."""
    shared = os.path.commonprefix([chosen, rejected])
    cut = shared.rfind(marker) + len(marker) if marker and marker in shared else len(shared)
    if not (marker and marker in shared) and cut < min(len(chosen), len(rejected)):
        cut = shared.rfind(" ") + 1 if " " in shared else 0  # do not split a word
    return chosen[:cut], chosen[cut:], rejected[cut:]


def parse_turns(prompt: str, user_marker: str, assistant_marker: str) -> list[dict]:
    """Chat messages of an HH-style dialogue; a prompt without markers is one user message."""
    if not user_marker or user_marker not in prompt:
        return [{"role": "user", "content": prompt.strip()}]
    turns = split_turns(prompt, user_marker, assistant_marker)
    if turns and turns[-1]["role"] == "assistant" and not turns[-1]["content"]:
        turns.pop()  # the trailing "Assistant:" the answer continues
    return [t for t in turns if t["content"] or t["role"] == "user"]


def split_turns(text: str, user_marker: str, assistant_marker: str) -> list[dict]:
    """Every turn of an HH-style dialogue as a chat message, empty ones too; text before the first marker is
    dropped."""
    turns, rest = [], text
    markers = {user_marker: "user", assistant_marker: "assistant"}
    while rest:
        starts = {m: rest.find(m) for m in markers if m and m in rest}
        if not starts:
            break
        marker = min(starts, key=starts.get)
        rest = rest[starts[marker] + len(marker):]
        nxt = [rest.find(m) for m in markers if m and m in rest]
        end = min(nxt) if nxt else len(rest)
        turns.append({"role": markers[marker], "content": rest[:end].strip()})
        rest = rest[end:]
    return turns


@dataclass
class EncodedPair:
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]
    truncated: bool


class PairEncoder:
    """Token ids of (prompt, chosen, rejected) within the token limits.

    chat: the prompt in the tokenizer's chat template (generation prompt added), answers + EOS.
    plain: the prompt text as written; answers + EOS (eos=True, causal LMs) or bare (reward models add their own
    special tokens: `reserve` counts them).
    """

    def __init__(self, cfg, tokenizer, eos: bool, reserve: int = 0, plain_special_tokens: bool = True):
        self.cfg, self.tokenizer, self.reserve = cfg, tokenizer, reserve
        self.chat = chat_enabled(chat_setting(cfg), tokenizer)
        self.eos = [tokenizer.eos_token_id] if eos and tokenizer.eos_token_id is not None else []
        self.plain_special_tokens = plain_special_tokens
        self.max_length, self.max_prompt = int(cfg.max_length), int(cfg.max_prompt_length)
        if self.max_prompt >= self.max_length - reserve:
            raise ConfigError(f"data.max_prompt_length={self.max_prompt} leaves no room for an answer within "
                              f"data.max_length={self.max_length}; lower it or raise data.max_length.")

    def prompt_text(self, turns: list[dict]) -> str:
        if self.chat:
            return self.tokenizer.apply_chat_template(turns, tokenize=False, add_generation_prompt=True)
        user, assistant = self.cfg.get("user_marker") or "", self.cfg.get("assistant_marker") or ""
        if not user:
            return turns[0]["content"]
        text = "".join(f"{user if t['role'] == 'user' else assistant} {t['content']}" for t in turns)
        return text + assistant

    def prompt_ids(self, turns: list[dict]) -> list[int]:
        special = False if self.chat else self.plain_special_tokens
        ids = self.tokenizer(self.prompt_text(turns), add_special_tokens=special)["input_ids"]
        eos = self.tokenizer.eos_token_id  # a decoder continues the prompt: no trailing [SEP]-style EOS
        return ids[:-1] if special and self.eos and ids and ids[-1] == eos else ids

    def answer_ids(self, text: str) -> list[int]:
        text = text.strip() if self.chat else text
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] + self.eos

    def encode(self, prompt: str, chosen: str, rejected: str) -> EncodedPair | str:
        """The pair's ids, or the reason (a BAD_REASONS key) it is unusable."""
        if not prompt.strip() or not chosen.strip() or not rejected.strip():
            return "empty"
        if chosen.strip() == rejected.strip():
            return "identical"
        fitted = self.fit(prompt, [chosen, rejected])
        if isinstance(fitted, str):
            return fitted
        p_ids, (c_ids, r_ids), truncated = fitted
        return EncodedPair(p_ids, c_ids, r_ids, truncated)

    def fit(self, prompt: str, answers: list[str]) -> tuple[list[int], list[list[int]], bool] | str:
        """(prompt ids, answer ids, whether an answer was cut) within the limits, or "prompt_too_long"."""
        answer_ids = [self.answer_ids(a) for a in answers]
        longest = max(len(ids) for ids in answer_ids)
        p_ids = self.fit_prompt(prompt, longest)
        if isinstance(p_ids, str):
            return p_ids
        room = self.max_length - self.reserve - len(p_ids)
        return p_ids, [ids[:room] for ids in answer_ids], longest > room

    def fit_prompt(self, prompt: str, answer_length: int = 0, cut: bool = False) -> list[int] | str:
        """The prompt's ids, its oldest turns dropped until it fits data.max_prompt_length and leaves room for an
        answer of `answer_length` tokens; where its last user turn alone is over the limit, "prompt_too_long", or
        with cut=True (a reward scores every response) that turn's last max_prompt_length tokens."""
        turns = parse_turns(prompt, self.cfg.get("user_marker"), self.cfg.get("assistant_marker"))
        budget = self.max_length - self.reserve
        starts = [i for i, t in enumerate(turns) if t["role"] == "user"] or [0]
        for start in starts:  # drop the oldest turns until prompt and the longer answer fit
            p_ids = self.prompt_ids(turns[start:])
            if len(p_ids) <= self.max_prompt and len(p_ids) + answer_length <= budget:
                break
        if len(p_ids) <= self.max_prompt:
            return p_ids
        return p_ids[-self.max_prompt:] if cut else "prompt_too_long"


def encode_pairs(cfg, splits: DatasetDict, encoder: PairEncoder, to_features, read=None, noun: str = "pairs"
                 ) -> DatasetDict:
    """Encode every split with `to_features(EncodedPair) -> dict`; drop and count unusable rows.

    read(row) -> an encoded item (with `truncated`) or a BAD_REASONS key: by default the row's pair."""
    limit = float(cfg.get("max_bad_fraction", default("data.max_bad_fraction")))
    read = read or (lambda row: encoder.encode(row["prompt"], row["chosen"], row["rejected"]))
    out = {}
    for split, ds in splits.items():
        reasons, truncated = Counter(), 0
        rows = []
        for row in ds:
            pair = read(row)
            if isinstance(pair, str):
                reasons[pair] += 1
                continue
            truncated += pair.truncated
            rows.append(to_features(pair))
        bad = sum(reasons.values())
        detail = ", ".join(f"{n} {BAD_REASONS[r]}" for r, n in reasons.items())
        if bad > limit * len(ds) or not rows:
            raise ConfigError(
                f"data: {bad} of {len(ds)} {split} {noun} are unusable ({detail}), over data.max_bad_fraction="
                f"{limit}. Fix the data (columns {COLUMNS[noun]}), raise "
                f"data.max_prompt_length (now {encoder.max_prompt}), or raise data.max_bad_fraction to drop them."
            )
        if bad:
            log.warning("Dropped %d of %d %s %s: %s.", bad, len(ds), split, noun, detail)
        if truncated:
            log.info("%d %s %s have an answer cut at data.max_length=%d.", truncated, split, noun, encoder.max_length)
        out[split] = _to_dataset(rows)
    return DatasetDict(out)


def _to_dataset(rows: list[dict]):
    from datasets import Dataset

    return Dataset.from_dict({k: [r[k] for r in rows] for k in rows[0]})
