"""Conversations as token ids with the loss on the assistant's turns, found by rendering the chat template.

Which tokens are the assistant's is the chat template's business, and templates differ (ChatML, Llama-3 headers,
Mistral's [INST], a default system prompt added or not). Few mark them (`{% generation %}`), so the spans are
found the way the template itself sees them: for each assistant turn, the conversation before it rendered with
the generation prompt gives where the answer starts, and the conversation up to it gives where it ends (trailing
whitespace, e.g. ChatML's newline after <|im_end|>, excluded: it belongs to no turn). The end-of-turn token is
inside, so the model learns to stop. Each prefix's token ids must be a prefix of the whole conversation's ids;
where the template or the tokenizer breaks that (a template that rewrites earlier turns, a generation prompt whose
whitespace merges with the answer's first token), the row is unusable and counted, never labelled by guess.

Too long for `data.max_length`: the oldest turns go first, a user turn at a time, keeping the system turn; then
the last answer's end is cut. A conversation whose system and last user turn alone leave no room is unusable.
"""

import logging
from collections import Counter
from dataclasses import dataclass

from datasets import Dataset, DatasetDict
from jinja2 import TemplateError

from lft.config.errors import ConfigError
from lft.config.schema import default
from lft.data.conversations import BAD_REASONS, to_messages
from lft.data.labels import IGNORE
from lft.data.pairs import generation_limit

log = logging.getLogger(__name__)
ENCODER_REASONS = {"too_long": "a last user turn that leaves no room for an answer within data.max_length",
                   "template_refuses": "a conversation the chat template refuses",
                   "template_mismatch": "a conversation whose prefixes the template renders differently"}


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

    def ids(self, texts: list[str]) -> list[list[int]]:
        # The template writes its own special tokens (BOS where it wants one): apply_chat_template's tokenizing too.
        return self.tokenizer(texts, add_special_tokens=False)["input_ids"]

    def encode(self, messages: list[dict]) -> EncodedChat:
        """Raises Unusable for a conversation that cannot be trained on."""
        system = messages[:1] if messages[0]["role"] == "system" else []
        starts = [i for i, m in enumerate(messages) if m["role"] == "user"]
        for start in starts:  # drop the oldest turns, a user turn at a time, until the conversation fits
            kept = system + messages[start:]
            ids = self.ids([self.render(kept)])[0]
            if self.max_length is None or len(ids) <= self.max_length:
                break
        spans = self.assistant_spans(kept, ids)
        prompt_length = spans[-1][0]
        if self.max_length is not None and prompt_length >= self.max_length:
            raise Unusable("too_long")
        labelled = spans[-1:] if self.last_only else spans
        labels = [IGNORE] * len(ids)
        for begin, end in labelled:
            labels[begin:end] = ids[begin:end]
        cut = self.max_length if self.max_length is not None else len(ids)
        return EncodedChat(ids[:cut], labels[:cut], prompt_length, truncated=len(ids) > cut or len(kept) < len(messages))

    def assistant_spans(self, messages: list[dict], ids: list[int]) -> list[tuple[int, int]]:
        """[begin, end) token positions of every assistant turn in `ids` (the whole conversation's)."""
        turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
        texts = []
        for i in turns:
            texts += [self.render(messages[:i], generation_prompt=True), self.render(messages[: i + 1]).rstrip()]
        prefixes = self.ids(texts)
        spans = []
        for begin, end in zip(prefixes[::2], prefixes[1::2], strict=True):
            for prefix in (begin, end):
                if ids[: len(prefix)] != prefix:
                    raise Unusable("template_mismatch", self._mismatch(prefix, ids))
            if len(end) <= len(begin):
                raise Unusable("template_mismatch", "an assistant turn renders to no tokens after its prompt")
            spans.append((len(begin), len(end)))
        return spans

    def _mismatch(self, prefix: list[int], ids: list[int]) -> str:
        at = next((i for i, (a, b) in enumerate(zip(prefix, ids, strict=False)) if a != b), min(len(prefix), len(ids)))
        shown = [self.tokenizer.decode(part[at: at + 3]) for part in (prefix, ids)]
        return (f"at token {at} a prefix of the conversation reads {shown[0]!r} where the whole conversation reads "
                f"{shown[1]!r}")


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
