"""Prompt templates: turn a data row into the text a model reads, within a token budget.

`data.template` is a name from TEMPLATES or a literal Python format string over the row's columns,
e.g. "Summarize the following conversation.\n\n{dialogue}\n\nSummary: ". Decoder LMs may wrap the
rendered text in the tokenizer's chat template (`data.chat_template: auto | true | false`).
"""

import string
from dataclasses import dataclass

from lft.config.errors import ConfigError
from lft.config.schema import default


@dataclass(frozen=True)
class Template:
    text: str
    # Alpaca-style: use `without` instead of `text` when column `optional` is empty in a row.
    without: str | None = None
    optional: str | None = None

    def columns(self) -> list[str]:
        names = _fields(self.text) + (_fields(self.without) if self.without else [])
        return list(dict.fromkeys(names))

    def render(self, row: dict) -> str:
        text = self.without if self.optional and not str(row.get(self.optional) or "").strip() else self.text
        return text.format(**{c: row.get(c) if row.get(c) is not None else "" for c in _fields(text)})


_ALPACA_HEAD = "Below is an instruction that describes a task"
TEMPLATES = {
    # Stanford Alpaca's two prompts (with and without an input).
    "alpaca": Template(
        text=f"{_ALPACA_HEAD}, paired with an input that provides further context. Write a response that "
        "appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n",
        without=f"{_ALPACA_HEAD}. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:\n",
        optional="input",
    ),
    # Dolly rows name their input `context`.
    "dolly": Template(
        text=f"{_ALPACA_HEAD}, paired with an input that provides further context. Write a response that "
        "appropriately completes the request.\n\n### Instruction:\n{instruction}\n\n### Input:\n{context}\n\n### Response:\n",
        without=f"{_ALPACA_HEAD}. Write a response that appropriately completes the request.\n\n"
        "### Instruction:\n{instruction}\n\n### Response:\n",
        optional="context",
    ),
}


def _fields(text: str) -> list[str]:
    try:
        return [name for _, name, _, _ in string.Formatter().parse(text) if name]
    except ValueError as err:
        raise ConfigError(f"data.template={text!r} is not a valid format string ({err}); write columns as {{name}} "
                          "and literal braces as {{{{ }}}}.") from err


def get_template(spec: str | None, source_column: str | None) -> Template:
    """A named template, a literal format string, or (null) the source column alone."""
    if not spec:
        if not source_column:
            raise ConfigError("data.template and data.source_column are both null; set one of them.")
        return Template("{" + source_column + "}")
    if spec in TEMPLATES:
        return TEMPLATES[spec]
    if not _fields(spec):
        raise ConfigError(f"data.template={spec!r} names no column; write e.g. 'Summarize: {{dialogue}}' "
                          f"or use one of {', '.join(TEMPLATES)}.")
    return Template(spec)


class PromptBuilder:
    """Render a row's prompt (optionally in the chat template), shortening its longest field to fit `max_tokens`."""

    def __init__(self, template: Template, tokenizer, max_tokens: int | None, chat: bool = False,
                 decoder: bool = False):
        self.template = template
        self.tokenizer = tokenizer
        self.max_tokens = max_tokens
        self.chat = chat
        self.decoder = decoder  # a decoder continues the prompt, so it must not end in EOS (BERT-style [SEP])

    def text(self, row: dict) -> str:
        text = self.template.render(row)
        if self.chat:
            text = self.tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                                      add_generation_prompt=True)
        return text

    def ids(self, text: str) -> list[int]:
        return self._many_ids([text])[0]

    def _many_ids(self, texts: list[str]) -> list[list[int]]:
        # Chat templates carry their own special tokens; plain prompts get the tokenizer's (BOS for Llama, none for GPT-2).
        encoded = self.tokenizer(texts, add_special_tokens=not self.chat)["input_ids"]
        eos = self.tokenizer.eos_token_id
        return [ids[:-1] if self.decoder and ids and eos is not None and ids[-1] == eos else ids for ids in encoded]

    def build(self, row: dict) -> tuple[str, list[int]]:
        row, ids = self.fit(row)
        return self.text(row), ids

    def fit(self, row: dict) -> tuple[dict, list[int]]:
        """The row with its longest field shortened until the prompt fits `max_tokens`, and the prompt's ids."""
        ids = self.ids(self.text(row))
        row = dict(row)
        for _ in range(3):  # decode/encode round trips can be off by a token or two
            excess = len(ids) - self.max_tokens if self.max_tokens else 0
            if excess <= 0:
                return row, ids
            field = max(self.template.columns(), key=lambda c: len(str(row.get(c) or "")))
            field_ids = self.tokenizer(str(row[field]), add_special_tokens=False)["input_ids"]
            row[field] = self.tokenizer.decode(field_ids[: max(len(field_ids) - excess - 2, 0)])
            ids = self.ids(self.text(row))
        return row, ids[: self.max_tokens]

    def build_ids(self, rows: list[dict]) -> list[list[int]]:
        """build(row)'s ids for many rows: one batched tokenizer call; only rows over the budget take build()."""
        return [ids for _, ids in self.fit_many(rows)]

    def fit_many(self, rows: list[dict]) -> list[tuple[dict, list[int]]]:
        """fit() for many rows: one batched tokenizer call; only rows over the budget are shortened."""
        ids = self._many_ids([self.text(row) for row in rows])
        return [self.fit(row) if self.max_tokens and len(row_ids) > self.max_tokens else (row, row_ids)
                for row, row_ids in zip(rows, ids, strict=True)]


def chat_setting(data_cfg):
    """data.chat_template as set, or its one default (lft/config/schema.py) where a data config lacks it."""
    return data_cfg.get("chat_template", default("data.chat_template"))


def chat_enabled(setting, tokenizer) -> bool:
    """`data.chat_template`: true needs a tokenizer with a chat template; auto uses one where it exists."""
    has = bool(getattr(tokenizer, "chat_template", None))
    if setting in (True, "true"):
        if not has:
            raise ConfigError(
                f"data.chat_template=true but the tokenizer of {tokenizer.name_or_path!r} has no chat template; "
                "set data.chat_template=false (plain prompt template) or use an instruct model."
            )
        return True
    if setting in ("auto", None):
        return has
    return False  # false: lft.config.validate refused anything but auto, true and false
