"""Bradley-Terry reward-model loss with optional per-pair margin and label smoothing (Secrets of RLHF II, Eq. 2/5/6)."""

import torch
import torch.nn.functional as F


def bradley_terry_loss(
    chosen: torch.Tensor,
    rejected: torch.Tensor,
    margin: torch.Tensor | float | None = None,
    label_smoothing: torch.Tensor | float = 0.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """-(1-a) log sigma(r_c - r_r - m) - a log sigma(-(r_c - r_r - m)).

    margin m: per-pair (the ensemble strength mean, ALGORITHMS.md Eq. 6 with the parenthesis fixed) or scalar.
    label_smoothing a: per-pair (e.g. alpha only where strength < 0) or scalar; a=0 is the vanilla loss.
    """
    z = chosen - rejected
    if margin is not None:
        z = z - margin
    alpha = torch.as_tensor(label_smoothing, dtype=z.dtype, device=z.device)
    loss = -(1.0 - alpha) * F.logsigmoid(z) - alpha * F.logsigmoid(-z)
    if reduction == "mean":
        return loss.mean()
    if reduction == "none":
        return loss
    raise ValueError(f"unknown reduction {reduction!r}")


def preference_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Share of pairs with r_c > r_r (ties count as wrong, as sigma(0) > 0.5 is false in MOSS)."""
    return (chosen > rejected).float().mean()
