"""Contrastive terms for reward-model training: SimCSE and SwAV (Secrets of RLHF II, §3.1; ALGORITHMS.md §1.3).

L_total = L_rm + beta * L_cl. The two views are two stochastic forward passes with dropout 0.05; the features
are the final-layer hidden state at the last token (the reward head's input). L_rm is computed on both views.
"""

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

CONTRASTIVE_MODES = ("response", "difference")


@dataclass(frozen=True)
class ContrastiveConfig:
    """Hyperparameters of one contrastive RM variant; the presets below carry the ALGORITHMS.md §1.3 defaults."""

    method: str  # "simcse" | "swav"
    mode: str  # "response": f(x,y_c), f(x,y_r) as items; "difference": f_c - f_r and f_r - f_c
    beta: float  # weight of L_cl in L_total
    temperature: float  # tau
    n_prototypes: int = 0  # K (SwAV only)
    sinkhorn_epsilon: float = 0.05  # SwAV only
    sinkhorn_iters: int = 3  # SwAV only
    dropout: float = 0.05  # the augmentation: two forward passes at this dropout rate


CONTRASTIVE_PRESETS = {
    # beta 1 from the paper; tau 0.05 is the SimCSE default (CHOICE); mode "response" is CHOICE (§1.3 (a)).
    "simcse": ContrastiveConfig(method="simcse", mode="response", beta=1.0, temperature=0.05),
    # K and beta from the paper's table; tau 0.1, 3 iterations, eps 0.05 are the SwAV defaults (CHOICE).
    "swav": ContrastiveConfig(method="swav", mode="response", beta=0.1, temperature=0.1, n_prototypes=50),
    "swav_diff": ContrastiveConfig(method="swav", mode="difference", beta=0.5, temperature=0.1, n_prototypes=20),
}


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    # Similarities divided by tau ~ 0.05 overflow bf16 precision; compute in at least float32.
    return torch.promote_types(x.dtype, torch.float32)


def contrastive_inputs(h_chosen: torch.Tensor, h_rejected: torch.Tensor, mode: str = "response") -> torch.Tensor:
    """The items H of one view, [2B, D] from two [B, D] feature tensors (P2 §3.1.1).

    response:   H = {f(x,y_c), f(x,y_r)}                        -> cat([h_c, h_r])
    difference: H = {f(x,y_c) - f(x,y_r), f(x,y_r) - f(x,y_c)}  -> cat([h_c - h_r, h_r - h_c])
    Build H the same way for both views so that item i of view 1 and item i of view 2 are the positive pair.
    """
    if h_chosen.shape != h_rejected.shape:
        raise ValueError(f"chosen and rejected features differ in shape: {tuple(h_chosen.shape)} vs {tuple(h_rejected.shape)}")
    if mode == "response":
        return torch.cat([h_chosen, h_rejected], dim=0)
    if mode == "difference":
        diff = h_chosen - h_rejected
        return torch.cat([diff, -diff], dim=0)
    raise ValueError(f"unknown contrastive mode {mode!r}; choose one of {CONTRASTIVE_MODES}")


def simcse_loss(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.05) -> torch.Tensor:
    """InfoNCE over two dropout views (P2 Eq. 9), mean over the N' items:

    l_i = -log exp(cos(z1_i, z2_i)/tau) / sum_{j=1}^{N'} exp(cos(z1_i, z2_j)/tau)

    The denominator runs over the second view of every item, j = i included (one direction, as printed).
    """
    dtype = _compute_dtype(z1)
    z1 = F.normalize(z1.to(dtype), dim=-1)
    z2 = F.normalize(z2.to(dtype), dim=-1)
    logits = z1 @ z2.T / temperature
    # Row i's positive is column i: cross-entropy with target i is exactly -log of the softmax at the diagonal.
    targets = torch.arange(z1.shape[0], device=z1.device)
    return F.cross_entropy(logits, targets)


