"""Iteration time of a PPO run, phase by phase, from the work each phase does (FLOPs, bytes moved).

The phases run one after another (launch/trainer.py), so an iteration takes their sum and the slowest one bounds it.
Work per iteration, for S sequences of T = prompt + response tokens, policy P and RM/critic R parameters:

    rollout     2 P S T             every token through the policy once (prefill + decode)
    score       2 R S T             the RM reads each sequence
    experience  S T (2P + 2P + 2R)  policy, reference and critic forward passes (no 2R without a critic)
    learn       epochs S T (6P+6R)  forward + backward of policy and critic (no 6R without a critic)
    sync        P x bytes/param     the policy's weights to the rollout engines

Two ways to turn work into seconds:
- `Calibration`, fitted on runs measured on this machine (CPU): per phase a fixed overhead plus work / (cores used x a
  per-core rate), the cores used being min(machine cores, workers x threads per worker); sync: overhead + seconds
  per GB per rollout actor.
- `predict_gpu`, for a stated GPU cluster: compute at an assumed MFU of the GPU's peak, decode bounded by reading the
  weights from HBM once per step, and the learner's ZeRO collectives over NVLink (one node) or the network.
"""

import math
from dataclasses import asdict, dataclass, field

import numpy as np

PHASES = ("rollout", "score", "experience", "learn", "sync")
COMPUTE_PHASES = PHASES[:-1]


@dataclass(frozen=True)
class Workload:
    policy_params: float
    rm_params: float  # the RM and the critic (which starts from it)
    sequences: int  # prompts_per_iteration x n_samples
    prompt_tokens: float  # mean per sequence
    response_tokens: float  # mean per sequence
    ppo_epochs: int = 1
    micro_batch: int = 4  # sequences per learner rank per optimizer step
    weight_bytes: int = 4  # bytes per parameter sent by weight sync
    critic: bool = True  # False with a critic-free advantage estimator (GRPO, RLOO, REINFORCE++)


def phase_work(w: Workload) -> dict[str, float]:
    """FLOPs of each compute phase and bytes of sync, per iteration (module docstring)."""
    tokens = w.sequences * (w.prompt_tokens + w.response_tokens)
    p, r = w.policy_params, w.rm_params
    critic = r if w.critic else 0.0
    return {"rollout": 2 * p * tokens, "score": 2 * r * tokens, "experience": tokens * (4 * p + 2 * critic),
            "learn": w.ppo_epochs * tokens * (6 * p + 6 * critic), "sync": p * w.weight_bytes}


@dataclass(frozen=True)
class Workers:
    """How many workers each phase spreads over, and the CPU threads of each (CPU calibration only)."""

    rollout: int
    reward: int
    learner: int
    threads: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COMPUTE_PHASES, 1))

    def of(self, phase: str) -> int:
        return {"rollout": self.rollout, "score": self.reward, "experience": self.learner, "learn": self.learner,
                "sync": self.rollout}[phase]


def cores_used(workers: Workers, phase: str, cores: int) -> int:
    return min(cores, workers.of(phase) * workers.threads.get(phase, 1))


@dataclass
class Calibration:
    cores: int
    overhead_s: dict[str, float]
    flops_per_core_s: dict[str, float]  # compute phases
    sync_s_per_gb_per_actor: float

    def predict(self, w: Workload, workers: Workers) -> dict[str, float]:
        work = phase_work(w)
        out = {ph: self.overhead_s[ph] + work[ph] / (cores_used(workers, ph, self.cores) * self.flops_per_core_s[ph])
               for ph in COMPUTE_PHASES}
        out["sync"] = self.overhead_s["sync"] + self.sync_s_per_gb_per_actor * work["sync"] / 1e9 * workers.rollout
        return out

    def to_dict(self) -> dict:
        return asdict(self)


