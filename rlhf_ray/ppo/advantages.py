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
    group: torch.Tensor | None = None,
) -> Targets:
    """The MOSS order: score -> running-std scale (or norm) -> clip -> + (-beta * KL per token) -> advantage
    estimator (GAE, or a critic-free one, which ignores values and groups rows by `group`, their prompt) -> whiten."""
    mask = action_mask.to(values.dtype)
    shaped_scores = normalize_scores(scores.to(values.dtype), moments, cfg.reward_norm, cfg.reward_clip)
    rewards, kl = shape_token_rewards(shaped_scores, logprobs, ref_logprobs, mask, kl_coef, cfg.kl_estimator)
    estimator = cfg.advantage_estimator
    advantages, returns = ADVANTAGE_ESTIMATORS.get(estimator)(rewards, values * mask, mask, cfg.gamma, cfg.lam,
                                                              group=group)
    if whitens(cfg):
        advantages = masked_whiten(advantages, mask)
    return Targets(rewards, kl, advantages, returns, shaped_scores)


def uses_critic(cfg: PPOConfig) -> bool:
    """Whether the estimator needs a value model (GAE); the critic-free ones let the learner skip it entirely."""
    return ADVANTAGE_ESTIMATORS.trait(cfg.advantage_estimator, "uses_critic")


def whitens(cfg: PPOConfig) -> bool:
    """ppo.whiten_advantages, or where it is None the estimator's own default."""
    if cfg.whiten_advantages is None:
        return ADVANTAGE_ESTIMATORS.trait(cfg.advantage_estimator, "whiten")
    return cfg.whiten_advantages


def mean_sequence_kl(kl: torch.Tensor, action_mask: torch.Tensor) -> float:
    """KL summed over each response, averaged over the batch (what the adaptive controller tracks)."""
    return float((kl * action_mask).sum(-1).mean()) if kl.numel() else 0.0


__all__ = ["Targets", "compute_targets", "masked_mean", "mean_sequence_kl", "uses_critic", "whitens"]
