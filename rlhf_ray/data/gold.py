"""A synthetic gold world (Gao et al., "Scaling laws for reward model overoptimization"; ALGORITHMS.md §6.8).

A gold RM scores every pair once (`rlhf-ray gold build` writes gold_labels.jsonl); `data.relabel_with` then makes
its preference the label: chosen is the response the gold RM scores higher. Proxy RMs trained on relabeled pairs
learn a target that exists, and the same gold RM judges the policies.
"""

import json
from pathlib import Path

from datasets import Dataset

from .pair_id import pair_id
from .report import DataError, LoadReport

GOLD_LABELS = "gold_labels.jsonl"
_KEYS = ("pair_id", "gold_chosen", "gold_rejected")


def gold_label_row(prompt: str, chosen: str, rejected: str, gold_chosen: float, gold_rejected: float) -> dict:
    return {"pair_id": pair_id(prompt, chosen, rejected), "gold_chosen": gold_chosen, "gold_rejected": gold_rejected,
            "prompt": prompt, "chosen": chosen, "rejected": rejected}


def gold_labels_path(path: str | Path) -> Path:
    """The labels file itself, or gold_labels.jsonl inside a gold run folder."""
    path = Path(path).expanduser()
    found = path / GOLD_LABELS if path.is_dir() else path
    if not found.is_file():
        raise DataError(f"data.relabel_with: no gold labels at {found} (run `rlhf-ray gold build` first)")
    return found


def load_gold_labels(path: str | Path) -> dict[str, tuple[float, float]]:
    """pair_id -> (gold score of chosen, of rejected); a malformed line is an error naming file and line."""
    path = gold_labels_path(path)
    labels = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                labels[row["pair_id"]] = (float(row["gold_chosen"]), float(row["gold_rejected"]))
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                raise DataError(f"{path}:{line_no}: not a gold label row with {_KEYS} ({e!r})") from e
    return labels


def relabel(pairs: Dataset, labels: dict[str, tuple[float, float]], source: str) -> tuple[Dataset, LoadReport]:
    """Pairs with chosen and rejected ordered by the gold scores (swapped where the gold RM prefers the rejected).

    A pair the gold RM never scored is dropped and counted; a gold tie keeps the human order and is counted."""
    report = LoadReport(path=f"relabel_with {source}", rows=len(pairs))
    kept = []
    for row in pairs:
        gold = labels.get(pair_id(row["prompt"], row["chosen"], row["rejected"]))
        if gold is None:
            report.skip("no gold label (the gold RM did not score this pair)", row["line"])
            continue
        if gold[1] > gold[0]:
            row = row | {"chosen": row["rejected"], "rejected": row["chosen"]}
            report.note("swapped: the gold RM prefers the human-rejected response", row["line"])
        elif gold[1] == gold[0]:
            report.note("gold tie: human order kept", row["line"])
        kept.append(row)
    report.kept = len(kept)
    return (Dataset.from_list(kept, features=pairs.features) if kept else pairs.select([])), report
