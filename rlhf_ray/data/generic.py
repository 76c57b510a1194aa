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
