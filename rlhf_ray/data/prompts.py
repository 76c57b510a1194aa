"""Prompts for RL, from a preference set: one row per distinct prompt, the first chosen response as its gold answer."""

from datasets import Dataset


def prompt_dataset(pairs: Dataset) -> Dataset:
    seen, rows = set(), []
    for row in pairs:
        if row["prompt"] in seen:
            continue
        seen.add(row["prompt"])
        rows.append({k: row[k] for k in ("prompt", "format", "group", "source")} | {"gold": row["chosen"]})
    return Dataset.from_list(rows) if rows else Dataset.from_dict({k: [] for k in ("prompt", "format", "group", "source", "gold")})
