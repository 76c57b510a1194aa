"""Learner -> RolloutActors weight sync, by one object-store blob or by a bucketed collective broadcast."""

import ray

from .group import ActorGroup


class WeightSync:
    def __init__(self, transport: str, learner: ActorGroup, rollout: ActorGroup, bucket_mb: int = 64):
        if transport not in ("object_store", "collective"):
            raise ValueError(f"unknown weight-sync transport {transport!r}; choose object_store or collective")
        self.transport, self.learner, self.rollout = transport, learner, rollout
        self.bucket_bytes = bucket_mb * 2**20
        if transport == "collective":
            # {learner rank 0} + one vLLM worker per RolloutActor (no tensor parallelism yet).
            world = 1 + len(rollout)
            addr, port = ray.get(learner.actors[0].master_address.remote())
            self.meta = learner.run("weight_metadata")[0]
            refs = [learner.actors[0].init_weight_group.remote(addr, port, world)]
            refs += [a.init_weight_group.remote(addr, port, 1 + i, world) for i, a in enumerate(rollout.actors)]
            ray.get(refs)  # every member blocks until all have joined

    def sync(self) -> None:
        if self.transport == "object_store":
            blob = ray.put(self.learner.run("export_weights")[0])  # one copy, read by every RolloutActor
            self.rollout.run("update_weights", blob)
            return
        send = self.learner.call("broadcast_weights", self.bucket_bytes)  # every rank: ZeRO-3 gathers are collective
        receive = self.rollout.call("receive_weights", self.meta, self.bucket_bytes)
        self.learner.gather(send)
        self.rollout.gather(receive)
