"""Per-token rewards for PPO: -beta*KL on every response token, the RM score on the last one (MOSS ppo_trainer)."""

import torch

from .kl import kl_penalty


class RunningMoments:
    """Running mean and std of all values seen (Chan et al. parallel update); state is saved with checkpoints."""

    def __init__(self) -> None:
        self.count, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, x: torch.Tensor) -> None:
        x = x.detach().double().flatten()
        n = x.numel()
        if n == 0:
            return
        batch_mean = x.mean().item()
        batch_m2 = ((x - batch_mean) ** 2).sum().item()
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta**2 * self.count * n / total
        self.count = total

    @property
    def std(self) -> float:
        """Sample std (n-1) of everything seen; 1.0 until two values have been seen."""
        return (self.m2 / (self.count - 1)) ** 0.5 if self.count > 1 else 1.0

    def state_dict(self) -> dict:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


def normalize_scores(
    scores: torch.Tensor, moments: RunningMoments | None, mode: str = "none", clip: float | None = None
) -> torch.Tensor:
    """RM scores -> PPO rewards. mode: none | scale (divide by running std, keep the mean) | norm (subtract
    running mean, divide by running std). The moments are updated with this batch first. Then optional clip."""
    if not torch.isfinite(scores).all():
        bad = torch.nonzero(~torch.isfinite(scores)).flatten().tolist()
        raise ValueError(f"the reward is not finite for batch rows {bad}: {scores[bad].tolist()}")
    if mode != "none":
        if moments is None:
            raise ValueError(f"reward normalisation {mode!r} needs a RunningMoments")
        moments.update(scores)
        std = max(moments.std, 1e-8)
        if mode == "scale":
            scores = scores / std
        elif mode == "norm":
            scores = (scores - moments.mean) / std
        else:
            raise ValueError(f"unknown reward normalisation {mode!r}; choose none, scale or norm")
    if clip is not None:
        scores = scores.clamp(-clip, clip)
    return scores


def last_token_index(mask: torch.Tensor) -> torch.Tensor:
    """Index of the last 1 in each row of mask [B, T]; a row without any 1 is an error (an empty response)."""
    has_token = mask.sum(-1) > 0
    if not bool(has_token.all()):
        empty = torch.nonzero(~has_token).flatten().tolist()
        raise ValueError(f"empty responses (no response tokens) in batch rows {empty}")
    length = mask.shape[-1]
    return length - 1 - mask.flip(-1).to(torch.long).argmax(-1)


def shape_token_rewards(
    scores: torch.Tensor,
    logprobs: torch.Tensor,
    ref_logprobs: torch.Tensor,
    mask: torch.Tensor,
    kl_coef: float,
    kl_estimator: str = "k1",
) -> tuple[torch.Tensor, torch.Tensor]:
    """rewards[b, t] = -kl_coef * KL_t on response tokens, plus scores[b] at the last response token.

    Returns (rewards, kl), both [B, T] and zero on padding.
    """
    mask = mask.to(logprobs.dtype)
    kl = kl_penalty(logprobs, ref_logprobs, kl_estimator) * mask
    rewards = -kl_coef * kl
    last = last_token_index(mask)
    rewards[torch.arange(rewards.shape[0], device=rewards.device), last] += scores.to(rewards.dtype)
    return rewards, kl
