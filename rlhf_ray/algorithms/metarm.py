"""MetaRM (ALGORITHMS.md §2): keep the reward model discriminative on the policy's shifted distribution.

One step: a gradient-ASCENT step on the difference loss J over k policy samples per prompt (theta -> theta'), the
Bradley-Terry loss L evaluated at theta', and that gradient applied to the original theta (first-order, MAML-like).
The functions here are plain torch on one process; the DeepSpeed learner runs the same step on a ZeRO group.
"""

from collections.abc import Callable, Sequence

import torch


def difference_loss(rewards: torch.Tensor) -> torch.Tensor:
    """J = mean over prompts of 2/k^2 * sum_{i<j} sigma(|r_i - r_j|)   (MRM Eq. 2; P2 Eq. 11).

    rewards [m, k]: the RM's rewards of k responses to each of m prompts. The normaliser is 2/k^2, not 1/C(k,2),
    and sigma(|.|) >= 0.5: a prompt whose k responses all tie gives (k-1)/(2k), not 0.5.
    """
    if rewards.dim() != 2 or rewards.shape[1] < 2:
        raise ValueError(f"rewards must be [prompts, k >= 2], got {tuple(rewards.shape)}")
    k = rewards.shape[1]
    gaps = (rewards[:, :, None] - rewards[:, None, :]).abs()  # [m, k, k]
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=rewards.device), diagonal=1)
    per_prompt = torch.sigmoid(gaps[:, upper]).sum(dim=-1) * (2.0 / k**2)
    return per_prompt.mean()  # CHOICE (§2.1): mean over the meta mini-batch


class MetaAscent:
    """The meta step's own Adam (ALGORITHMS.md §6.7, restored-Adam variant): Delta = theta' - theta from grad J.

    A separate torch Adam over shadow tensors that start at zero each step: after one step on -grad J
    (Adam minimises), the shadow holds exactly the Adam-preconditioned ascent Delta, and Adam's moments persist
    across steps without touching the main optimizer or the model.
    """

    def __init__(self, shapes: Sequence[torch.Size], lr: float, betas=(0.9, 0.999), eps: float = 1e-8,
                 device=None, dtype=torch.float32):
        self.shadow = [torch.zeros(s, device=device, dtype=dtype, requires_grad=True) for s in shapes]
        self.optimizer = torch.optim.Adam(self.shadow, lr=lr, betas=betas, eps=eps)

    @torch.no_grad()
    def delta(self, grads_j: Sequence[torch.Tensor], consume: bool = False) -> list[torch.Tensor]:
        """Delta for each parameter from the gradients of J (to be added to theta: ascent).

        The returned tensors are the ascent's own buffers, valid until the next call, and consume=True negates
        grads_j in place instead of copying them: for a whole model each copy is another model's worth of memory."""
        for s, g in zip(self.shadow, grads_j, strict=True):
            s.zero_()
            g = g.to(s.dtype)
            s.grad = g.neg_() if consume else -g
        self.optimizer.step()
        for s in self.shadow:
            s.grad = None
        return [s.detach() for s in self.shadow]

    def state_dict(self) -> dict:
        return self.optimizer.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.optimizer.load_state_dict(state)


def metarm_step(params: Sequence[torch.nn.Parameter], pair_loss: Callable[[], torch.Tensor],
                meta_objective: Callable[[], torch.Tensor] | None, optimizer: torch.optim.Optimizer,
                ascent: MetaAscent | None, variant: str = "restored") -> dict[str, float]:
    """One MetaRM update of params on one process (the reference the DeepSpeed learner is tested against).

    pair_loss(): L on the step's preference pairs at the current params; meta_objective(): J on the meta batch.
    meta_objective None is the vanilla BT step (the control). variant:
      restored     theta' = theta + Delta; g = grad L(theta'); theta <- theta; optimizer steps theta with g.
      alternating  no restore: the optimizer steps theta' with g.
    """
    if variant not in ("restored", "alternating"):
        raise ValueError(f"unknown MetaRM variant {variant!r}; choose restored or alternating")
    stats: dict[str, float] = {}
    delta, theta = None, None
    if meta_objective is not None:
        j = meta_objective()
        grads = torch.autograd.grad(j, list(params))
        delta = ascent.delta(grads, consume=True)  # fresh tensors of autograd.grad, used once
        stats["metarm/J"] = j.item()
        stats["metarm/delta_norm"] = float(torch.linalg.vector_norm(torch.stack([d.norm() for d in delta])))
        with torch.no_grad():
            theta = [p.detach().clone() for p in params]  # the restore copies back: exact, not theta' - Delta
            for p, d in zip(params, delta, strict=True):
                p.add_(d)  # theta'
    optimizer.zero_grad(set_to_none=True)
    loss = pair_loss()
    loss.backward()  # the gradient at theta'
    if theta is not None and variant == "restored":
        with torch.no_grad():
            for p, t in zip(params, theta, strict=True):
                p.copy_(t)
    optimizer.step()
    stats["train/loss"] = loss.item()
    return stats
