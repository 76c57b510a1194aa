"""PPO clipped surrogate policy loss (with optional dual clip) and clipped value loss."""

import torch

from .masked import masked_mean
from .registry import POLICY_LOSSES


def aggregate(loss: torch.Tensor, mask: torch.Tensor, mode: str = "token_mean") -> torch.Tensor:
    """token_mean weighs every token alike; seq_mean_token_mean weighs every sequence alike."""
    if mode == "token_mean":
        return masked_mean(loss, mask)
    if mode == "seq_mean_token_mean":
        has_tokens = (mask.sum(-1) > 0).to(loss.dtype)
        return (masked_mean(loss, mask, dim=-1) * has_tokens).sum() / has_tokens.sum().clamp(min=1.0)
    raise _unknown_aggregation(mode)


def row_loss_weights(mask: torch.Tensor, mode: str = "token_mean") -> torch.Tensor:
    """Weights w [B] with sum_b w[b] * aggregate(loss[b:b+1], mask[b:b+1], mode) == aggregate(loss, mask, mode): a
    batch's loss from its rows taken one at a time (padding-free updates accumulate their gradients so)."""
    tokens = mask.sum(-1).to(torch.float64)
    if mode == "token_mean":
        return (tokens / tokens.sum().clamp(min=1.0)).float()
    if mode == "seq_mean_token_mean":
        has_tokens = (tokens > 0).to(torch.float64)
        return (has_tokens / has_tokens.sum().clamp(min=1.0)).float()
    raise _unknown_aggregation(mode)


def _unknown_aggregation(mode: str) -> ValueError:
    return ValueError(f"unknown loss aggregation {mode!r}; choose 'token_mean' or 'seq_mean_token_mean'")


@POLICY_LOSSES.register("ppo_clip")
def ppo_policy_loss(
    logprobs: torch.Tensor,
    old_logprobs: torch.Tensor,
    advantages: torch.Tensor,
    mask: torch.Tensor,
    clip_low: float = 0.2,
    clip_high: float | None = None,
    dual_clip: float | None = None,
    agg: str = "token_mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Schulman et al. 2017, Eq. 7, as a loss to minimise.

    ratio = pi/pi_old; loss_t = max(-A*ratio, -A*clip(ratio, 1-clip_low, 1+clip_high)).
    dual_clip=c (> 1, Ye et al. 2020) also bounds the loss of negative-advantage tokens by c*|A|,
    so a huge ratio on a bad token cannot dominate the batch.
    """
    clip_high = clip_low if clip_high is None else clip_high
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_low, 1.0 + clip_high)
    loss = torch.maximum(unclipped, clipped)
    stats = {"clip_frac": masked_mean((clipped > unclipped).float(), mask)}
    if dual_clip is not None:
        if dual_clip <= 1.0:
            raise ValueError(f"dual_clip must be > 1, got {dual_clip}")
        bounded = torch.minimum(loss, -advantages * dual_clip)
        dual_active = (advantages < 0) & (bounded < loss)
        loss = torch.where(advantages < 0, bounded, loss)
        stats["dual_clip_frac"] = masked_mean(dual_active.float(), mask)
    # k3 estimate of KL(pi_old || pi), the usual "approx_kl" diagnostic.
    stats["approx_kl"] = masked_mean(torch.expm1(log_ratio) - log_ratio, mask).detach()
    return aggregate(loss, mask, agg), {k: v.detach() for k, v in stats.items()}


def clipped_value_loss(
    values: torch.Tensor,
    old_values: torch.Tensor,
    returns: torch.Tensor,
    mask: torch.Tensor,
    clip: float | None = 0.2,
    agg: str = "token_mean",
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """0.5 * max((V-R)^2, (V_clipped-R)^2), V_clipped = V_old + clip(V - V_old, -clip, clip).

    clip=None gives the plain 0.5*(V-R)^2.
    """
    unclipped = (values - returns) ** 2
    if clip is None:
        loss, frac = unclipped, torch.zeros((), device=values.device)
    else:
        v_clipped = old_values + torch.clamp(values - old_values, -clip, clip)
        clipped = (v_clipped - returns) ** 2
        loss = torch.maximum(unclipped, clipped)
        frac = masked_mean((clipped > unclipped).float(), mask)
    return 0.5 * aggregate(loss, mask, agg), {"vf_clip_frac": frac.detach()}
