"""Train/eval split by group key (prompt, TL;DR post id): every row of a group lands on the same side."""

import hashlib

from datasets import Dataset


def group_is_eval(group: str, eval_fraction: float, seed: int) -> bool:
    """A stable hash of (seed, group) in [0, 1), compared with the fraction: no RNG state, same in every process."""
    digest = hashlib.sha256(f"{seed}\x00{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < eval_fraction


def split_by_group(ds: Dataset, eval_fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    flags = [group_is_eval(g, eval_fraction, seed) for g in ds["group"]]
    train = [i for i, f in enumerate(flags) if not f]
    held = [i for i, f in enumerate(flags) if f]
    return ds.select(train), ds.select(held)
