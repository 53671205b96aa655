"""Chat SFT end to end: a tiny Llama whose tokenizer has a chat template trains on a conversations file with LoRA,
validates (loss and the last answer generated, scored by ROUGE) and answers a prompt through lft.generate."""

import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from lft.config.errors import ConfigError
from lft.train import train

# Mistral-Instruct's template (as llama_cpp/llama_chat_format.py copies it): the tiny tokenizer's [SEP] is its EOS.
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role']"
           " == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and "
           "assistant roles are supported!') }}{% endif %}{% endfor %}")


@pytest.fixture
def chat_llama(tiny_llama, tmp_path) -> str:
    folder = tmp_path / "chat_llama"
    shutil.copytree(tiny_llama, folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = MISTRAL
    tokenizer.save_pretrained(folder)
    return str(folder)


@pytest.fixture
def conversations(tmp_path) -> str:
    path = tmp_path / "chats.jsonl"
    rows = [{"messages": [{"role": "user", "content": f"What is {i} plus one?"},
                          {"role": "assistant", "content": f"It is {i + 1}."},
                          {"role": "user", "content": "And twice that?"},
                          {"role": "assistant", "content": f"That is {2 * (i + 1)}."}]} for i in range(24)]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def test_chat_sft_trains_two_steps_and_answers(make_cfg, chat_llama, conversations):
    cfg = make_cfg("data=chat", f"data.path={conversations}", f"model.name_or_path={chat_llama}", "strategy=lora",
                   "trainer.max_steps=2", "data.max_length=64", "data.val_fraction=0.2")
    metrics = train(cfg)
    assert metrics["optimizer_steps"] == 2
    assert {"test/loss", "test/rouge1", "test/perplexity"} <= set(metrics), sorted(metrics)
    run = Path(cfg.paths.output_dir)
    assert (run / "adapter").is_dir()
    samples = list((run / "csv" / "samples").glob("*.csv"))  # the test split's (2 steps end before validation)
    assert samples and ",That is " in samples[0].read_text()  # the reference: the last answer of the conversation
    from lft.generate import generate, parse_args

    answers = generate(parse_args([f"run={run}", "prompt=What is 3 plus one?", "max_new_tokens=4"]))
    assert len(answers) == 1 and isinstance(answers[0], str)


def test_chat_needs_a_decoder_with_a_chat_template(make_cfg, tiny_llama, tiny_t5, conversations):
    with pytest.raises(ConfigError, match="data.task=chat renders conversations with the tokenizer's chat template"):
        train(make_cfg("data=chat", f"data.path={conversations}", f"model.name_or_path={tiny_llama}",
                       "data.max_length=64"))
    with pytest.raises(ConfigError, match="data.task=chat \\(conversations\\) needs a decoder-only model"):
        train(make_cfg("data=chat", f"data.path={conversations}", f"model.name_or_path={tiny_t5}",
                       "data.max_length=64"))
