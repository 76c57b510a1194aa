"""Preference strength from an RM ensemble and the denoising methods built on it (Secrets of RLHF II, §2).

ALGORITHMS.md §1.1-§1.2. The loss itself is `bradley_terry_loss`: these functions only build its inputs
(which pairs to flip, the per-pair label smoothing alpha_i and the per-pair margin m_i).
"""

import math

import torch

# Defaults of ALGORITHMS.md §1.2 (CHOICEs there; configs should mirror them).
FLIP_FRACTION = 0.2  # flip the bottom 20 % by mean strength (main-text setting; 0.1 is the ablation)
SMOOTHING_ALPHA = 0.1  # no alpha is given in the paper; sweep {0.1, 0.2, 0.3}
MARGIN_SCALE = 1.0  # lambda_m: margin = lambda_m * mu_i


def preference_strength(
    member_chosen: torch.Tensor, member_rejected: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Ensemble mean and population std of the reward difference per pair (P2 Eq. 4).

    d_{i,m} = r_m(x_i, y_c) - r_m(x_i, y_r)
    mu_i    = 1/M sum_m d_{i,m}
    sigma_i = sqrt(1/M sum_m (d_{i,m} - mu_i)^2)      (population form, divide by M)

    member_chosen, member_rejected: [M, N] rewards of M ensemble members on N pairs. Returns two [N] tensors.
    """
    if member_chosen.shape != member_rejected.shape or member_chosen.dim() != 2:
        raise ValueError(
            f"expected two [M, N] reward tensors, got {tuple(member_chosen.shape)} and {tuple(member_rejected.shape)}"
        )
    diff = member_chosen - member_rejected
    # The doc fixes the population std (divide by M), not the unbiased sample std.
    return diff.mean(dim=0), diff.std(dim=0, unbiased=False)


def _stable_ascending_order(strength_mean: torch.Tensor) -> torch.Tensor:
    # A stable sort keeps equal strengths in index order, so ties are broken deterministically by index.
    return torch.sort(strength_mean.flatten(), stable=True).indices


def flip_bottom(strength_mean: torch.Tensor, q: float = FLIP_FRACTION) -> torch.Tensor:
    """Bool mask [N] of the floor(q * N) pairs with the lowest mean strength (the "noise data" to flip, §1.2.1).

    Rounding: floor (never flips more than the fraction q); ties in mu are broken by index, lower index first.
    """
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"flip fraction q must lie in [0, 1], got {q}")
    n = strength_mean.numel()
    # The small epsilon keeps e.g. q=0.7, N=90 at 63 although 0.7*90 = 62.99999999999999 in floating point.
    n_flip = min(n, math.floor(q * n + 1e-9))
    mask = torch.zeros(n, dtype=torch.bool, device=strength_mean.device)
    mask[_stable_ascending_order(strength_mean)[:n_flip]] = True
    return mask


def apply_flip(
    chosen: torch.Tensor, rejected: torch.Tensor, flip_mask: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Swap y_c <-> y_r where flip_mask is True. chosen, rejected: [N, ...] (rewards, or equal-shape per-pair data)."""
    mask = flip_mask.to(torch.bool).reshape(flip_mask.shape[0], *([1] * (chosen.dim() - 1)))
    return torch.where(mask, rejected, chosen), torch.where(mask, chosen, rejected)


def flipped_strength(strength_mean: torch.Tensor, flip_mask: torch.Tensor) -> torch.Tensor:
    """mu_i after flipping: -mu_i for flipped pairs (their strength becomes positive, §1.2.1), mu_i otherwise."""
    return torch.where(flip_mask.to(torch.bool), -strength_mean, strength_mean)


def smoothing_weights(strength_mean: torch.Tensor, alpha: float = SMOOTHING_ALPHA) -> torch.Tensor:
    """Per-pair label smoothing alpha_i = alpha if mu_i < 0 else 0 (§1.2.4, P2 Eq. 5), for bradley_terry_loss.

    Pass the strength the loss will see: after a flip, `flipped_strength(...)`.
    """
    # Only pairs the ensemble calls incorrect (mu < 0) are smoothed; mu == 0 counts as not incorrect.
    return torch.where(
        strength_mean < 0, torch.full_like(strength_mean, alpha), torch.zeros_like(strength_mean)
    )


def adaptive_margin(strength_mean: torch.Tensor, scale: float = MARGIN_SCALE) -> torch.Tensor:
    """Per-pair margin m_i = lambda_m * mu_i, raw and signed, no clipping (§1.2.2, P2 Eq. 6 with the parenthesis fixed).

    The loss is -log sigma(r_c - r_r - m_i) (inside the sigmoid; the printed log sigma(Delta) - mu has no gradient).
    Pass `flipped_strength(...)` after a flip. The margin is a constant target: it carries no gradient.
    """
    return scale * strength_mean.detach()


def strength_groups(
    strength_mean: torch.Tensor, n_groups: int | None = None, group_size: int | None = None
) -> list[torch.Tensor]:
    """Pair indices sorted by mu ascending, cut into groups (§1.1 "Grouping").

    n_groups: that many near-equal groups (20 for the std analysis, 10 for per-subset retraining); when N is
    not divisible, the first N mod n_groups groups hold one extra pair (torch.tensor_split).
    group_size: consecutive groups of that many pairs, the last one possibly shorter (500 for the GPT-4 check).
    Give exactly one of the two. Ties are ordered by index.
    """
    if (n_groups is None) == (group_size is None):
        raise ValueError("give exactly one of n_groups and group_size")
    order = _stable_ascending_order(strength_mean)
    if n_groups is not None:
        if n_groups < 1:
            raise ValueError(f"n_groups must be >= 1, got {n_groups}")
        return list(torch.tensor_split(order, n_groups))
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    return list(torch.split(order, group_size))
