"""Users' own preference rows in JSON/JSONL, with a field mapping."""

from ..config import FieldMap
from .reading import require_text
from .report import BadRow


def make_generic_parser(fields: FieldMap):
    def parse(row: object) -> dict:
        prompt = require_text(row, fields.prompt)
        group = prompt
        if fields.group is not None:
            if fields.group not in row:
                raise BadRow(f"missing field {fields.group!r}")
            group = str(row[fields.group])
        return {
            "prompt": prompt,
            "chosen": require_text(row, fields.chosen),
            "rejected": require_text(row, fields.rejected),
            "group": group,
            "format": "plain",
            "note": "",
        }

    return parse


FORMATS = ("plain", "hh_dialogue")  # how render_prompt turns a prompt into the model's input


def parse_pair_row(row: object) -> dict:
    """A row of a pair file the project writes itself (`seam augment`): prompt, chosen, rejected and the format the
    prompt was loaded with, so that it renders exactly as its source's pairs do."""
    record = {key: require_text(row, key) for key in ("prompt", "chosen", "rejected")}
    fmt = row.get("format", "plain")
    if fmt not in FORMATS:
        raise BadRow(f"field 'format' is {fmt!r}, not one of {', '.join(FORMATS)}")
    return record | {"group": record["prompt"], "format": fmt, "note": ""}
