"""Weight sync (actor layer): rank 0 of a source group (the policy learner, an RM learner) to every actor of some
target groups (RolloutActors, RewardActors, the learner's critic), by one object-store blob or by a bucketed
broadcast over a standalone process group. connect() is apart from construction, so a restarted target re-joins.
"""

from contextlib import contextmanager
from dataclasses import dataclass

import ray

from rlhf_ray.memory import trims_host_memory
from rlhf_ray.weight_codec import (
    broadcast_state_dict,
    make_weight_group,
    pack_state_dict,
    receive_state_dict,
    unpack_state_dict,
    weight_metadata,
)

from .dist import gathered, node_address
from .group import ActorGroup


class WeightSource:
    """Mixin of a DeepSpeed actor that others follow. Each method is a collective under ZeRO-3 (the shards are
    gathered first): every rank of the group must call it; rank 0 does the sending."""

    rank: int
    zero_stage: int

    def source_module(self):
        """The model whose weights targets receive."""
        raise NotImplementedError

    @contextmanager
    def _full_state_dict(self, module=None):
        module = module if module is not None else self.source_module()
        with gathered(module, self.zero_stage):
            yield module.state_dict()

    def master_address(self) -> tuple[str, int]:
        return node_address()

    def weight_metadata(self) -> list:
        with self._full_state_dict() as state:
            return weight_metadata(state)

    def host_weight_group(self, addr: str, port: int, world_size: int) -> None:
        if self.rank == 0:
            self._weight_group = make_weight_group(addr, port, 0, world_size)

    def broadcast_weights(self, bucket_bytes: int) -> None:
        with self._full_state_dict() as state:
            if self.rank == 0:
                broadcast_state_dict(self._weight_group, state, bucket_bytes)

    @trims_host_memory
    def export_weights(self) -> bytes | None:
        """The full weights as one safetensors blob on rank 0; None on the other ranks."""
        with self._full_state_dict() as state:
            return pack_state_dict(state) if self.rank == 0 else None


class WeightTarget:
    """Mixin of an actor that follows a source: `load_state_dict(state)` puts weights in place."""

    def load_state_dict(self, state: dict) -> None:
        raise NotImplementedError

    @trims_host_memory
    def update_weights(self, blob: bytes) -> None:
        self.load_state_dict(unpack_state_dict(blob))

    def join_weight_group(self, addr: str, port: int, rank: int, world_size: int) -> None:
        self._weight_group = make_weight_group(addr, port, rank, world_size)

    def receive_weights(self, meta: list, bucket_bytes: int) -> None:
        self.load_state_dict(receive_state_dict(self._weight_group, meta, bucket_bytes))


@dataclass(frozen=True)
class Target:
    """A target group; `update` names the blob method, and `collective` says whether it can join a broadcast
    (the learner's critic, reinitialised from an RM, takes the blob only)."""

    group: ActorGroup
    update: str = "update_weights"
    collective: bool = True


class WeightSync:
    def __init__(self, transport: str, source: ActorGroup, targets: list[ActorGroup | Target], bucket_mb: int = 64):
        if transport not in ("object_store", "collective"):
            raise ValueError(f"unknown weight-sync transport {transport!r}; choose object_store or collective")
        self.transport, self.source = transport, source
        self.targets = [t if isinstance(t, Target) else Target(t) for t in targets]
        self.bucket_bytes = bucket_mb * 2**20
        self.meta = None

    @property
    def _broadcast_targets(self) -> list[Target]:
        return [t for t in self.targets if t.collective] if self.transport == "collective" else []

    def connect(self) -> None:
        """Build the broadcast group: {source rank 0} + one member per target actor (no tensor parallelism yet).
        Call again after a target restarted: a new group replaces the old one on every member."""
        members = [a for t in self._broadcast_targets for a in t.group.actors]
        if not members:
            return
        world = 1 + len(members)
        addr, port = ray.get(self.source.actors[0].master_address.remote())
        self.meta = self.source.run("weight_metadata")[0]
        refs = [self.source.actors[0].host_weight_group.remote(addr, port, world)]
        refs += [a.join_weight_group.remote(addr, port, 1 + i, world) for i, a in enumerate(members)]
        ray.get(refs)  # every member blocks until all have joined

    def restore(self) -> None:
        """A target actor was restarted and holds the weights it was made with: rebuild the broadcast group (its old
        member is gone) and send every target the source's current weights again."""
        self.connect()
        self.sync()

    def sync(self) -> None:
        """Every target gets the source's current weights."""
        broadcast = self._broadcast_targets
        blob_targets = [t for t in self.targets if t not in broadcast]
        if blob_targets:
            blob = ray.put(self.source.run("export_weights")[0])  # one copy, read by every target actor
            for target in blob_targets:
                target.group.run(target.update, blob)
        if broadcast:
            if self.meta is None:
                raise RuntimeError("collective weight sync: call connect() first")
            send = self.source.call("broadcast_weights", self.bucket_bytes)  # every rank: ZeRO-3 gathers
            receive = [t.group.call("receive_weights", self.meta, self.bucket_bytes) for t in broadcast]
            self.source.gather(send)
            for target, refs in zip(broadcast, receive):
                target.group.gather(refs)