def _fit_line(x: list[float], y: list[float]) -> tuple[float, float]:
    """y = a + b x by least squares with a, b >= 0; with one distinct x, a = 0 and b through the mean."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(set(np.round(x, 9))) > 1:
        b, a = np.polyfit(x, y, 1)
        if a >= 0 and b > 0:
            return float(a), float(b)
        if b > 0:  # a negative intercept: no overhead, the slope through the origin
            return 0.0, float((x @ y) / (x @ x))
    return 0.0, float(y.mean() / x.mean())


def fit_calibration(cells: list[tuple[Workload, Workers, dict[str, float]]], cores: int) -> Calibration:
    """Per phase seconds = overhead + work / (cores used x rate), fitted to measured cells (workload, workers,
    seconds per phase)."""
    overhead, rate = {}, {}
    for ph in COMPUTE_PHASES:
        x = [phase_work(w)[ph] / cores_used(k, ph, cores) for w, k, _ in cells]
        a, b = _fit_line(x, [s[ph] for _, _, s in cells])
        overhead[ph], rate[ph] = a, 1.0 / b
    x = [phase_work(w)["sync"] / 1e9 * k.rollout for w, k, _ in cells]
    overhead["sync"], per_gb = _fit_line(x, [s["sync"] for _, _, s in cells])
    return Calibration(cores, overhead, rate, per_gb)


def leave_one_out(cells: list[tuple[Workload, Workers, dict[str, float]]], cores: int) -> list[dict[str, float]]:
    """Each cell's phases predicted by a calibration fitted to the other cells: a check the fit cannot pass by
    memorising the cell. With one cell there is nothing to leave out: the cell predicts itself."""
    if len(cells) == 1:
        return [fit_calibration(cells, cores).predict(*cells[0][:2])]
    return [fit_calibration(cells[:i] + cells[i + 1:], cores).predict(w, k) for i, (w, k, _) in enumerate(cells)]


# ---------------------------------------------------------------------------------------------- a GPU cluster
@dataclass(frozen=True)
class GPU:
    name: str
    peak_flops: float  # dense bf16
    hbm_bytes_s: float
    memory_gib: float


GPUS = {
    "h100": GPU("H100 SXM 80 GB", 989e12, 3.35e12, 80),
    "a100": GPU("A100 SXM 80 GB", 312e12, 2.0e12, 80),
    "h200": GPU("H200 SXM 141 GB", 989e12, 4.8e12, 141),
}


@dataclass(frozen=True)
class GpuCluster:
    gpu: GPU
    rollout_gpus: int
    reward_gpus: int
    learner_gpus: int
    rollout_tp: int = 1  # GPUs per vLLM engine
    learner_nodes: int = 1  # 1: the learner's collectives stay on NVLink
    zero_stage: int = 2
    intra_node_bytes_s: float = 450e9  # NVLink 4, per GPU and direction
    inter_node_bytes_s: float = 50e9  # 400 Gb/s InfiniBand per GPU
    mfu_forward: float = 0.5  # prefill, scoring, experience
    mfu_train: float = 0.4  # forward + backward
    bytes_per_param: int = 2  # bf16 weights on the GPU and in weight sync

    @property
    def gpus(self) -> int:
        return self.rollout_gpus + self.reward_gpus + self.learner_gpus


def predict_gpu(w: Workload, c: GpuCluster) -> dict[str, float]:
    """Seconds per phase on the cluster; assumptions in GpuCluster's fields and the module docstring. KV-cache reads,
    kernel launch and Python overheads are left out: a lower bound that the slowest phase dominates."""
    g, p, r, b = c.gpu, w.policy_params, w.rm_params, c.bytes_per_param
    tokens = w.sequences * (w.prompt_tokens + w.response_tokens)
    engines = max(1, c.rollout_gpus // c.rollout_tp)
    per_engine = math.ceil(w.sequences / engines)
    prefill = 2 * p * per_engine * w.prompt_tokens / (c.rollout_tp * g.peak_flops * c.mfu_forward)
    decode_step = max(p * b / (c.rollout_tp * g.hbm_bytes_s),  # every step reads the weights once
                      2 * p * per_engine / (c.rollout_tp * g.peak_flops * c.mfu_forward))
    rollout = prefill + w.response_tokens * decode_step
    score = 2 * r * tokens / (c.reward_gpus * g.peak_flops * c.mfu_forward)
    n = c.learner_gpus
    bw = c.intra_node_bytes_s if c.learner_nodes == 1 else c.inter_node_bytes_s
    ring = 2 * (n - 1) / n if n > 1 else 0.0  # bytes each rank moves per byte all-reduced (ring)
    gather = (n - 1) / n if n > 1 else 0.0
    zero3_gathers = 1 if c.zero_stage == 3 else 0  # ZeRO-3: parameters gathered for every forward
    experience = tokens * (4 * p + 2 * r) / (n * g.peak_flops * c.mfu_forward) \
        + zero3_gathers * (2 * p + r) * b * gather / bw
    steps = w.ppo_epochs * math.ceil(w.sequences / (w.micro_batch * n))
    # per optimizer step: gradients reduced (ring all-reduce, or reduce-scatter + all-gather under ZeRO 1-3, the same
    # bytes), plus ZeRO-3's forward and backward parameter gathers
    comm_step = (p + r) * b * (ring + 2 * zero3_gathers * gather) / bw
    learn = w.ppo_epochs * tokens * (6 * p + 6 * r) / (n * g.peak_flops * c.mfu_train) + steps * comm_step
    sync = p * b / c.inter_node_bytes_s  # learner rank 0 to the engines, across nodes in general
    return {"rollout": rollout, "score": score, "experience": experience, "learn": learn, "sync": sync}


def bound(seconds: dict[str, float]) -> str:
    """The phase that takes longest."""
    return max(PHASES, key=lambda ph: seconds.get(ph, 0.0))


def learner_state_gib(w: Workload, c: GpuCluster) -> float:
    """Per-GPU model states of the learner (activations left out): policy and critic trained with mixed-precision AdamW
    (16 bytes per parameter: bf16 weights and gradients, fp32 master weights and two moments), the bf16 reference;
    ZeRO-2 shards gradients and optimizer states, ZeRO-3 the weights too."""
    n, p, r = c.learner_gpus, w.policy_params, w.rm_params if w.critic else 0.0
    if c.zero_stage == 3:
        total = (16 * (p + r) + 2 * p) / n
    else:
        total = 2 * (p + r) + 2 * p + 14 * (p + r) / n
    return total / 2**30
