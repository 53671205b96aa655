"""Conversations as token ids with the loss on the assistant's turns, found by rendering the chat template.

Which tokens are the assistant's is the chat template's business, and templates differ (ChatML, Llama-3 headers,
Mistral's [INST], a default system prompt added or not). Few mark them (`{% generation %}`), so the spans are
found the way the template itself sees them: for each assistant turn, the conversation before it rendered with
the generation prompt gives where the answer starts, and the conversation up to it gives where it ends (trailing
whitespace, e.g. ChatML's newline after <|im_end|>, excluded: it belongs to no turn). The end-of-turn token is
inside, so the model learns to stop. The ids are the whole conversation's, tokenized once, as apply_chat_template
gives them; each prefix must render to the start of the whole text, and each edge must fall between two tokens
(character offsets). Where the template or the tokenizer breaks that (a template that rewrites earlier turns, a
generation prompt whose end merges with the answer's first token), the row is unusable and counted, never
labelled by guess.

Too long for `data.max_length`: the oldest turns go first, a user turn at a time, keeping the system turn; then
the last answer's end is cut. A conversation whose system and last user turn alone leave no room is unusable.
"""

import logging
import os
from collections import Counter
from dataclasses import dataclass

from datasets import Dataset, DatasetDict
from jinja2 import TemplateError

from lft.config.errors import ConfigError
from lft.config.schema import default
from lft.data.conversations import BAD_REASONS, to_messages
from lft.data.labels import IGNORE
from lft.data.text_to_text import generation_limit

log = logging.getLogger(__name__)
ENCODER_REASONS = {"too_long": "a last user turn that leaves no room for an answer within data.max_length",
                   "template_refuses": "a conversation the chat template refuses",
                   "template_mismatch": "a conversation whose answers the template cannot delimit (a prefix renders "
                                        "differently, or one token spans a turn's edge)"}


@dataclass(frozen=True)
class EncodedChat:
    ids: list[int]
    labels: list[int]
    prompt_length: int  # tokens before the last assistant answer: generation continues from there
    truncated: bool


class Unusable(Exception):
    """A conversation that cannot be encoded: `reason` is an ENCODER_REASONS key, `detail` an example for messages."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason)
        self.reason, self.detail = reason, detail


class ChatEncoder:
    """Token ids and labels of a conversation in the tokenizer's chat template (module docstring)."""

    def __init__(self, tokenizer, max_length: int | None, train_on: str):
        self.tokenizer, self.max_length, self.last_only = tokenizer, max_length, train_on == "last_assistant"

    def render(self, messages: list[dict], generation_prompt: bool = False) -> str:
        try:
            return self.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=generation_prompt)
        except TemplateError as err:  # raise_exception() in the template: roles it does not take, their order
            raise Unusable("template_refuses", str(err)) from None

    def tokenize(self, text: str) -> tuple[list[int], list[tuple[int, int]]]:
        """(ids, each token's characters); the template writes its own special tokens (BOS where it wants one), so
        none are added: apply_chat_template tokenizes the same way."""
        try:
            encoding = self.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
        except NotImplementedError as err:  # slow (pure-Python) tokenizers report no character offsets
            raise ConfigError(f"data.task=chat needs a fast tokenizer (character offsets) to find the assistant's "
                              f"tokens; {self.tokenizer.name_or_path!r} loads a slow one ({err}).") from None
        return encoding["input_ids"], encoding["offset_mapping"]

    def encode(self, messages: list[dict]) -> EncodedChat:
        """Raises Unusable for a conversation that cannot be trained on."""
        system = messages[:1] if messages[0]["role"] == "system" else []
        starts = [i for i, m in enumerate(messages) if m["role"] == "user"]
        for start in starts:  # drop the oldest turns, a user turn at a time, until the conversation fits
            kept = system + messages[start:]
            text = self.render(kept)
            ids, offsets = self.tokenize(text)
            if self.max_length is None or len(ids) <= self.max_length:
                break
        spans = self.assistant_spans(kept, text, offsets)
        prompt_length = spans[-1][0]
        if self.max_length is not None and prompt_length >= self.max_length:
            raise Unusable("too_long")
        labels = [IGNORE] * len(ids)
        for begin, end in spans[-1:] if self.last_only else spans:
            labels[begin:end] = ids[begin:end]
        cut = self.max_length if self.max_length is not None else len(ids)
        return EncodedChat(ids[:cut], labels[:cut], prompt_length, truncated=len(ids) > cut or len(kept) < len(messages))

    def assistant_spans(self, messages: list[dict], text: str, offsets: list[tuple[int, int]]
                        ) -> list[tuple[int, int]]:
        """[begin, end) token positions of every assistant turn of `text`, the whole conversation rendered."""
        spans = []
        for turn in (i for i, m in enumerate(messages) if m["role"] == "assistant"):
            before = self.render(messages[:turn], generation_prompt=True)
            through = self.render(messages[: turn + 1]).rstrip()
            for prefix in (before, through):
                if not text.startswith(prefix):
                    at = len(os.path.commonprefix([prefix, text]))
                    raise Unusable("template_mismatch", f"the turns before turn {turn + 1} render as "
                                   f"{prefix[at - 20: at + 20]!r} where the whole conversation reads "
                                   f"{text[at - 20: at + 20]!r}")
            begin, end = _token_at(offsets, len(before), text), _token_at(offsets, len(through), text)
            if end <= begin:
                raise Unusable("template_mismatch", f"assistant turn {turn + 1} renders to no token")
            spans.append((begin, end))
        return spans


