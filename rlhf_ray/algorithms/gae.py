"""Generalised advantage estimation (Schulman et al. 2016) over masked token sequences."""

import torch

from .registry import ADVANTAGE_ESTIMATORS


@ADVANTAGE_ESTIMATORS.register("gae", uses_critic=True, whiten=True)
def gae_advantages(
    rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95,
    group: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Advantages and returns, both [B, T], zero where mask is 0 (group: unused, the critic-free estimators' prompt ids).

    Padding may sit on either side (or inside) a row: a masked position is skipped, so the
    next *real* token's value and advantage carry across it, and V=0 after the last real token.
    """
    mask = mask.to(values.dtype)
    batch, length = rewards.shape
    advantages = torch.zeros_like(values)
    next_value = torch.zeros(batch, dtype=values.dtype, device=values.device)
    next_adv = torch.zeros_like(next_value)
    for t in reversed(range(length)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        adv_t = delta + gamma * lam * next_adv
        advantages[:, t] = adv_t * m
        # Only real tokens move the recursion; padding leaves the carried state untouched.
        next_adv = torch.where(m > 0, adv_t, next_adv)
        next_value = torch.where(m > 0, values[:, t], next_value)
    returns = (advantages + values) * mask
    return advantages, returns
