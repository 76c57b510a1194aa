"""Prompts for RL, from a preference set: one row per distinct prompt, the first chosen response as its gold answer."""

import json
import logging
from pathlib import Path

from datasets import Dataset

from .report import DataError

log = logging.getLogger("rlhf_ray.data")


def prompt_dataset(pairs: Dataset) -> Dataset:
    seen, rows = set(), []
    for row in pairs:
        if row["prompt"] in seen:
            continue
        seen.add(row["prompt"])
        rows.append({k: row[k] for k in ("prompt", "format", "group", "source")} | {"gold": row["chosen"]})
    return Dataset.from_list(rows) if rows else Dataset.from_dict({k: [] for k in ("prompt", "format", "group", "source", "gold")})


def keep_listed_prompts(prompts: Dataset, path: str | Path) -> Dataset:
    """Only the prompts that a prompt list (JSONL rows with a `prompt` field, e.g. `rlhf-ray seam filter`'s output)
    names; listed prompts absent from the data are counted and reported."""
    listed = set()
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                listed.add(json.loads(line)["prompt"])
            except (ValueError, KeyError, TypeError) as e:
                raise DataError(f"{path}:{line_no}: not a prompt-list row with a 'prompt' field ({e})") from e
    kept = prompts.filter(lambda row: row["prompt"] in listed)
    missing = len(listed) - len(kept)
    log.info("data.rl_prompts=%s: %d of %d RL prompts kept%s", path, len(kept), len(prompts),
             f"; {missing} listed prompts are not in the data" if missing else "")
    return kept
