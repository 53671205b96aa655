"""Multi-turn chat SFT (`data.task: chat`): conversations in the model's chat template, loss on the assistant's turns.

Step 1 of the InstructGPT route. Rows are conversations (data/conversations.py: messages, ShareGPT or dialogue
text), rendered with the tokenizer's chat template; the labels are every assistant turn's tokens
(`data.train_on: all_assistant`) or the last one's (`last_assistant`), found by rendering the template
(data/chat_encoding.py). Everything after encoding is a decoder-only LM's: the model, loss and evaluation are
CausalLMTask's; validation generates the last answer from the conversation before it and scores it against the
answer in the data.
"""

import logging
from dataclasses import dataclass
from typing import ClassVar

from lft.config.errors import ConfigError
from lft.config.schema import default
from lft.data.cache import cached_encoding
from lft.data.chat_encoding import ChatEncoder, encode_conversations
from lft.data.conversations import load_conversation_splits
from lft.data.packing import PackingCollator
from lft.data.templates import PromptBuilder, Template, chat_enabled, chat_setting
from lft.generation.generator import Generator
from lft.tasks.causal_lm import CausalLMTask
from lft.tasks.protocol import Encoded
from lft.tasks.seq2seq import text_datamodule

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class ChatTask(CausalLMTask):
    """A decoder-only LM on conversations; only how rows become token ids differs from CausalLMTask."""

    name: ClassVar[str] = "chat"

    def encode(self, tokenizer, seed: int, cache_dir: str | None = None) -> Encoded:
        cfg = self.cfg
        prompts = self.prompt_builder(tokenizer)
        generator = Generator(tokenizer, cfg.get("generate"), decoder_only=True)
        encoded, _ = cached_encoding(lambda: (self._encode_conversations(tokenizer, seed), {}),
                                     task=type(self).__name__, data_cfg=cfg, tokenizer=tokenizer, seed=seed,
                                     cache_dir=cache_dir)
        packing = PackingCollator(tokenizer.pad_token_id) if cfg.get("packing") else None
        datamodule = text_datamodule(cfg, encoded, tokenizer, seed, shifted=True, train_collate_fn=packing)
        return Encoded(datamodule, generator=generator, prompts=prompts)

    def prompt_builder(self, tokenizer) -> PromptBuilder:
        """lft.generate's prompts: one user turn in the chat template, with the generation prompt."""
        if not chat_enabled(chat_setting(self.cfg), tokenizer):
            raise ConfigError(
                f"data.task=chat renders conversations with the tokenizer's chat template, but "
                f"{tokenizer.name_or_path!r} has none (or data.chat_template=false); use a chat model "
                "(model=smollm2_135m), or single-turn data (data.task=seq2seq with data.template) on this one.")
        return PromptBuilder(Template("{text}"), tokenizer, self.cfg.get("max_length"), chat=True, decoder=True)

    def _encode_conversations(self, tokenizer, seed: int):
        splits, columns = load_conversation_splits(self.cfg, seed)
        encoder = ChatEncoder(tokenizer, self.cfg.get("max_length"),
                              self.cfg.get("train_on", default("data.train_on")))
        return encode_conversations(self.cfg, splits, columns, encoder)
