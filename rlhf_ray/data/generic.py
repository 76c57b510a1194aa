"""Pair files the project writes itself, and the prompt formats every loader produces."""

from .reading import require_text
from .report import BadRow

# How render_prompt turns a prompt into the model's input: text as one user turn, an HH dialogue, or chat messages
# (JSON) of a conversational or ShareGPT row.
FORMATS = ("plain", "hh_dialogue", "messages")


def parse_pair_row(row: object) -> dict:
    """A row of a pair file the project writes itself (`seam augment`): prompt, chosen, rejected and the format the
    prompt was loaded with, so that it renders exactly as its source's pairs do."""
    record = {key: require_text(row, key) for key in ("prompt", "chosen", "rejected")}
    fmt = row.get("format", "plain")
    if fmt not in FORMATS:
        raise BadRow(f"field 'format' is {fmt!r}, not one of {', '.join(FORMATS)}")
    return record | {"group": record["prompt"], "format": fmt, "note": ""}
