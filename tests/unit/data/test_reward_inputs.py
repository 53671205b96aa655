"""RewardInputs: a sampled (prompt, response) is encoded for a reward model exactly as RewardTask encoded its
(prompt, answer) pairs, truncation included (oldest turns first, then the answer's end)."""

import pytest
from omegaconf import OmegaConf

from lft.data.reward_inputs import RewardInputs
from tests.conftest import _tiny_tokenizer
from tests.e2e.test_chat_sft import MISTRAL

DIALOGUE = ("\n\nHuman: hello there, how are you today?\n\nAssistant: fine, thanks, and you?"
            "\n\nHuman: tell me about cats please\n\nAssistant:")
ANSWER = " cats are small furry animals that many people keep at home as pets"


def _inputs(chat: bool, max_length: int, max_prompt_length: int) -> RewardInputs:
    tokenizer = _tiny_tokenizer()
    if chat:
        tokenizer.chat_template = MISTRAL
    cfg = OmegaConf.create({"user_marker": "\n\nHuman:", "assistant_marker": "\n\nAssistant:", "chat_template": "auto",
                            "max_length": max_length, "max_prompt_length": max_prompt_length})
    return RewardInputs(cfg, tokenizer)


@pytest.mark.parametrize("chat", [True, False])
@pytest.mark.parametrize("roomy", [True, False])  # False: the oldest turn goes, then the answer's end
def test_a_response_is_encoded_as_training_encoded_the_answer(chat, roomy):
    inputs = _inputs(chat, *((128, 96) if roomy else (24, 16)))
    pair = inputs.encoder.encode(DIALOGUE, ANSWER, " no idea")  # RewardTask's pair, as encode_pairs fits it
    assert pair.truncated != roomy
    ids = inputs.score_features(DIALOGUE, ANSWER)["input_ids"]
    assert ids == inputs.features(pair.prompt, pair.chosen)["input_ids"]
    assert ("hello there" in inputs.tokenizer.decode(ids)) == roomy
    if chat:  # the chat prompt, then the answer and EOS (cut with the answer's end)
        assert (ids[-1] == inputs.tokenizer.eos_token_id) == roomy and (len(ids) == 24) != roomy


def test_a_prompt_training_would_drop_keeps_its_end():
    inputs = _inputs(True, 40, 12)
    assert inputs.encoder.encode(DIALOGUE, ANSWER, " no idea") == "prompt_too_long"
    ids = inputs.score_features(DIALOGUE, ANSWER)["input_ids"]
    text = inputs.tokenizer.decode(ids)
    assert len(ids) <= 40 and "[ / inst ]" in text and ids[-1] == inputs.tokenizer.eos_token_id
