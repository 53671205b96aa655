"""An online-RL prompt cut to its token budget reaches the reward as the text the policy saw, not the whole row."""

from omegaconf import OmegaConf
from transformers import AutoTokenizer

from lft.data.policy_prompts import PolicyPrompts

REVIEW = "this film was a slow, beautiful and strange journey through a city that never sleeps at all."


def test_the_reward_reads_the_cut_prompt(tiny_llama):
    tokenizer = AutoTokenizer.from_pretrained(tiny_llama)
    cfg = OmegaConf.create({"template": "{text}", "chat_template": False, "max_source_length": 8})
    prompts = PolicyPrompts(cfg, tokenizer)
    (text, ids), (short_text, short_ids) = prompts.encode([{"text": REVIEW}, {"text": "A fine film."}])
    assert len(ids) <= 8 and REVIEW.startswith(text) and len(text) < len(REVIEW) / 2
    assert prompts.plain.ids(text) == ids  # the text is exactly the prompt the policy continues
    assert short_text == "A fine film." and short_ids == prompts.plain.ids(short_text)
