"""Users' rows in the formats published preference sets use, turned into prompt/chosen/rejected records.

- strings: prompt, chosen, rejected as text (keys named by data.fields);
- conversational (TRL): chosen/rejected as lists of {role, content} messages, with an explicit prompt (text or
  messages) or an implicit one (the messages chosen and rejected share);
- sharegpt: `conversations` as {from, value} messages (after an optional `system` text), chosen/rejected as one
  message object each.

A prompt that is one user message becomes plain text, so it groups and renders exactly as the same string row;
a longer one is kept as its messages in JSON (format "messages"), rendered with the tokenizer's chat template.
"""

import json

from ..config import FieldMap
from .reading import require_text
from .report import BadRow

ROW_FORMATS = ("strings", "conversational", "sharegpt")
# ShareGPT's speaker names (and the role names TRL uses) -> chat-template roles.
ROLES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "bot": "assistant",
         "model": "assistant", "chatgpt": "assistant", "system": "system"}


def detect_row_format(row: dict, fields: FieldMap) -> str:
    """The format of one row, from its keys and value types."""
    if "conversations" in row:
        return "sharegpt"
    if isinstance(row.get(fields.chosen), (list, dict)) or isinstance(row.get(fields.prompt), list):
        return "conversational"
    return "strings"


def as_messages(value: object, key: str) -> list[dict]:
    """A list of {role, content} or {from, value} objects (or one such object) as [{role, content}]."""
    items = [value] if isinstance(value, dict) else value
    if not isinstance(items, list) or not items:
        kind = "an empty list" if items == [] else f"a {type(value).__name__}"
        raise BadRow(f"field {key!r} is {kind}, not a list of messages")
    messages = []
    for i, item in enumerate(items):
        if not isinstance(item, dict):
            raise BadRow(f"field {key!r} message {i} is a {type(item).__name__}, not an object")
        speaker = item.get("role", item.get("from"))
        text = item.get("content", item.get("value"))
        if not isinstance(speaker, str) or speaker.lower() not in ROLES:
            raise BadRow(f"field {key!r} message {i} has role {speaker!r}, not one of {', '.join(sorted(ROLES))}")
        if not isinstance(text, str):
            raise BadRow(f"field {key!r} message {i} content is a {type(text).__name__}, not a string")
        messages.append({"role": ROLES[speaker.lower()], "content": text})
    return messages


def prompt_from_messages(messages: list[dict], key: str) -> tuple[str, str]:
    """(prompt, format) of a prompt's messages."""
    if not messages or not any(m["content"].strip() for m in messages):
        raise BadRow(f"field {key!r} is empty")
    if messages[-1]["role"] == "assistant":
        raise BadRow(f"field {key!r} ends with an assistant message: nothing left for the response to answer")
    if len(messages) == 1 and messages[0]["role"] == "user":
        return messages[0]["content"], "plain"
    return json.dumps(messages, ensure_ascii=False), "messages"


def response_text(messages: list[dict], key: str) -> str:
    """The text of a response given as messages: exactly one assistant message."""
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        roles = ", ".join(m["role"] for m in messages) or "none"
        raise BadRow(f"field {key!r} response is not one assistant message (messages: {roles})")
    return messages[0]["content"]


def split_conversations(chosen: list[dict], rejected: list[dict]) -> tuple[list[dict], list[dict], list[dict]]:
    """TRL's implicit prompt: the messages both conversations share; the rest are the responses."""
    shared = 0
    while shared < min(len(chosen), len(rejected)) and chosen[shared] == rejected[shared]:
        shared += 1
    return chosen[:shared], chosen[shared:], rejected[shared:]


def parse_conversational_row(row: dict, fields: FieldMap) -> dict:
    chosen, rejected = (as_messages(row.get(k), k) if k in row else _missing(k) for k in (fields.chosen, fields.rejected))
    if fields.prompt in row and row[fields.prompt] is not None:
        value = row[fields.prompt]
        prompt_messages = [{"role": "user", "content": require_text(row, fields.prompt)}] if isinstance(value, str) \
            else as_messages(value, fields.prompt)
    else:
        prompt_messages, chosen, rejected = split_conversations(chosen, rejected)
    prompt, fmt = prompt_from_messages(prompt_messages, fields.prompt)
    return {"prompt": prompt, "chosen": response_text(chosen, fields.chosen),
            "rejected": response_text(rejected, fields.rejected), "format": fmt}


def sharegpt_prompt(row: dict) -> tuple[str, str]:
    """The prompt of a ShareGPT row: its conversations, after the row's `system` text where it has one."""
    messages = as_messages(row["conversations"], "conversations")
    if row.get("system") is not None:
        system = require_text(row, "system")
        messages = [{"role": "system", "content": system}] + messages
    return prompt_from_messages(messages, "conversations")


def parse_sharegpt_row(row: dict, fields: FieldMap) -> dict:
    prompt, fmt = sharegpt_prompt(row)
    responses = [response_text(as_messages(row.get(k), k) if k in row else _missing(k), k)
                 for k in (fields.chosen, fields.rejected)]
    return {"prompt": prompt, "chosen": responses[0], "rejected": responses[1], "format": fmt}


def parse_strings_row(row: dict, fields: FieldMap) -> dict:
    return {"prompt": require_text(row, fields.prompt), "chosen": require_text(row, fields.chosen),
            "rejected": require_text(row, fields.rejected), "format": "plain"}


PARSERS = {"strings": parse_strings_row, "conversational": parse_conversational_row, "sharegpt": parse_sharegpt_row}


def make_row_parser(fields: FieldMap, row_format: str = "auto"):
    """A parser of preference rows in `row_format` (auto: detected per row), with the group key of data.fields."""

    def parse(row: object) -> dict:
        if not isinstance(row, dict):
            raise BadRow(f"row is a {type(row).__name__}, not an object")
        fmt = detect_row_format(row, fields) if row_format == "auto" else row_format
        record = PARSERS[fmt](row, fields)
        if fields.group is None:
            group = record["prompt"]
        elif fields.group in row:
            group = str(row[fields.group])
        else:
            raise BadRow(f"missing field {fields.group!r}")
        return record | {"group": group, "note": ""}

    return parse


def make_prompt_parser(fields: FieldMap, row_format: str = "auto"):
    """A parser of prompt-only rows for RL: the prompt as text or messages, or a ShareGPT conversation that ends
    with the user's turn. No gold answer."""

    def parse(row: object) -> dict:
        if not isinstance(row, dict):
            raise BadRow(f"row is a {type(row).__name__}, not an object")
        sharegpt = row_format == "sharegpt" or (row_format == "auto" and "conversations" in row)
        key = "conversations" if sharegpt else fields.prompt
        if key not in row or row[key] is None:
            _missing(key)
        if sharegpt:
            prompt, fmt = sharegpt_prompt(row)
        elif isinstance(row[key], str):
            prompt, fmt = require_text(row, key), "plain"
        else:
            prompt, fmt = prompt_from_messages(as_messages(row[key], key), key)
        return {"prompt": prompt, "format": fmt, "group": prompt, "note": ""}

    return parse


def _missing(key: str):
    raise BadRow(f"missing field {key!r}")
