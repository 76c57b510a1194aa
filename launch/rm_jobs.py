"""Reward-model training jobs on RMLearner groups: the data they share, a job's step schedule, lockstep runs.

Used by `rm train` (one job of learner.world_size ranks) and `rm strength` (M members and G group RMs, each
a job of one rank, trained side by side).
"""

import json
import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from actors.group import ActorGroup, split_evenly
from rlhf_ray.config import Config, RMConfig
from rlhf_ray.data import load_preferences
from rlhf_ray.data.tokenize import encode_pairs
from rlhf_ray.models import load_tokenizer
from rlhf_ray.models.assets import resolve_model
from rlhf_ray.progress import Progress
from rlhf_ray.training.rm_denoise import apply_strength, row_strength
from rlhf_ray.training.strength_report import load_strength

log = logging.getLogger("rlhf_ray.rm")


@dataclass
class RMData:
    """Encoded pairs, train first then eval, as every RM learner holds them; rows are the matching data rows."""

    init_dir: str  # the LM to put a fresh head on (from_lm), or an RM to continue
    from_lm: bool
    pairs: list[dict]
    train_rows: list[dict]
    eval_rows: list[dict]
    denoise: dict = field(default_factory=dict)  # counts of flipped / soft-labelled pairs
    eval_strength: list[float | None] | None = None  # for the confident-subset eval

    @property
    def train_index(self) -> list[int]:
        return list(range(len(self.train_rows)))

    @property
    def eval_index(self) -> list[int]:
        return list(range(len(self.train_rows), len(self.pairs)))

    @property
    def eval_sources(self) -> list[str]:
        return [data_source(r) for r in self.eval_rows]


def data_source(row: dict) -> str:
    """A pair's source for per-source metrics: its file's folder and name without extensions (harmless-base/test)."""
    path = Path(row["file"])
    return f"{path.parent.name}/{path.name.split('.')[0]}"


def prepare_rm_data(cfg: Config, run_dir: Path, denoise: bool = True) -> RMData:
    """Load and encode the configured preference set; with denoise, apply rm.flip / soft_label / margin."""
    data = load_preferences(cfg.data)
    log.info("data:\n%s", data.summary())
    (run_dir / "data_report.json").write_text(json.dumps([r.to_dict() for r in data.reports], indent=1))
    init_dir = cfg.model.reward or str(resolve_model(cfg.model.policy))
    tokenizer = load_tokenizer(init_dir)
    enc = dict(max_len=cfg.model.max_len, max_response_len=cfg.model.max_response_len,
               use_chat_template=cfg.data.chat_template, on_overlong=cfg.model.on_overlong)
    train, train_stats = encode_pairs(tokenizer, data.train, **enc)
    evals, eval_stats = encode_pairs(tokenizer, data.eval, **enc)
    log.info("train: %s; eval: %s", train_stats.summary(), eval_stats.summary())
    if not train:
        raise ValueError("no training pairs left after loading and encoding; see the data report above")
    train_rows = [data.train[p["index"]] for p in train]
    eval_rows = [data.eval[p["index"]] for p in evals]
    strength = load_strength(cfg.rm.strength_file) if cfg.rm.strength_file else None
    rm = cfg.rm if denoise else cfg.rm.model_copy(update={"flip": False, "soft_label": False, "adaptive_margin": False})
    # Re-index into the encoded rows: apply_strength looks pairs up by their `index` into the rows it is given.
    train, counts = apply_strength([p | {"index": i} for i, p in enumerate(train)], train_rows, rm, strength)
    if counts:
        log.info("denoising from %s: %s", cfg.rm.strength_file, counts)
    evals = [p | {"alpha": 0.0, "margin": 0.0} for p in evals]
    return RMData(init_dir, cfg.model.reward is None, train + evals, train_rows, eval_rows, counts,
                  row_strength(eval_rows, strength) if strength else None)


def total_steps(n_pairs: int, rm: RMConfig, what: str = "training") -> int:
    """Optimizer steps for n_pairs: epochs x full batches, capped by rm.max_steps."""
    per_epoch = n_pairs // rm.batch_size
    if per_epoch == 0:
        raise ValueError(f"{what}: {n_pairs} pairs, fewer than one batch (rm.batch_size={rm.batch_size})")
    return int(min(rm.max_steps or math.inf, per_epoch * rm.epochs))


class RMJob:
    """One RM being trained: its group, its pairs (indices into RMData.pairs) and its seeded data order."""

    def __init__(self, name: str, group: ActorGroup, indices: list[int], rm: RMConfig, seed: int, steps: int):
        self.name, self.group, self.indices, self.rm, self.steps = name, group, indices, rm, steps
        self.step = 0
        self._generator = torch.Generator().manual_seed(seed)  # the data order is a function of the seed alone
        self._batches = self._batch_iter()

    def _batch_iter(self):
        size = self.rm.batch_size
        while True:
            order = torch.randperm(len(self.indices), generator=self._generator).tolist()
            for start in range(0, len(order) - size + 1, size):
                yield [self.indices[i] for i in order[start : start + size]]

    @property
    def done(self) -> bool:
        return self.step >= self.steps

    def start_step(self) -> list:
        """Send each rank its share of the next batch; returns the refs (several jobs overlap)."""
        self._t0 = time.perf_counter()
        shards = split_evenly(next(self._batches), len(self.group))
        return [actor.train_step.remote(shard) for actor, shard in zip(self.group.actors, shards)]

    def finish_step(self, refs: list) -> dict[str, float]:
        """Gather the ranks' stats: means over ranks, tokens summed, throughput over the step's wall time."""
        stats = self.group.gather(refs)
        self.step += 1
        elapsed = time.perf_counter() - self._t0
        row = {k: sum(s[k] for s in stats) / len(stats) for k in stats[0] if k != "tokens"}
        tokens = sum(s["tokens"] for s in stats)
        return row | {"perf/step_s": elapsed, "perf/tokens": tokens, "perf/tokens_per_s": tokens / elapsed}


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
    """Chosen and rejected rewards of these pairs, the indices sharded over the group's ranks.

    In chunks of 4 batches per rank, each reported to a Progress named desc (when given): an eval of a few hundred
    pairs takes minutes on a slow CPU. Every rank gets a shard of the same length (the last index repeated, its
    scores dropped): under ZeRO-3 each forward is a collective, so all ranks must run the same batches."""
    chosen, rejected = [], []
    chunk = 4 * batch_size * len(group)
    progress = Progress(len(indices), desc, unit="pair", logger=log, bar=bar) if desc else None
    for start in range(0, len(indices), chunk):
        part = indices[start : start + chunk]
        shards = split_evenly(part, len(group))
        width = max(len(s) for s in shards)
        padded = [s + [part[-1]] * (width - len(s)) for s in shards]
        parts = group.gather([a.score.remote(shard, batch_size) for a, shard in zip(group.actors, padded)])
        chosen += [c for shard, (cs, _) in zip(shards, parts) for c in cs[: len(shard)]]
        rejected += [r for shard, (_, rs) in zip(shards, parts) for r in rs[: len(shard)]]
        if progress:
            progress.update(len(part))
    if progress:
        progress.close()
    return torch.tensor(chosen), torch.tensor(rejected)