def _token_at(offsets: list[tuple[int, int]], char: int, text: str) -> int:
    """The first token starting at or after `char`, which must be a token boundary (no token straddles it)."""
    index = next((k for k, (start, _) in enumerate(offsets) if start >= char), len(offsets))
    if index and offsets[index - 1][1] > char:
        raise Unusable("template_mismatch", f"one token spans a turn's edge in {text[char - 20: char + 20]!r} (the "
                       "generation prompt's end merges with the answer's start)")
    return index


def encode_conversations(cfg, splits: DatasetDict, columns: list[str], encoder: ChatEncoder) -> DatasetDict:
    """Every split's conversations encoded; unusable rows dropped and counted, one error past
    data.max_bad_fraction. Validation and test rows also get what evaluation reads: the last answer as the
    reference, the prompt length, whether to generate for the row."""
    limit = float(cfg.get("max_bad_fraction", default("data.max_bad_fraction")))
    generate = {"validation": generation_limit(cfg, "val_samples"), "test": generation_limit(cfg, "test_samples")}
    out = {}
    for split, ds in splits.items():
        reasons, examples, rows, truncated = Counter(), {}, [], 0
        for number, row in enumerate(ds, 1):
            try:
                messages = to_messages(cfg, row, columns, f"row {number} of the {split} split")
                if isinstance(messages, str):
                    raise Unusable(messages)
                chat = encoder.encode(messages)
            except Unusable as bad:
                reasons[bad.reason] += 1
                examples.setdefault(bad.reason, f"row {number}" + (f": {bad.detail}" if bad.detail else ""))
                continue
            truncated += chat.truncated
            features = {"input_ids": chat.ids, "attention_mask": [1] * len(chat.ids), "labels": chat.labels,
                        "prompt_length": chat.prompt_length}
            if split != "train":
                index, limit_rows = len(rows), generate[split]
                features.update(row=index, references=[messages[-1]["content"]],
                                generate=limit_rows is None or index < limit_rows)
            rows.append(features)
        _report(cfg, split, len(ds), reasons, examples, limit, bool(rows))
        if truncated:
            log.info("%d of %d %s conversations lost their oldest turns or their last answer's end to "
                     "data.max_length=%s.", truncated, len(rows), split, cfg.get("max_length"))
        out[split] = Dataset.from_list(rows)
    return DatasetDict(out)


def _report(cfg, split: str, total: int, reasons: Counter, examples: dict, limit: float, any_left: bool) -> None:
    bad = sum(reasons.values())
    if not bad:
        return
    why = {**BAD_REASONS, **ENCODER_REASONS}
    detail = "; ".join(f"{n} with {why[r]} (first: {examples[r]})" for r, n in reasons.most_common())
    if bad > limit * total or not any_left:
        raise ConfigError(
            f"data: {bad} of {total} {split} conversations are unusable ({detail}), over data.max_bad_fraction="
            f"{limit:g}. Fix those rows, raise data.max_length (now {cfg.get('max_length')}) for long ones, or raise "
            "data.max_bad_fraction to drop them.")
    log.warning("Dropped %d of %d %s conversations: %s.", bad, total, split, detail)
