"""Reward-model training jobs on RMLearner groups: a job's step schedule, lockstep runs, scoring.

Used by `rm train` (one job of learner.world_size ranks) and `rm strength` (M members and G group RMs, each
a job of one rank, trained side by side).
"""

import logging
import time

import torch

from actors.group import ActorGroup, ZeroShards, split_evenly
from rlhf_ray.config import RMConfig
from rlhf_ray.progress import Progress

log = logging.getLogger("rlhf_ray.rm")


class RMJob:
    """One RM being trained: its group, its pairs (indices into RMData.pairs) and its seeded data order.

    meta: MetaRM's meta set, k token sequences (prompt + policy response) per prompt; when given, every step is a
    MetaRM step on meta_batch of its prompts (split equally over the ranks). The pair order does not depend on it,
    so a vanilla run with the same seed is the control: the same pairs, the same steps, no meta term."""

    def __init__(self, name: str, group: ActorGroup, indices: list[int], rm: RMConfig, seed: int, steps: int,
                 meta: list[list[list[int]]] | None = None, meta_batch: int = 16):
        self.name, self.group, self.indices, self.rm, self.steps = name, group, indices, rm, steps
        self.step = 0
        self._generator = torch.Generator().manual_seed(seed)  # the data order is a function of the seed alone
        self._batches = seeded_batches(indices, rm.batch_size, self._generator)
        self._meta_batches = None
        if meta:
            size = min(meta_batch, len(meta)) // len(group) * len(group)
            if size == 0:
                raise ValueError(f"{name}: {len(meta)} meta prompts cannot be split over {len(group)} ranks")
            # Every rank the same number of meta prompts: J's gradient is a mean over them, averaged over ranks.
            self._meta_batches = seeded_batches(meta, size, torch.Generator().manual_seed(seed))

    @property
    def done(self) -> bool:
        return self.step >= self.steps

    def start_step(self) -> list:
        """Send each rank its share of the next batch; returns the refs (several jobs overlap)."""
        self._t0 = time.perf_counter()
        batch = next(self._batches)
        shards = ZeroShards.split(len(batch), len(self.group), self.rm.micro_batch_size)
        meta = split_evenly(next(self._meta_batches), len(self.group)) if self._meta_batches else [None] * len(self.group)
        return [actor.train_step.remote([batch[i] for i in shards.padded(r)], meta[r])
                for r, actor in enumerate(self.group.actors)]

    def finish_step(self, refs: list) -> dict[str, float]:
        """Gather the ranks' stats: means over ranks, tokens summed, throughput over the step's wall time."""
        stats = self.group.gather(refs)
        self.step += 1
        elapsed = time.perf_counter() - self._t0
        row = {k: sum(s[k] for s in stats) / len(stats) for k in stats[0] if k != "tokens"}
        tokens = sum(s["tokens"] for s in stats)
        return row | {"perf/step_s": elapsed, "perf/tokens": tokens, "perf/tokens_per_s": tokens / elapsed}


def seeded_batches(items: list, size: int, generator: torch.Generator):
    """Batches of `size` items, a fresh seeded shuffle per pass over them."""
    while True:
        order = torch.randperm(len(items), generator=generator).tolist()
        for start in range(0, len(order) - size + 1, size):
            yield [items[i] for i in order[start : start + size]]


def train_side_by_side(jobs: list[RMJob], on_step=None) -> None:
    """Step every unfinished job once per round, all in flight together, until all are done."""
    while active := [j for j in jobs if not j.done]:
        refs = [job.start_step() for job in active]
        for job, job_refs in zip(active, refs):
            row = job.finish_step(job_refs)
            if on_step:
                on_step(job, row)


def score_pairs(group: ActorGroup, indices: list[int], batch_size: int, desc: str | None = None,
                bar: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Chosen and rejected rewards of these pairs, the indices sharded over the group's ranks (ZeroShards: under
    ZeRO-3 each forward is a collective, so all ranks run the same batches).

    In chunks of 4 batches per rank, each reported to a Progress named desc (when given): an eval of a few hundred
    pairs takes minutes on a slow CPU."""
    chosen, rejected = [], []
    chunk = 4 * batch_size * len(group)
    progress = Progress(len(indices), desc, unit="pair", logger=log, bar=bar) if desc else None
    for start in range(0, len(indices), chunk):
        part = indices[start : start + chunk]
        shards = ZeroShards.split(len(part), len(group), batch_size)
        parts = group.gather([a.score.remote([part[i] for i in shards.padded(r)], batch_size)
                              for r, a in enumerate(group.actors)])
        for real in shards.unpad([list(zip(c, r)) for c, r in parts]):
            chosen += [c for c, _ in real]
            rejected += [r for _, r in real]
        if progress:
            progress.update(len(part))
    if progress:
        progress.close()
    return torch.tensor(chosen), torch.tensor(rejected)


def score_sequences_on(group: ActorGroup, sequences: list[list[int]], batch_size: int) -> torch.Tensor:
    """Rewards of token sequences on an RM learner group, sharded like score_pairs (equal shards per rank)."""
    shards = ZeroShards.split(len(sequences), len(group), batch_size)
    parts = group.gather([a.score_sequences.remote([sequences[i] for i in shards.padded(r)], batch_size)
                          for r, a in enumerate(group.actors)])
    return torch.tensor([s for part in shards.unpad(parts) for s in part])
