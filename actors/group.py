"""One small actor-group abstraction for every role: N actors in a placement group, call all, gather.

After OpenRLHF's RayActorGroup (openrlhf/trainer/ray/launcher.py).
"""

import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import ray
from ray.util.placement_group import PlacementGroup, placement_group, remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

from rlhf_ray.config import ResourceSpec

log = logging.getLogger("rlhf_ray.actors")


class ActorDiedError(RuntimeError):
    """An actor of a group died; the message names the group, the rank and Ray's reason."""


class RestartBudget:
    """The actor restarts a run may still make, shared by its groups; each one is logged and counted."""

    def __init__(self, limit: int):
        self.limit, self.used = limit, 0

    def spend(self, what: str) -> None:
        if self.used >= self.limit:
            raise ActorDiedError(f"{what}, and the run has used all {self.limit} actor restarts "
                                 "(fault.max_actor_restarts)")
        self.used += 1
        log.warning("%s: restarting it on its bundle (restart %d of %d)", what, self.used, self.limit)


def bundle_of(res: ResourceSpec) -> dict[str, float]:
    bundle = {"CPU": res.num_cpus}
    if res.num_gpus:
        bundle["GPU"] = res.num_gpus
    if res.memory_gib:
        bundle["memory"] = res.memory_gib * 2**30
    return {**bundle, **res.custom}


def make_placement_group(bundles: list[dict[str, float]], name: str, timeout_s: float = 120.0,
                         strategy: str = "PACK") -> PlacementGroup:
    """Reserve the bundles, or fail with what was asked and what the cluster has."""
    # Placement-group names are unique cluster-wide: two groups of one role (a restored learner) may coexist.
    pg = placement_group(bundles, strategy=strategy, name=f"{name}-{uuid.uuid4().hex[:8]}")
    try:
        ray.get(pg.ready(), timeout=timeout_s)
    except ray.exceptions.GetTimeoutError:
        remove_placement_group(pg)
        raise RuntimeError(
            f"could not place {name}: {len(bundles)} bundles of {bundles[0]} ({strategy}) within {timeout_s:.0f} s; "
            f"the cluster has {ray.cluster_resources()}, available {ray.available_resources()}"
        ) from None
    return pg


def shared_placement_group(roles: list[tuple[ResourceSpec, int]], name: str, timeout_s: float = 120.0) -> PlacementGroup:
    """One placement group for several roles: bundle i holds actor i of every role that has one (colocation), placed
    by the first role's strategy."""
    bundles = []
    for i in range(max(n for _, n in roles)):
        bundle: dict[str, float] = {}
        for res, n in roles:
            if i < n:
                for key, value in bundle_of(res).items():
                    bundle[key] = bundle.get(key, 0.0) + value
        bundles.append(bundle)
    return make_placement_group(bundles, name, timeout_s, strategy=roles[0][0].placement)


@dataclass(frozen=True)
class SpawnRecipe:
    """How rank `rank` of a group was made: enough to make it again on the same bundle (restart)."""

    rank: int
    args: tuple
    kwargs: dict
    options: dict


