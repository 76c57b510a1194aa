"""Anthropic HH-RLHF: each row holds two whole dialogues; split them into prompt / chosen / rejected."""

import re

from .reading import require_text
from .report import BadRow

ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")


def split_dialogues(chosen: str, rejected: str, multi_turn: str = "keep") -> dict:
    """Prompt = the longest shared prefix that ends with '\\n\\nAssistant:'; responses = the rest.

    In 2,307 of 2,312 harmless-test rows that marker is also the last one of both dialogues. In the
    other 5 one response carries further turns; multi_turn='keep' keeps them (noted), 'skip' drops them.
    """
    shared = 0
    limit = min(len(chosen), len(rejected))
    while shared < limit and chosen[shared] == rejected[shared]:
        shared += 1
    cut = chosen.rfind(ASSISTANT, 0, shared)
    if cut < 0:
        raise BadRow("no shared prompt ending in '\\n\\nAssistant:'")
    cut += len(ASSISTANT)
    prompt, chosen_resp, rejected_resp = chosen[:cut], chosen[cut:].strip(), rejected[cut:].strip()
    note = ""
    if ASSISTANT in chosen[cut:] or ASSISTANT in rejected[cut:]:
        if multi_turn == "skip":
            raise BadRow("a response has further turns after the last shared Assistant marker")
        note = "split at last shared Assistant marker, a response has further turns"
    return {"prompt": prompt, "chosen": chosen_resp, "rejected": rejected_resp, "format": "hh_dialogue", "note": note}


def parse_hh_row(row: object, multi_turn: str = "keep") -> dict:
    record = split_dialogues(require_text(row, "chosen"), require_text(row, "rejected"), multi_turn)
    record["group"] = record["prompt"]
    return record


def dialogue_to_messages(prompt: str) -> list[dict]:
    """'\\n\\nHuman: a\\n\\nAssistant: b\\n\\nHuman: c\\n\\nAssistant:' -> chat messages (the last, empty turn dropped)."""
    parts = _TURN.split(prompt)
    messages = []
    for role, text in zip(parts[1::2], parts[2::2]):
        messages.append({"role": "user" if role == "Human" else "assistant", "content": text.strip()})
    if messages and messages[-1]["role"] == "assistant" and not messages[-1]["content"]:
        messages.pop()
    return messages
