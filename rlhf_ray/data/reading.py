"""Rows of a JSON Lines or JSON-array file (optionally gzipped) with their line numbers; broken JSON is a row error."""

import gzip
import json
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path

from .report import BadRow, DataError, LoadReport


def _open_bytes(path: Path):
    return gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")


def iter_json_rows(path: Path) -> Iterator[tuple[int, object | BadRow]]:
    """Yield (line or record number, parsed object) or (number, BadRow) for a line that is not valid UTF-8 or JSON.
    A file that cannot be read on (broken gzip, an I/O error) or a broken JSON array is a DataError naming it."""
    if not path.is_file():
        raise DataError(f"data file {str(path)!r} not found")
    try:
        with _open_bytes(path) as f:
            head = f.read(1 << 12).lstrip()
            f.seek(0)
            if head.startswith((b"[", b"\xef\xbb\xbf[")):  # one JSON array: number the records instead of the lines
                try:
                    records = json.loads(f.read().decode("utf-8-sig"))
                except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
                    raise DataError(f"{path}: not a valid JSON array ({_reason(e)})") from None
                yield from enumerate(records, start=1)
                return
            for number, raw in enumerate(f, start=1):
                try:
                    line = raw.decode("utf-8-sig" if number == 1 else "utf-8")  # a BOM may open the file
                except UnicodeDecodeError as e:
                    yield number, BadRow(f"invalid UTF-8 (byte {e.start} of the line)")
                    continue
                if not line.strip():
                    continue
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as e:
                    yield number, BadRow(f"invalid JSON ({e.msg} at column {e.colno})")
                except RecursionError:
                    yield number, BadRow("invalid JSON (nested too deep)")
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"{path}: cannot be read ({e})") from e


def _reason(e: Exception) -> str:
    return "nested too deep" if isinstance(e, RecursionError) else str(e)


def require_text(row: object, key: str) -> str:
    """row[key] as a non-empty string, else BadRow naming the key."""
    if not isinstance(row, dict):
        raise BadRow(f"row is a {type(row).__name__}, not an object")
    if key not in row:
        raise BadRow(f"missing field {key!r}")
    value = row[key]
    if not isinstance(value, str):
        raise BadRow(f"field {key!r} is a {type(value).__name__}, not a string")
    if not value.strip():
        raise BadRow(f"field {key!r} is empty")
    return value


def check_pair(record: dict, empty_response: str = "keep") -> dict:
    """The checks every preference pair gets, whatever its source.

    An empty response can be a real judgement (HH-RLHF has 4 pairs where saying nothing was preferred):
    empty_response='keep' keeps and notes it, 'skip' drops it. An empty prompt is always a bad row.
    """
    if not record["prompt"].strip():
        raise BadRow("empty prompt")
    if record["chosen"].strip() == record["rejected"].strip():
        raise BadRow("chosen and rejected are identical")
    notes = [record["note"]] if record.get("note") else []
    for key in ("chosen", "rejected"):
        if not record[key].strip():
            if empty_response == "skip":
                raise BadRow(f"empty {key} response")
            notes.append(f"empty {key} response")
    record["note"] = "; ".join(notes)
    return record


def load_rows(
    path: Path, parse: Callable[[object], dict], on_bad_row: str, source: str, empty_response: str = "keep"
) -> tuple[list[dict], LoadReport]:
    """Parse every row of one file with `parse` (which raises BadRow); skip-and-count or stop, by on_bad_row."""
    report, records = LoadReport(str(path)), []
    for number, row in iter_json_rows(path):
        report.rows += 1
        try:
            if isinstance(row, BadRow):
                raise row
            record = check_pair(parse(row), empty_response)
        except BadRow as bad:
            if on_bad_row == "error":
                raise DataError(f"{path}:{number}: {bad}") from None
            report.skip(str(bad).split(" (")[0], number)
            continue
        for note in filter(None, record["note"].split("; ")):
            report.note(note, number)
        record.update(source=source, file=str(path), line=number)
        record.setdefault("note", "")
        records.append(record)
        report.kept += 1
    return records, report
