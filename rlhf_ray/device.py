"""The one place that knows the hardware: torch device, distributed backend, and which precision computes fast.

Precision follows the hardware: `auto` runs forwards under bf16 autocast only where bf16 is native (a CPU with
avx512_bf16 or amx_bf16, a CUDA GPU that supports bf16) and in fp32 elsewhere. Without native instructions bf16 is
emulated: a bf16 matmul on an AVX2-only CPU was measured 60x slower than fp32. Every process resolves it for the
node it runs on, so an actor on a different kind of node decides for its own hardware.
"""

import logging
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

log = logging.getLogger("rlhf_ray.device")

NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # x86 flags with bf16 dot-product / tile instructions
SIMD_FLAGS = ("amx_tile", "avx512f", "avx2", "avx")  # what a reason names when bf16 is missing
# model.mixed_precision says auto | bf16 | none; a weight dtype (rollout.dtype) auto | bfloat16 | float32.
ALIASES = {"auto": "auto", "bf16": "bf16", "bfloat16": "bf16", "none": "none", "fp32": "none", "float32": "none"}
FLAGS_ENV = "RLHF_RAY_CPU_FLAGS"  # replaces the CPU's flags, e.g. "avx2" forces the fp32 path on any CPU


def accelerator() -> str:
    """'cuda' when a GPU is visible (unless RLHF_RAY_DEVICE=cpu forces the CPU), else 'cpu'."""
    forced = os.environ.get("RLHF_RAY_DEVICE")
    if forced in ("cpu", "cuda"):
        return forced
    return "cuda" if torch.cuda.is_available() else "cpu"


def torch_device() -> torch.device:
    return torch.device(accelerator())


def dist_backend() -> str:
    """NCCL between GPUs, gloo on CPU: the same collective code runs on both."""
    return "nccl" if accelerator() == "cuda" else "gloo"


@lru_cache(maxsize=1)
def _proc_cpu_flags() -> frozenset[str] | None:
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("flags"):
            return frozenset(line.partition(":")[2].split())
    return None


def cpu_flags() -> frozenset[str] | None:
    """This CPU's feature flags from /proc/cpuinfo, or those in $RLHF_RAY_CPU_FLAGS; None where unknown."""
    forced = os.environ.get(FLAGS_ENV)
    if forced is not None:
        return frozenset(forced.replace(",", " ").split())
    return _proc_cpu_flags()


@dataclass(frozen=True)
class Precision:
    """What a requested precision resolved to here: mode 'bf16' (autocast) or 'none' (fp32), and why."""

    mode: str
    reason: str
    emulated: bool = False  # bf16 asked for explicitly where the hardware only emulates it: slow

    @property
    def engine_dtype(self) -> str:
        """The same choice as a weight dtype name (vLLM, HF from_pretrained)."""
        return "bfloat16" if self.mode == "bf16" else "float32"


def engine_logprobs_match(learner: Precision, engine: Precision) -> tuple[bool, str]:
    """Whether the rollout engine's log-probs of its samples equal the learner's (so can stand in for a forward): only
    when both compute in fp32. A bf16 learner reads fp32 master weights rounded to bf16 at every forward; once they
    leave bf16's grid its log-probs part from an fp32 engine's (measured 0.28 nats/token, 42 % of tokens outside a
    0.2 clip range, after the quickstart's 12 iterations; 0.02 at its start)."""
    if learner.mode == "none" and engine.engine_dtype == "float32":
        return True, "learner and engine both compute in fp32"
    learner_side = "per GPU" if learner.mode == PER_GPU else "in fp32" if learner.mode == "none" else "in bf16"
    return False, f"the learner computes {learner_side} and the engine holds {engine.engine_dtype}"


def native_bf16(device: str = "cpu", flags: frozenset[str] | set[str] | None = None,
                cuda_bf16: bool | None = None) -> tuple[bool, str]:
    """Whether this hardware computes bf16 natively, and the evidence in words."""
    if device == "cuda":
        if cuda_bf16 is None:  # compute capability >= 8.0; older GPUs (V100, T4) only emulate bf16
            cuda_bf16 = torch.cuda.is_available() and torch.cuda.is_bf16_supported(including_emulation=False)
        name = torch.cuda.get_device_name() if torch.cuda.is_available() else "CUDA device"
        return cuda_bf16, f"GPU {name} {'computes bf16 natively' if cuda_bf16 else 'has no native bf16'}"
    if flags is None:
        return False, "this CPU's flags are unknown (no /proc/cpuinfo flags line), so native bf16 is not assumed"
    native = [f for f in NATIVE_BF16_FLAGS if f in flags]
    if native:
        return True, f"this CPU computes bf16 natively (flags: {', '.join(native)})"
    simd = [f for f in SIMD_FLAGS if f in flags]
    return False, f"this CPU has no native bf16 (flags: {', '.join(simd[:1]) or 'no AVX'})"


_DETECT = object()  # resolve_precision's default: read this process's flags


def resolve_precision(requested: str, device: str | None = None, flags=_DETECT,
                      cuda_bf16: bool | None = None, knob: str = "model.mixed_precision") -> Precision:
    """'auto' -> bf16 where native, fp32 elsewhere; bf16 and fp32 as asked (bf16 marked emulated where not native).

    requested: auto | bf16 | none, or a dtype name (bfloat16 | float32). device, flags and cuda_bf16 default to this
    process's hardware (flags: $RLHF_RAY_CPU_FLAGS, else /proc/cpuinfo; None means unknown)."""
    if requested not in ALIASES:
        raise ValueError(f"{knob}={requested!r}: expected one of auto, bf16, none (or bfloat16, float32)")
    asked = f"{knob}={requested}"
    if ALIASES[requested] == "none":
        return Precision("none", f"{asked} -> fp32")
    device = device or accelerator()
    ok, why = native_bf16(device, cpu_flags() if flags is _DETECT else flags, cuda_bf16)
    if ALIASES[requested] == "auto":
        return Precision("bf16" if ok else "none", f"{asked} -> {'bf16' if ok else 'fp32'}: {why}")
    if ok:
        return Precision("bf16", f"{asked} -> bf16: {why}")
    return Precision("bf16", f"{asked} -> bf16, although {why}: bf16 is emulated here and runs several times slower "
                             f"than fp32; set {knob}=auto", emulated=True)


PER_GPU = "per-gpu"  # the driver's Precision.mode on a GPU machine: each actor decides for its own GPU


def announce_precision(requested: str, knob: str = "model.mixed_precision") -> Precision:
    """resolve_precision on the driver, logged with its reason (a warning when bf16 is emulated): once per run, by
    its command. With a GPU the driver does not probe it (a CUDA context would take memory its actors need): it says
    that each actor decides for its GPU, and report_node_precision lists what they picked."""
    if ALIASES.get(requested) in ("auto", "bf16") and accelerator() == "cuda":
        precision = Precision(PER_GPU, f"{knob}={requested}: decided by each actor for its own GPU")
        log.info("%s", precision.reason)
        return precision
    precision = resolve_precision(requested, knob=knob)
    (log.warning if precision.emulated else log.info)("%s", precision.reason)
    return precision


def autocast(mixed_precision: str):
    """bf16 autocast over float32 weights where mixed_precision resolves to bf16; fp32 ('none') is a no-op context."""
    if mixed_precision == "auto":
        mixed_precision = resolve_precision("auto").mode
    return torch.autocast(accelerator(), dtype=torch.bfloat16, enabled=mixed_precision == "bf16")


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