class ActorGroup:
    """`n` actors of `actor_cls`, actor i on bundle `bundle_offset + i` of `pg` (its own PG when None).

    Share one `pg` between groups (with fractional resources) to colocate roles on the same bundles.
    Each actor is built as actor_cls(*args, rank=i, **kwargs); the group keeps each actor's recipe for restart(rank).
    """

    def __init__(self, actor_cls, n: int, resources: ResourceSpec, *args, name: str, pg: PlacementGroup | None = None,
                 bundle_offset: int = 0, timeout_s: float = 120.0, runtime_env: dict | None = None, **kwargs):
        self.name, self.timeout_s = name, timeout_s
        self._own_pg = pg is None
        self.pg = pg or make_placement_group([bundle_of(resources)] * n, name, timeout_s, strategy=resources.placement)
        self._remote_cls = ray.remote(actor_cls)
        runtime_env = with_threads(resources, runtime_env)
        self.recipes: list[SpawnRecipe] = []
        for rank in range(n):
            options = dict(
                num_cpus=resources.num_cpus,
                num_gpus=resources.num_gpus,
                scheduling_strategy=PlacementGroupSchedulingStrategy(self.pg, placement_group_bundle_index=bundle_offset + rank),
                runtime_env=runtime_env,
            )
            if resources.memory_gib:
                options["memory"] = resources.memory_gib * 2**30
            self.recipes.append(SpawnRecipe(rank, args, kwargs, options))
        self.actors = [self._spawn(recipe) for recipe in self.recipes]
        log.info("%s: %d actors of %s with %s each", name, n, actor_cls.__name__, bundle_of(resources))

    def _spawn(self, recipe: SpawnRecipe):
        return self._remote_cls.options(**recipe.options).remote(*recipe.args, rank=recipe.rank, **recipe.kwargs)

    def restart(self, rank: int, timeout_s: float | None = None) -> None:
        """Replace actor `rank` (dead or alive) by a fresh one from its recipe, on the same bundle (which Ray re-places
        when its node is gone); waits until its constructor has run, at most timeout_s (default: the group's placement
        timeout). What it held (weights, a weight-sync group) must be given to it again."""
        ray.kill(self.actors[rank], no_restart=True)
        self.actors[rank] = self._spawn(self.recipes[rank])
        timeout_s = timeout_s or self.timeout_s
        try:
            self.gather([self.actors[rank].__ray_ready__.remote()], timeout_s)
        except ray.exceptions.GetTimeoutError:
            raise ActorDiedError(f"{self.name} rank {rank} could not be restarted within {timeout_s:.0f} s: no node can "
                                 f"take its bundle (available now: {ray.available_resources()})") from None
        log.info("%s: rank %d restarted", self.name, rank)

    def __len__(self) -> int:
        return len(self.actors)

    def call(self, method: str, *args, **kwargs) -> list:
        """Start `method` on every actor; returns ObjectRefs (for overlapping phases)."""
        return [getattr(actor, method).remote(*args, **kwargs) for actor in self.actors]

    def gather(self, refs: list, timeout_s: float | None = None) -> list:
        """Results in rank order; the first failure raises at once (ranks still waiting in a collective with the
        failed one would otherwise block rank-order gets forever); a dead actor raises ActorDiedError naming it."""
        rank_of = {ref: rank for rank, ref in enumerate(refs)}
        pending = list(refs)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, pending = ray.wait(pending, num_returns=1, timeout=left)
            if not done:
                raise ray.exceptions.GetTimeoutError(f"{self.name}: no result within {timeout_s} s")
            self._get(done[0], rank_of[done[0]])
        return [self._get(ref, rank) for rank, ref in enumerate(refs)]

    def _get(self, ref, rank: int):
        try:
            return ray.get(ref)
        except ray.exceptions.RayActorError as e:
            raise ActorDiedError(f"{self.name} rank {rank} died: {e}") from e

    def run(self, method: str, *args, timeout_s: float | None = None, **kwargs) -> list:
        """Call `method` on every actor with the same arguments and gather the results."""
        return self.gather(self.call(method, *args, **kwargs), timeout_s)

    def run_sharded(self, method: str, items: list, *args, rank_args=None, timeout_s: float | None = None) -> list:
        """Independent actors share a load: contiguous shards of `items` (sizes differ by at most one), one per actor,
        `method(shard, *args, *rank_args(rank))`; actors with an empty shard are not called. Per-actor results."""
        return self.gather(self.call_sharded(method, items, *args, rank_args=rank_args), timeout_s)

    def run_sharded_resilient(self, method: str, items: list, *args, budget: RestartBudget, rank_args=None,
                              timeout_s: float | None = None, recover: Callable[[int], None] | None = None) -> list:
        """run_sharded that outlives its actors: a rank that dies, or has no result within timeout_s (hung), is
        restarted on its bundle, recover(rank) gives it back what it held (the current weights), and its shard runs
        again with the same arguments (the same seed: the same result). No item is lost or done twice. An error
        raised by the method itself is not retried (it would recur). Per-actor results, as run_sharded's."""
        shards = split_evenly(items, len(self.actors))

        def submit(rank: int):
            return self._call_shard(method, rank, shards[rank], args, rank_args)

        pending = {submit(rank): rank for rank, shard in enumerate(shards) if shard}
        results: dict[int, object] = {}
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while pending:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            done, _ = ray.wait(list(pending), num_returns=1, timeout=left)
            if done:
                rank = pending.pop(done[0])
                try:
                    results[rank] = ray.get(done[0])
                    continue
                except ray.exceptions.RayActorError as e:
                    failed = {rank: f"{self.name} rank {rank} died during {method} ({type(e).__name__})"}
            else:
                failed = {rank: f"{self.name} rank {rank} gave no {method} result within {timeout_s:.0f} s"
                          for rank in pending.values()}
                pending.clear()
            for rank, what in failed.items():
                budget.spend(what)
                self.restart(rank)
                if recover:
                    recover(rank)
                pending[submit(rank)] = rank
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
        return [results[rank] for rank in sorted(results)]

    def call_sharded(self, method: str, items: list, *args, rank_args=None) -> list:
        """run_sharded without the wait: ObjectRefs for gather (a phase that overlaps another)."""
        shards = split_evenly(items, len(self.actors))
        return [self._call_shard(method, rank, shard, args, rank_args) for rank, shard in enumerate(shards) if shard]

    def _call_shard(self, method: str, rank: int, shard: list, args: tuple, rank_args):
        return getattr(self.actors[rank], method).remote(shard, *args, *(rank_args(rank) if rank_args else ()))

    def run_zero_shards(self, method: str, rows: dict, shards: "ZeroShards", *args, timeout_s: float | None = None) -> list:
        """A DeepSpeed group's call on row shards: rank r gets `{key: tensor[shards.padded(r)]}` (every rank the same
        number of micro-batches, see ZeroShards). Per-rank results, padded rows included (ZeroShards.unpad drops them)."""
        return self.gather([getattr(a, method).remote({k: v[shards.padded(r)] for k, v in rows.items()}, *args)
                            for r, a in enumerate(self.actors)], timeout_s)

    def dead_ranks(self, timeout_s: float = 10.0) -> list[int]:
        """Ranks whose actor is gone (a busy or hung one is alive: its answer only waits in its queue)."""
        dead = []
        for rank, actor in enumerate(self.actors):
            try:
                ray.get(actor.__ray_ready__.remote(), timeout=timeout_s)
            except ray.exceptions.RayActorError:
                dead.append(rank)
            except ray.exceptions.GetTimeoutError:
                pass
        return dead

    def kill(self) -> None:
        for actor in self.actors:
            ray.kill(actor)
        if self._own_pg:
            remove_placement_group(self.pg)


