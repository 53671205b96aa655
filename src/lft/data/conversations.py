"""Conversations read as chat messages: OpenAI-style `messages`, ShareGPT `conversations`, or dialogue text.

A row's conversation column (`data.conversation_column`) holds one of
  - a list of {role, content} turns (roles system, user, assistant: the `messages` format);
  - a list of {from, value} turns (ShareGPT: system, human, gpt);
  - text, or several text columns joined (HH-RLHF's prompt + chosen), split into turns at `data.user_marker` and
    `data.assistant_marker` ("\\n\\nHuman:", "\\n\\nAssistant:").
Every form becomes the same list of {role, content} messages, so the encoder (data/chat_encoding.py) sees one
shape. A row lft cannot train on (an unknown role, a system turn after the first, an empty assistant turn, no
assistant turn) is named by its reason and counted by the encoder; a value of the wrong type is refused at once.
"""

from datasets import DatasetDict

from lft.config.errors import ConfigError
from lft.data.preference_pairs import split_turns
from lft.data.sources import load_splits
from lft.data.values import TEXT, WHAT, Column, kind

ROLES = {"system": "system", "user": "user", "assistant": "assistant",  # messages
         "human": "user", "gpt": "assistant"}  # ShareGPT
AUTO_COLUMNS = ("messages", "conversations")
# Reasons a conversation cannot be trained on, as messages name them (the encoder adds its own).
BAD_REASONS = {"unknown_role": "a turn with a role other than system, user or assistant (human, gpt)",
               "late_system": "a system turn after the first turn",
               "empty_assistant": "an empty assistant turn",
               "no_assistant": "no assistant turn after a user turn"}


def conversation_columns(cfg) -> list[str]:
    """The configured column, or the text columns joined in order; [] for auto (messages or conversations)."""
    column = cfg.get("conversation_column")
    if column is None:
        return []
    return [column] if isinstance(column, str) else [str(c) for c in column]


def load_conversation_splits(cfg, seed: int) -> tuple[DatasetDict, list[str]]:
    """(splits, the columns each row's conversation is read from), checked to exist in every split."""
    named = conversation_columns(cfg)
    text_columns = [Column("conversation_column", c, TEXT) for c in named] if len(named) > 1 else []
    splits = load_splits(cfg, seed, text_columns)  # joined text columns: missing text is dropped and counted there
    for split, ds in splits.items():
        columns = named or [next((c for c in AUTO_COLUMNS if c in ds.column_names), None)]
        missing = [c for c in columns if c not in ds.column_names]
        if missing:
            what = f"data.conversation_column={cfg.get('conversation_column')!r} names" if named else \
                "data.conversation_column=null looks for 'messages' or 'conversations', but found"
            raise ConfigError(f"{what} no such column in the {split} split (columns: {', '.join(ds.column_names)}); "
                              "set data.conversation_column to the column holding the conversations.")
        named = named or columns
    return splits, named


def to_messages(cfg, row: dict, columns: list[str], where: str) -> list[dict] | str:
    """The row's conversation as [{role, content}], or the BAD_REASONS key it cannot be trained on."""
    values = [row[c] for c in columns]
    if len(values) > 1 or isinstance(values[0], str):
        turns = _text_turns(cfg, "".join(str(v or "") for v in values), where)
    elif values[0] is None:
        turns = []
    elif isinstance(values[0], list):
        turns = [_turn(turn, columns[0], where) for turn in values[0]]
    else:
        raise ConfigError(f"data.conversation_column={columns[0]!r}: {where} holds {_what(values[0])} "
                          f"({str(values[0])[:60]!r}), not a conversation; give a list of {{role, content}} turns "
                          "(messages), of {from, value} turns (ShareGPT), or dialogue text.")
    return _check(turns)


def _text_turns(cfg, text: str, where: str) -> list[dict]:
    user, assistant = cfg.get("user_marker"), cfg.get("assistant_marker")
    if not (user and assistant):
        raise ConfigError(f"data.conversation_column: {where} holds text, which lft splits into turns at "
                          "data.user_marker and data.assistant_marker; set both (e.g. '\\n\\nHuman:' and "
                          "'\\n\\nAssistant:'), or point data.conversation_column at a column of messages.")
    return split_turns(text, user, assistant)


def _turn(turn, column: str, where: str) -> dict:
    if not isinstance(turn, dict):
        raise ConfigError(f"data.conversation_column={column!r}: {where} has a turn that is {_what(turn)}, not an "
                          "object; write each turn as {\"role\": ..., \"content\": ...} or {\"from\": ..., \"value\": ...}.")
    sharegpt = turn.get("role") is None and turn.get("from") is not None
    role, content = (turn.get("from"), turn.get("value")) if sharegpt else (turn.get("role"), turn.get("content"))
    if content is not None and not isinstance(content, str):
        raise ConfigError(f"data.conversation_column={column!r}: {where} has a turn whose content is {_what(content)} "
                          f"({str(content)[:60]!r}), not text; lft trains on text turns (join content parts into "
                          "one string).")
    return {"role": ROLES.get(str(role).lower(), f"?{role}"), "content": (content or "").strip()}


def _what(value) -> str:
    return WHAT.get(kind(value), kind(value))


def _check(turns: list[dict]) -> list[dict] | str:
    if any(t["role"].startswith("?") for t in turns):
        return "unknown_role"
    if any(t["role"] == "system" for t in turns[1:]):
        return "late_system"
    if any(t["role"] == "assistant" and not t["content"] for t in turns):
        return "empty_assistant"
    users = [i for i, t in enumerate(turns) if t["role"] == "user"]
    assistants = [i for i, t in enumerate(turns) if t["role"] == "assistant"]
    if not users or not assistants or assistants[-1] < users[0]:
        return "no_assistant"
    # Assistant turns before the first user turn have nothing to answer; turns after the last answer teach nothing.
    system = turns[:1] if turns[0]["role"] == "system" else []
    return system + turns[users[0]: assistants[-1] + 1]
