"""One PPO iteration's metrics row, from what the iteration produced (a pure function: no actors, no clocks)."""

import torch

from ..algorithms import masked_mean


def iteration_metrics(scores: torch.Tensor, response_lengths: list[int], finish_reasons: list[str], kl: float,
                      kl_coef: float, returns: torch.Tensor, action_mask: torch.Tensor, learner_stats: list[dict],
                      seconds: dict[str, float], learn_tokens: float, buffer_rows: int) -> dict[str, float]:
    """scores [B] of every rollout; kl the mean sequence KL; kl_coef after the controller's update; returns and
    action_mask [B, T] of the rollout batch; learner_stats one dict per learner rank; seconds per phase; learn_tokens
    the real tokens the learner trained on (the buffer after any filter, buffer_rows rows)."""
    lengths = torch.tensor(response_lengths, dtype=torch.float)
    return {
        "reward/mean": scores.mean().item(), "reward/std": scores.std().item() if len(scores) > 1 else 0.0,
        "kl/mean": kl, "kl/coef": kl_coef, "response/length": lengths.mean().item(),
        "response/stop_frac": sum(f == "stop" for f in finish_reasons) / len(finish_reasons),
        "return/mean": masked_mean(returns, action_mask).item(),
        "buffer/rows": float(buffer_rows), "buffer/dropped": float(len(scores) - buffer_rows),
        **{f"ppo/{k}": sum(s[k] for s in learner_stats) / len(learner_stats) for k in learner_stats[0]},
        **{f"time/{k}_s": v for k, v in seconds.items()},
        "perf/rollout_tokens_per_s": float(lengths.sum()) / seconds["rollout"],
        "perf/learn_tokens_per_s": learn_tokens / seconds["learn"],
    }