@torch.no_grad()
def sinkhorn(scores: torch.Tensor, epsilon: float = 0.05, n_iters: int = 3) -> torch.Tensor:
    """Sinkhorn-Knopp soft codes for B samples over K prototypes (SwAV, Caron et al. 2020).

    Q = exp(scores / eps)^T, normalised to total mass 1, then n_iters times:
      rows (prototypes) <- each sums to 1/K;  columns (samples) <- each sums to 1/B.
    Returned as codes [B, K] = B * Q^T: every sample's code sums to 1 exactly (the last step normalises samples),
    every prototype gets mass sum_b q_bk = B/K (the equal partition), exactly only at convergence.
    Computed without gradient: the codes are targets.
    """
    dtype = _compute_dtype(scores)
    batch, n_protos = scores.shape
    # The same iterations in the log domain: exp(scores / eps) underflows to 0 (then 0/0) for large scores.
    log_q = scores.detach().to(dtype) / epsilon
    log_q = log_q - torch.logsumexp(log_q.flatten(), dim=0)
    for _ in range(n_iters):
        log_q = log_q - torch.logsumexp(log_q, dim=0, keepdim=True) - math.log(n_protos)
        log_q = log_q - torch.logsumexp(log_q, dim=1, keepdim=True) - math.log(batch)
    # Scale by B so each sample's code is a probability distribution over prototypes.
    return torch.exp(log_q + math.log(batch))


def _swapped_term(codes: torch.Tensor, scores: torch.Tensor, temperature: float) -> torch.Tensor:
    # l(h_t, q_s) = -sum_k q_s^(k) log p_t^(k), averaged over the batch.
    return -(codes * F.log_softmax(scores / temperature, dim=-1)).sum(dim=-1).mean()


def swav_loss(
    z1: torch.Tensor,
    z2: torch.Tensor,
    prototypes: torch.Tensor,
    temperature: float = 0.1,
    epsilon: float = 0.05,
    n_iters: int = 3,
) -> torch.Tensor:
    """Swapped prediction (P2 Eq. 7-8): l(h_1, h_2) = l(h_1, q_2) + l(h_2, q_1), each term a batch mean, with

    l(h_t, q_s) = -sum_k q_s^(k) log p_t^(k),   p_t^(k) = softmax_k(h_t^T c_k / tau),   q_s = sinkhorn(h_s^T C).

    z1, z2: [B, D] two views; prototypes C: [K, D] (a trainable parameter, e.g. nn.Linear(D, K, bias=False).weight).
    Features and prototypes are L2-normalised here, as in SwAV. The two terms are summed as printed (SwAV's
    code averages them; the difference is a factor 2 absorbed by beta).
    """
    dtype = _compute_dtype(z1)
    c = F.normalize(prototypes.to(dtype), dim=-1)
    s1 = F.normalize(z1.to(dtype), dim=-1) @ c.T  # [B, K]
    s2 = F.normalize(z2.to(dtype), dim=-1) @ c.T
    q1 = sinkhorn(s1, epsilon, n_iters)
    q2 = sinkhorn(s2, epsilon, n_iters)
    # Each view predicts the other view's code.
    return _swapped_term(q2, s1, temperature) + _swapped_term(q1, s2, temperature)


def contrastive_loss(
    view1: torch.Tensor, view2: torch.Tensor, cfg: ContrastiveConfig, prototypes: torch.Tensor | None = None
) -> torch.Tensor:
    """L_cl for the two views' items (built with `contrastive_inputs(..., cfg.mode)`), by cfg.method."""
    if cfg.method == "simcse":
        return simcse_loss(view1, view2, cfg.temperature)
    if cfg.method == "swav":
        if prototypes is None:
            raise ValueError("SwAV needs a [K, D] prototypes tensor")
        if prototypes.shape[0] != cfg.n_prototypes:
            raise ValueError(f"expected {cfg.n_prototypes} prototypes, got {prototypes.shape[0]}")
        return swav_loss(view1, view2, prototypes, cfg.temperature, cfg.sinkhorn_epsilon, cfg.sinkhorn_iters)
    raise ValueError(f"unknown contrastive method {cfg.method!r}; choose 'simcse' or 'swav'")


def total_rm_loss(bt_loss: torch.Tensor, contrastive: torch.Tensor, beta: float) -> torch.Tensor:
    """L_total = L_rm + beta * L_cl (P2 §3.1); L_rm is the BT loss over both dropout views."""
    return bt_loss + beta * contrastive
