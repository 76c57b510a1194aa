"""Critic-free advantage estimators: a baseline from the other samples of the same prompt (GRPO, RLOO) or from the
batch (REINFORCE++), so the learner trains no value model. Same signature as GAE; values and lam are unused.

Each sequence's return R_i is the sum of its token rewards (the RM score at the last token minus beta x KL on every
token, as GAE sees them), so the KL term keeps its meaning whichever estimator runs.
"""

import torch

from .gae import gae_advantages
from .registry import ADVANTAGE_ESTIMATORS


def sequence_returns(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """R_i = sum of row i's token rewards over its real tokens: [B, T] -> [B]."""
    return (rewards * mask).sum(-1)


def _group_ids(group: torch.Tensor | None, batch: int, estimator: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Dense group ids 0..G-1 and each row's group size; a group of one sample has no baseline."""
    if group is None:
        raise ValueError(f"advantage estimator {estimator!r} needs each row's prompt (group ids)")
    if group.shape != (batch,):
        raise ValueError(f"{estimator}: group ids have shape {tuple(group.shape)}, expected ({batch},)")
    _, dense = torch.unique(group, return_inverse=True)
    sizes = torch.bincount(dense)
    if (sizes < 2).any():
        raise ValueError(f"{estimator} needs at least 2 samples per prompt (rollout.n_samples >= 2); a group has "
                         f"{int(sizes.min())}")
    return dense, sizes


@ADVANTAGE_ESTIMATORS.register("grpo", uses_critic=False, whiten=False)
def grpo_advantages(rewards, values, mask, gamma=1.0, lam=1.0, group=None, eps: float = 1e-6):
    """GRPO (Shao et al. 2024, outcome supervision): A_i = (R_i - mean_g R) / (std_g R + eps) on every token of
    row i, std with Bessel's correction as in verl; a group whose samples all score alike gets 0."""
    mask = mask.to(rewards.dtype)
    ret = sequence_returns(rewards, mask)
    dense, sizes = _group_ids(group, len(ret), "grpo")
    n = sizes.to(ret.dtype)
    mean = torch.zeros_like(n).index_add_(0, dense, ret) / n
    var = torch.zeros_like(n).index_add_(0, dense, (ret - mean[dense]) ** 2) / (n - 1)
    adv = (ret - mean[dense]) / (var.sqrt()[dense] + eps)
    return adv[:, None] * mask, ret[:, None] * mask


@ADVANTAGE_ESTIMATORS.register("rloo", uses_critic=False, whiten=False)
def rloo_advantages(rewards, values, mask, gamma=1.0, lam=1.0, group=None):
    """RLOO (Ahmadian et al. 2024): A_i = R_i - mean of the other samples' R in the group, on every token of row i."""
    mask = mask.to(rewards.dtype)
    ret = sequence_returns(rewards, mask)
    dense, sizes = _group_ids(group, len(ret), "rloo")
    total = torch.zeros(len(sizes), dtype=ret.dtype).index_add_(0, dense, ret)
    baseline = (total[dense] - ret) / (sizes[dense].to(ret.dtype) - 1)
    return (ret - baseline)[:, None] * mask, ret[:, None] * mask


@ADVANTAGE_ESTIMATORS.register("reinforce_pp", uses_critic=False, whiten=True)
def reinforce_pp_advantages(rewards, values, mask, gamma=1.0, lam=1.0, group=None):
    """REINFORCE++ (Hu 2025): the discounted reward-to-go of each token, G_t = sum_{k>=t} gamma^(k-t) r_k over real
    tokens, as the advantage; its batch whitening (the method's global baseline) is the estimator's default."""
    # GAE with V = 0 and lambda = 1 is exactly this reward-to-go, padding skipped the same way.
    togo, _ = gae_advantages(rewards, torch.zeros_like(rewards), mask, gamma, 1.0)
    return togo, togo
