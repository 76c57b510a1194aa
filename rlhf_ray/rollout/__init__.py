"""Rollout engines: vLLM (the real one) and HF transformers (a slow fallback), behind one interface."""

import logging
from pathlib import Path

from .types import RolloutEngine, Rollouts, SamplingParams, concat

__all__ = ["RolloutEngine", "Rollouts", "SamplingParams", "concat", "make_engine"]

logger = logging.getLogger("rlhf_ray.rollout")


def make_engine(kind: str, model_dir: str | Path, **kw) -> RolloutEngine:
    """kind='vllm' or 'hf'; engine classes are imported here so `import rlhf_ray.rollout` stays light."""
    if kind == "vllm":
        from .vllm_engine import VLLMEngine  # raises a clear ImportError naming 'hf' when vLLM is missing

        return VLLMEngine(model_dir, **kw)
    if kind == "hf":
        logger.warning("Using the HF transformers rollout engine: a slow fallback, not for real runs (use 'vllm').")
        from .hf_engine import HFEngine

        return HFEngine(model_dir, **kw)
    raise ValueError(f"unknown rollout engine {kind!r}: expected 'vllm' or 'hf'")
