"""`rlhf-ray gold build CONFIG`: the gold RM of a synthetic gold world, and its labels for every pair.

The gold RM is trained like any RM (the rm section, human labels, ideally on all pairs of a source with a strong
setting); the same live group then scores every pair it holds, train and held-out, and the run folder gets
gold_labels.jsonl. `data.relabel_with=<this run folder>` orders pairs by those scores for proxy RMs, and
`rlhf-ray eval --judge <this run folder>/reward_model` judges policies with the same gold RM.
"""

import json
import logging
import os
from pathlib import Path

from actors.group import ActorGroup
from rlhf_ray.config import Config, ConfigError
from rlhf_ray.data.gold import GOLD_LABELS, gold_label_row
from rlhf_ray.training.rm_data import RMData

from .rm_jobs import score_pairs
from .rm_train import run_rm_train

log = logging.getLogger("rlhf_ray.gold")


def run_gold_build(cfg: Config, run_dir: Path, show_progress: bool = True) -> dict:
    """Train the gold RM (rm train), then label every pair with it; returns rm train's summary plus the labels'."""
    if cfg.data.relabel_with:
        raise ConfigError("gold build learns from human labels: unset data.relabel_with")
    if cfg.rm.flip:
        raise ConfigError("gold build labels every pair in its human order: set rm.flip=false")

    def label(group: ActorGroup, data: RMData) -> dict:
        chosen, rejected = score_pairs(group, list(range(len(data.pairs))), cfg.rm.micro_batch_size * 2,
                                       "gold labels", show_progress)
        path = Path(run_dir) / GOLD_LABELS
        tmp = path.with_suffix(".jsonl.tmp")
        with open(tmp, "w", encoding="utf-8") as f:  # written whole, then renamed: a partial file never counts
            for row, c, r in zip(data.train_rows + data.eval_rows, chosen.tolist(), rejected.tolist(), strict=True):
                f.write(json.dumps(gold_label_row(row["prompt"], row["chosen"], row["rejected"], c, r)) + "\n")
        os.replace(tmp, path)
        disagree = float((rejected > chosen).float().mean())
        log.info("gold labels for %d pairs in %s; the gold RM prefers the human-rejected response in %.1f%%",
                 len(chosen), path, 100 * disagree)
        return {"gold_labels": str(path), "labeled_pairs": len(chosen), "gold_disagrees_with_human": disagree}

    return run_rm_train(cfg, run_dir, show_progress=show_progress, then=label)
