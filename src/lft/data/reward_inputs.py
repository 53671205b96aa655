"""What a reward model (data.task=reward) reads for a (prompt, answer): one encoding for training and for scoring.

Chat (a decoder whose tokenizer has a chat template, per data.chat_template): the prompt's turns in the chat
template, then the answer and EOS; the model pools that last token. Plain: the tokenizer's own pair format of the
fitted texts ([CLS] prompt [SEP] answer [SEP] with token types for BERT-style encoders; a decoder without a chat
template gets whatever its tokenizer's pair format adds, often nothing). Fitting is PairEncoder's: the oldest
turns go first, then the answer's end. RewardTask encodes its pairs with RewardInputs, and a reward read from its
run folder (lft/rewards/scorers.py) encodes each sampled (prompt, response) with it too, under the run's own data
settings and tokenizer, so the model scores exactly the format it was trained on.
"""

from lft.data.preference_pairs import PairEncoder
from lft.data.templates import chat_enabled, chat_setting


class RewardInputs:
    def __init__(self, cfg, tokenizer):
        chat = chat_enabled(chat_setting(cfg), tokenizer)
        reserve = 0 if chat else tokenizer.num_special_tokens_to_add(pair=True)
        self.tokenizer = tokenizer
        self.encoder = PairEncoder(cfg, tokenizer, eos=chat, reserve=reserve, plain_special_tokens=False)

    @property
    def chat(self) -> bool:
        return self.encoder.chat

    def features(self, prompt_ids: list[int], answer_ids: list[int]) -> dict[str, list[int]]:
        """input_ids (and token_type_ids) of one fitted answer."""
        if self.chat:
            return {"input_ids": prompt_ids + answer_ids}
        tokenizer = self.tokenizer  # the fitted texts again, now with the tokenizer's own pair specials
        enc = tokenizer(tokenizer.decode(prompt_ids), tokenizer.decode(answer_ids), truncation="longest_first",
                        max_length=self.encoder.max_length)
        return {key: enc[key] for key in ("input_ids", "token_type_ids") if key in enc}

    def score_features(self, prompt: str, response: str) -> dict[str, list[int]]:
        """A sampled response to a prompt (texts as the data holds them), fitted as training fitted its pairs; a
        prompt training would have dropped (its last user turn over data.max_prompt_length) keeps its end."""
        answer = self.encoder.answer_ids(response)
        prompt_ids = self.encoder.fit_prompt(prompt, len(answer), cut=True)
        room = self.encoder.max_length - self.encoder.reserve - len(prompt_ids)
        return self.features(prompt_ids, answer[:room])
