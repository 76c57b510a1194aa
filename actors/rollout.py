"""RolloutActor: a generation engine holding the policy (vLLM; HF generate where vLLM is absent)."""

import time

from rlhf_ray.fault_injection import die_if_asked
from rlhf_ray.rollout import make_engine
from rlhf_ray.rollout.types import Rollouts, SamplingParams

from .precision import NodePrecision
from .process_stats import PeakMemory


class RolloutActor(NodePrecision, PeakMemory):
    def __init__(self, model_dir: str, engine: str = "vllm", dtype: str = "float32", max_model_len: int = 1024,
                 kv_cache_gib: float = 1.0, seed: int = 0, rank: int = 0):
        # dtype auto: bfloat16 only where this node computes bf16 natively.
        dtype = self._resolve_precision(dtype, knob="rollout.dtype").engine_dtype
        # Each actor samples its own stream: seed + rank.
        self.engine = make_engine(engine, model_dir, dtype=dtype, max_model_len=max_model_len, seed=seed + rank,
                                  kv_cache_gib=kv_cache_gib)
        self.rank, self.calls = rank, 0

    def ready(self) -> bool:
        return True

    def generate(self, prompt_ids: list[list[int]], sampling: SamplingParams,
                 prompt_seeds: list[int] | None = None) -> Rollouts:
        t0 = time.perf_counter()
        self.calls += 1
        die_if_asked("rollout", self.rank, self.calls)
        rollouts = self.engine.generate(prompt_ids, sampling, prompt_seeds)
        rollouts.seconds = time.perf_counter() - t0  # the driver cannot see it when generation overlaps learning
        return rollouts

    def answer_logprobs(self, pairs: list[tuple[list[int], list[int]]]) -> list[list[float]]:
        """The current policy's teacher-forced log-probs of (prompt_ids, answer_ids) pairs' answer tokens (SEAM
        scores gold and worse answers)."""
        return self.engine.answer_logprobs([p for p, _ in pairs], [a for _, a in pairs])

    def update_weights(self, blob: bytes) -> None:
        """Policy weights as one safetensors blob; Ray hands every actor the same object-store copy."""
        self.engine.load_weights_blob(blob)

    def join_weight_group(self, addr: str, port: int, rank_offset: int, world_size: int) -> None:
        """Join the learner's weight-broadcast group (blocks until every member has joined)."""
        self.engine.init_weight_group(addr, port, rank_offset, world_size)

    def receive_weights(self, meta: list, bucket_bytes: int) -> None:
        """Receive one bucketed broadcast of the policy weights (collective transport)."""
        self.engine.receive_weights(meta, bucket_bytes)
