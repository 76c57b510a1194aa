"""Rows of a data file with their positions: JSON Lines or JSON arrays (optionally gzipped) read here, by line, so that
broken JSON or UTF-8 is one bad row; parquet and arrow files and `save_to_disk` folders read by `datasets`, by index."""

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


DATASET_SUFFIXES = (".parquet", ".arrow")


def iter_dataset_rows(path: Path, split: str | None = None) -> Iterator[tuple[int, object]]:
    """Rows of a parquet or arrow file or a `save_to_disk` folder, numbered by their index in the dataset. A folder
    holding several splits needs `split` (data.dataset_split)."""
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        if path.is_dir():
            data = load_from_disk(str(path))
        elif path.suffix == ".parquet":
            data = Dataset.from_parquet(str(path))
        else:
            data = Dataset.from_file(str(path))
    except Exception as e:  # pyarrow's and datasets' own errors: the file is what the user must look at
        raise DataError(f"{path}: cannot be read as a dataset ({type(e).__name__}: {e})") from e
    if isinstance(data, DatasetDict):
        if split is None and len(data) == 1:
            split = next(iter(data))
        if split not in data:
            raise DataError(f"{path}: a dataset with splits {', '.join(data)}; set data.dataset_split to one of them"
                            + (f" (not {split!r})" if split is not None else ""))
        data = data[split]
    yield from enumerate(data)


def iter_rows(path: Path, split: str | None = None) -> tuple[str, Iterator[tuple[int, object | BadRow]]]:
    """('line', rows) of a JSON file, ('index', rows) of a dataset file or folder."""
    if not path.exists():
        raise DataError(f"data file {str(path)!r} not found")
    if path.is_dir() or path.suffix in DATASET_SUFFIXES:
        return "index", iter_dataset_rows(path, split)
    return "line", iter_json_rows(path)


def position(path: Path | str, unit: str, number: int) -> str:
    """FILE:LINE for a JSON file's row, FILE[INDEX] for a dataset's."""
    return f"{path}:{number}" if unit == "line" else f"{path}[{number}]"


def _reason(e: Exception) -> str:
    return "nested too deep" if isinstance(e, RecursionError) else str(e)


def require_text(row: object, key: str) -> str:
    """row[key] as a non-empty string, else BadRow naming the key."""
    if not isinstance(row, dict):
        raise BadRow(f"row is a {type(row).__name__}, not an object")
    if key not in row or row[key] is None:  # a dataset's column holds None where a row lacks the field
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
    path: Path, parse: Callable[[object], dict], on_bad_row: str, source: str, empty_response: str = "keep",
    split: str | None = None, check: Callable[[dict, str], dict] | None = check_pair,
) -> tuple[list[dict], LoadReport]:
    """Parse every row of one file with `parse` (which raises BadRow) and `check`; skip-and-count or stop, by
    on_bad_row. Each record keeps its source, file and line (or dataset index)."""
    unit, rows = iter_rows(path, split)
    report, records = LoadReport(str(path), unit=unit), []
    for number, row in rows:
        report.rows += 1
        try:
            if isinstance(row, BadRow):
                raise row
            record = parse(row)
            if check is not None:
                record = check(record, empty_response)
        except BadRow as bad:
            if on_bad_row == "error":
                raise DataError(f"{position(path, unit, number)}: {bad}") from None
            report.skip(str(bad).split(" (")[0], number)
            continue
        for note in filter(None, record.get("note", "").split("; ")):
            report.note(note, number)
        record.update(source=source, file=str(path), line=number)
        record.setdefault("note", "")
        records.append(record)
        report.kept += 1
    return records, report
