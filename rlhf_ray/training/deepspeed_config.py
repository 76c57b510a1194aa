"""The DeepSpeed config dict for a learner engine (ZeRO stage 0-3, bf16 or fp32)."""


def deepspeed_config(zero_stage: int, micro_batch: int, world_size: int, grad_clip: float | None = 1.0,
                     bf16: bool = False, grad_accum: int = 1) -> dict:
    """grad_accum > 1: engine.step() steps the optimizer (and scheduler) only every grad_accum micro-batches."""
    if zero_stage not in (0, 1, 2, 3):
        raise ValueError(f"ZeRO stage must be 0-3, got {zero_stage}")
    return {
        "train_micro_batch_size_per_gpu": micro_batch,
        "gradient_accumulation_steps": grad_accum,  # PPO: 1, its loop decides when to step
        "train_batch_size": micro_batch * world_size * grad_accum,
        "gradient_clipping": grad_clip or 0.0,
        "zero_optimization": {"stage": zero_stage},
        "bf16": {"enabled": bf16},
        "steps_per_print": 10**9,  # our own metrics report progress
        "wall_clock_breakdown": False,
    }
