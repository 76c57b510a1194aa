"""Atomic checkpoints: write into a `.tmp` sibling, then rename, so a crash never leaves half a checkpoint.

A PPO checkpoint is runs/<name>/checkpoints/iter_NNNNNN/ holding policy/ and critic/ (HF format, which
transformers and vLLM load), deepspeed/ (ZeRO shards and AdamW states per rank) and driver_state.pt
(data cursor, RNGs, KL controller, reward moments, replay buffer, counters). Only renamed folders count.
"""

import logging
import re
import shutil
from pathlib import Path

log = logging.getLogger("rlhf_ray.checkpoint")

_NAME = re.compile(r"^iter_(\d{6})$")
DRIVER_STATE = "driver_state.pt"


def replace_dir(tmp: Path, dest: Path) -> Path:
    """Move the finished folder `tmp` to `dest`, setting an existing `dest` aside first (rename cannot replace it)."""
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        shutil.rmtree(old, ignore_errors=True)
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest


def save_hf_atomic(model, tokenizer, dest: str | Path) -> Path:
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    return replace_dir(tmp, dest)


def checkpoints_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def staging_dir(run_dir: Path, iteration: int) -> Path:
    """A fresh, empty folder to write iteration `iteration`'s checkpoint into (left-overs of a crash removed)."""
    tmp = checkpoints_dir(run_dir) / f"iter_{iteration:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    return tmp


def commit_checkpoint(staging: Path, keep: int) -> Path:
    """Rename the finished staging folder into place (the atomic step), then keep only the newest `keep`."""
    if not (staging / DRIVER_STATE).exists():
        raise RuntimeError(f"{staging} has no {DRIVER_STATE}: refusing to commit an incomplete checkpoint")
    final = replace_dir(staging, staging.with_name(staging.name.removesuffix(".tmp")))
    for old in complete_checkpoints(staging.parent)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def complete_checkpoints(folder: Path) -> list[Path]:
    """Committed checkpoints, oldest first."""
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if p.is_dir() and _NAME.match(p.name) and (p / DRIVER_STATE).exists()]
    return sorted(found, key=lambda p: p.name)


def latest_checkpoint(run_dir: Path) -> Path | None:
    folder = checkpoints_dir(run_dir)
    for tmp in folder.glob("iter_*.tmp"):  # glob of a missing folder yields nothing
        log.warning("ignoring incomplete checkpoint %s (a run stopped while writing it)", tmp)
    done = complete_checkpoints(folder)
    return done[-1] if done else None


def checkpoint_iteration(path: Path) -> int:
    return int(_NAME.match(Path(path).name).group(1))
