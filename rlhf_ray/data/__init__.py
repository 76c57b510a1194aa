"""Preference data: shipped HH-RLHF and TL;DR sets, users' files in the common formats, train/eval split by group,
RL prompts."""

from dataclasses import dataclass
from functools import partial
from importlib import resources
from pathlib import Path

from datasets import Dataset, Features, Value, concatenate_datasets

from ..config import DataConfig
from .formats import make_prompt_parser, make_row_parser
from .generic import parse_pair_row
from .gold import load_gold_labels, relabel
from .hh_rlhf import dialogue_to_messages, parse_hh_row, split_dialogues
from .prompts import prompt_dataset
from .reading import load_rows
from .report import BadRow, DataError, LoadReport
from .splits import split_by_group
from .tldr import parse_tldr_row

FEATURES = Features({k: Value("string") for k in ("prompt", "chosen", "rejected", "group", "format", "source", "file", "note")}
                    | {"line": Value("int64")})

VENDOR = resources.files(__package__) / "vendor"
SHIPPED = {
    "hh_rlhf": ["hh-rlhf/harmless-base/test.jsonl.gz"],
    "tldr": ["summarize-from-feedback/batch13.json.gz", "summarize-from-feedback/batch18.json.gz"],
}


def shipped_paths(source: str) -> list[Path]:
    if source not in SHIPPED:
        raise DataError(f"no data ships for source {source!r}; set data.paths")
    return [Path(str(VENDOR / p)) for p in SHIPPED[source]]


@dataclass
class PreferenceData:
    train: Dataset
    eval: Dataset
    reports: list[LoadReport]

    def summary(self) -> str:
        lines = [r.summary() for r in self.reports]
        lines.append(f"split: {len(self.train)} train pairs, {len(self.eval)} eval pairs")
        return "\n".join(lines)


def load_pairs(cfg: DataConfig) -> tuple[Dataset, list[LoadReport]]:
    """All pairs of the configured files, in file order, with one report per file."""
    parse = {
        "hh_rlhf": partial(parse_hh_row, multi_turn=cfg.hh_multi_turn),
        "tldr": parse_tldr_row,
        "files": make_row_parser(cfg.fields, cfg.row_format),
        "jsonl": make_row_parser(cfg.fields, cfg.row_format),
    }[cfg.source]
    paths = [Path(p) for p in cfg.paths] or shipped_paths(cfg.source)
    rows, reports = [], []
    for path in paths:
        file_rows, report = load_rows(path, parse, cfg.on_bad_row, cfg.source, cfg.empty_response, cfg.dataset_split)
        rows += file_rows
        reports.append(report)
    return _dataset(rows, FEATURES), reports


def _dataset(rows: list[dict], features: Features) -> Dataset:
    if not rows:  # from_list cannot take features without rows
        return Dataset.from_dict({k: [] for k in features}, features=features)
    return Dataset.from_list(rows, features=features)


PROMPT_FEATURES = Features({k: Value("string") for k in ("prompt", "format", "group", "source", "gold", "file")}
                           | {"line": Value("int64")})


def load_prompt_rows(cfg: DataConfig) -> tuple[Dataset, list[LoadReport]]:
    """The distinct prompts of data.prompt_paths (in file order; a repeated prompt counted as a note), no gold answer."""
    parse = make_prompt_parser(cfg.fields, cfg.row_format)
    rows, reports, seen = [], [], set()
    for path in map(Path, cfg.prompt_paths):
        file_rows, report = load_rows(path, parse, cfg.on_bad_row, "prompts", split=cfg.dataset_split, check=None)
        for row in file_rows:
            if row["prompt"] in seen:
                report.note("repeated prompt, used once", row["line"])
                continue
            seen.add(row["prompt"])
            rows.append({k: row[k] for k in ("prompt", "format", "group", "source", "file", "line")} | {"gold": None})
        reports.append(report)
    return _dataset(rows, PROMPT_FEATURES), reports


def load_preferences(cfg: DataConfig) -> PreferenceData:
    pairs, reports = load_pairs(cfg)
    if cfg.relabel_with:  # before the split: the split groups by prompt, which relabeling keeps
        pairs, relabel_report = relabel(pairs, load_gold_labels(cfg.relabel_with), str(cfg.relabel_with))
        reports.append(relabel_report)
    train, held = split_by_group(pairs, cfg.eval_fraction, cfg.split_seed)
    if cfg.max_pairs is not None:
        train = train.select(range(min(cfg.max_pairs, len(train))))
    if cfg.max_eval_pairs is not None:
        held = held.select(range(min(cfg.max_eval_pairs, len(held))))
    if cfg.augment_pairs:  # train only: eval keeps measuring the RM on pairs it never trained on
        extra = []
        for path in map(Path, cfg.augment_pairs):
            rows, report = load_rows(path, parse_pair_row, cfg.on_bad_row, "augment", cfg.empty_response)
            extra += rows
            reports.append(report)
        if extra:
            train = concatenate_datasets([train, _dataset(extra, FEATURES)])
    return PreferenceData(train, held, reports)


__all__ = [
    "FEATURES", "BadRow", "DataError", "LoadReport", "PreferenceData", "dialogue_to_messages", "load_pairs",
    "load_preferences", "load_prompt_rows", "prompt_dataset", "shipped_paths", "split_by_group", "split_dialogues",
]