@dataclass(frozen=True)
class ZeroShards:
    """Row shards for a DeepSpeed group, one contiguous shard per rank.

    The ZeRO rule, written once: every rank runs the same number of micro-batches, since every optimizer step (and,
    under ZeRO-3, every forward) is a collective. A shorter shard is padded by cycling its own rows (a rank with no
    rows takes row 0); padded rows are trained on again, and their forward results are dropped by unpad."""

    rows: list[list[int]]
    micro_batches: int
    micro_batch_size: int

    @classmethod
    def split(cls, n_rows: int, ranks: int, micro_batch_size: int) -> "ZeroShards":
        if n_rows < 1:
            raise ValueError("no rows to shard")
        rows = split_evenly(list(range(n_rows)), ranks)
        return cls(rows, math.ceil(max(len(r) for r in rows) / micro_batch_size), micro_batch_size)

    def padded(self, rank: int) -> list[int]:
        own = self.rows[rank] or [0]
        width = self.micro_batches * self.micro_batch_size
        return [own[i % len(own)] for i in range(width)]

    def unpad(self, parts: list) -> list:
        """Per-rank results (sequences, or dicts of them; padded rows last) cut to each rank's real rows."""
        return [{k: v[: len(rows)] for k, v in part.items()} if isinstance(part, dict) else part[: len(rows)]
                for rows, part in zip(self.rows, parts)]


def with_threads(resources: ResourceSpec, runtime_env: dict | None = None) -> dict | None:
    """The runtime_env that gives a worker `resources.threads` torch threads (phases run one after another,
    so an actor may use more threads than the CPUs it reserves)."""
    if not resources.threads:
        return runtime_env
    runtime_env = dict(runtime_env or {})
    runtime_env["env_vars"] = {**runtime_env.get("env_vars", {}), "OMP_NUM_THREADS": str(resources.threads)}
    return runtime_env


def split_evenly(items: list, parts: int) -> list[list]:
    """Contiguous shards whose sizes differ by at most one, in order."""
    size, extra = divmod(len(items), parts)
    out, start = [], 0
    for i in range(parts):
        end = start + size + (1 if i < extra else 0)
        out.append(items[start:end])
        start = end
    return out
