"""The numbers a researcher reads about an RM: held-out accuracy, loss and reward gap; on the confident subset;
per data source."""

import torch

from ..algorithms import bradley_terry_loss, preference_accuracy


def pair_metrics(chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    """Accuracy (a tie counts as wrong), Bradley-Terry loss, mean reward gap and the number of pairs."""
    return {"accuracy": preference_accuracy(chosen, rejected).item(),
            "loss": bradley_terry_loss(chosen, rejected).item(),
            "reward_gap": (chosen - rejected).mean().item(),
            "pairs": float(len(chosen))}


def _block(prefix: str, chosen: torch.Tensor, rejected: torch.Tensor) -> dict[str, float]:
    return {f"{prefix}/{k}": v for k, v in pair_metrics(chosen, rejected).items()}


def rm_eval_metrics(chosen: torch.Tensor, rejected: torch.Tensor, sources: list[str] | None = None,
                    strength_mean: list[float | None] | None = None) -> dict[str, float]:
    """eval/* over all pairs; eval/confident/* over pairs whose ensemble strength agrees with the label
    (strength mean > 0; pairs without strength are left out and counted); eval/<source>/* per source when
    there are several."""
    if len(chosen) == 0:
        return {}
    out = _block("eval", chosen, rejected) | {"eval/reward_mean": torch.cat([chosen, rejected]).mean().item()}
    if strength_mean is not None:
        keep = torch.tensor([m is not None and m > 0 for m in strength_mean])
        out["eval/confident/unannotated"] = float(sum(m is None for m in strength_mean))
        if keep.any():
            out |= _block("eval/confident", chosen[keep], rejected[keep])
    if sources is not None and len(set(sources)) > 1:
        for source, metrics in sorted(metrics_per_source(chosen, rejected, sources).items()):
            out |= {f"eval/{source}/{k}": v for k, v in metrics.items()}
    return out


def metrics_per_source(chosen: torch.Tensor, rejected: torch.Tensor, sources: list[str]) -> dict[str, dict[str, float]]:
    """pair_metrics of each source's pairs, the sources in the order they first appear."""
    out = {}
    for source in dict.fromkeys(sources):
        keep = torch.tensor([s == source for s in sources])
        out[source] = pair_metrics(chosen[keep], rejected[keep])
    return out
