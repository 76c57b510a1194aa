"""What a loader kept, skipped and noted, per file; printed at load time and saved in the run folder."""

from collections import Counter
from dataclasses import dataclass, field


class DataError(ValueError):
    """A bad row under on_bad_row=error, or a file that cannot be read at all; names file and line."""


class BadRow(ValueError):
    """Raised by a row parser; the loader turns it into a skip (counted) or a DataError (file:line)."""


@dataclass
class LoadReport:
    path: str
    unit: str = "line"  # what the numbers count: a JSON file's lines, or a dataset's row indices ("index")
    rows: int = 0
    kept: int = 0
    skipped: Counter = field(default_factory=Counter)
    notes: Counter = field(default_factory=Counter)
    examples: dict[str, list[int]] = field(default_factory=dict)  # reason -> first few line numbers

    def skip(self, reason: str, line: int) -> None:
        self.skipped[reason] += 1
        self._example(reason, line)

    def note(self, what: str, line: int) -> None:
        self.notes[what] += 1
        self._example(what, line)

    def _example(self, key: str, line: int) -> None:
        lines = self.examples.setdefault(key, [])
        if len(lines) < 5:
            lines.append(line)

    def summary(self) -> str:
        text = f"{self.path}: {self.rows} rows, {self.kept} kept, {sum(self.skipped.values())} skipped"
        for label, counts in (("skipped", self.skipped), ("note", self.notes)):
            for key, n in sorted(counts.items()):
                text += f"\n  {label}: {key}: {n} ({'lines' if self.unit == 'line' else 'indices'} {', '.join(map(str, self.examples.get(key, [])))}"
                text += ", ...)" if n > 5 else ")"
        return text

    def to_dict(self) -> dict:
        return {"path": self.path, "unit": self.unit, "rows": self.rows, "kept": self.kept, "skipped": dict(self.skipped),
                "notes": dict(self.notes), "examples": self.examples}
