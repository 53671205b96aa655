"""The prompts of online RL (data.task=ppo or rloo) as token ids, formatted as the data's other tasks format them.

Plain prompts: `data.template` (else `source_column`, `prompt_column`, `text_column`), in the tokenizer's chat
template as one user message where `data.chat_template` says so, cut to `max_source_length` (else `max_length`).
Dialogue prompts: where `data.user_marker` is set, the text ("\\n\\nHuman: ...\\n\\nAssistant:") is split into chat
messages and fitted to `data.max_prompt_length` (the oldest turns go first) by the preference tasks' own
PairEncoder, so a policy sees an HH dialogue as DPO and a reward model trained on the same data saw it. A
dialogue whose last user turn alone is over the limit has no prompt (None).
"""

from lft.data.preference_pairs import PairEncoder
from lft.data.templates import PromptBuilder, Template, chat_enabled, chat_setting, get_template
from lft.data.values import FIELD, Column

KEYS = ("template", "source_column", "prompt_column", "text_column")  # the first set names the prompt


class PolicyPrompts:
    def __init__(self, cfg, tokenizer):
        self.key = next((key for key in KEYS if cfg.get(key)), "template")
        self.template: Template = get_template(cfg.get("template"), cfg.get(self.key) if self.key != "template" else None)
        self.dialogue = PairEncoder(cfg, tokenizer, eos=True) if cfg.get("user_marker") else None
        self.plain = None if self.dialogue else PromptBuilder(
            self.template, tokenizer, cfg.get("max_source_length") or cfg.get("max_length"),
            chat=chat_enabled(chat_setting(cfg), tokenizer), decoder=True)
        self.chat = (self.dialogue or self.plain).chat

    def columns(self) -> list[Column]:
        """The data columns the prompts read, named by the setting that names them (for load_splits' checks)."""
        return [Column(self.key, column, FIELD) for column in self.template.columns()]

    def describe(self) -> str:
        what = "chat template" if self.chat else "plain text"
        return f"{what}, dialogue turns at data.user_marker" if self.dialogue else what

    def encode(self, rows: list[dict]) -> list[tuple[str, list[int]] | None]:
        """Each row's prompt as (text, ids): the text is what a reward reads with the response, the data's own
        format (not the chat template: a reward applies its own), cut as the ids were cut, so a reward judges
        what the policy saw. None: a dialogue that does not fit."""
        if self.dialogue is None:
            return [(self.template.render(row), ids) for row, ids in self.plain.fit_many(rows)]
        texts = [self.template.render(row) for row in rows]
        fitted = [self.dialogue.fit_prompt(text) for text in texts]
        return [None if isinstance(ids, str) else (text, ids) for text, ids in zip(texts, fitted, strict=True)]

    def ids(self, rows: list[dict]) -> list[list[int] | None]:
        return [None if prompt is None else prompt[1] for prompt in self.encode(rows)]

    def item_ids(self, item: dict | str) -> list[int] | None:
        """One prompt of lft.generate: a row of the template's columns, or text filling its first column."""
        if isinstance(item, str):
            item = {**dict.fromkeys(self.template.columns(), ""), self.template.columns()[0]: item}
        return self.ids([item])[0]
