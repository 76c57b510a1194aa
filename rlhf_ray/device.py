"""The one place that knows CPU from GPU: torch device, distributed backend, default dtype."""

import os

import torch


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


def autocast(mixed_precision: str):
    """bf16 autocast over float32 weights, on whichever device we run; 'none' is a no-op context."""
    return torch.autocast(accelerator(), dtype=torch.bfloat16, enabled=mixed_precision == "bf16")


def torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
