"""From scores and log-probs to PPO targets: normalised scores, KL-shaped token rewards, GAE, whitening."""

from dataclasses import dataclass

import torch

from ..algorithms import (
    ADVANTAGE_ESTIMATORS,
    RunningMoments,
    masked_mean,
    masked_whiten,
    normalize_scores,
    shape_token_rewards,
)
from ..config import PPOConfig


@dataclass
class Targets:
    rewards: torch.Tensor  # [B, T] per-token rewards
    kl: torch.Tensor  # [B, T] per-token KL estimate
    advantages: torch.Tensor  # [B, T]
    returns: torch.Tensor  # [B, T]
    scores: torch.Tensor  # [B] the normalised (and clipped) RM scores that entered the reward


def compute_targets(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    values: torch.Tensor,
    action_mask: torch.Tensor,
    cfg: PPOConfig,
    kl_coef: float,
    moments: RunningMoments | None,
) -> Targets:
    """The MOSS order: score -> running-std scale (or norm) -> clip -> + (-beta * KL per token) -> GAE -> whiten."""
    mask = action_mask.to(values.dtype)
    shaped_scores = normalize_scores(scores.to(values.dtype), moments, cfg.reward_norm, cfg.reward_clip)
    rewards, kl = shape_token_rewards(shaped_scores, logprobs, ref_logprobs, mask, kl_coef, cfg.kl_estimator)
    advantages, returns = ADVANTAGE_ESTIMATORS.get(cfg.advantage_estimator)(rewards, values * mask, mask, cfg.gamma,
                                                                            cfg.lam)
    if cfg.whiten_advantages:
        advantages = masked_whiten(advantages, mask)
    return Targets(rewards, kl, advantages, returns, shaped_scores)


def mean_sequence_kl(kl: torch.Tensor, action_mask: torch.Tensor) -> float:
    """KL summed over each response, averaged over the batch (what the adaptive controller tracks)."""
    return float((kl * action_mask).sum(-1).mean()) if kl.numel() else 0.0


__all__ = ["Targets", "compute_targets", "masked_mean", "mean_sequence_kl"]
