"""Per-round diagnostics of online RLHF (pure functions): how an RM separates fresh policy samples, and whether it
orders them as the gold RM does.

rewards are [M, k]: k responses sampled from the current policy for each of M prompts. MetaRM's signal (MRM §3):
on a shifted policy a vanilla RM's within-prompt reward differences |r_i - r_j| shrink, MetaRM keeps them apart.
"""

import torch

QUANTILES = (0.1, 0.5, 0.9)


def within_prompt_gaps(rewards: torch.Tensor) -> torch.Tensor:
    """|r_i - r_j| for every pair i < j of responses to one prompt, flattened over prompts: [M * k(k-1)/2]."""
    m, k = rewards.shape
    i, j = torch.triu_indices(k, k, offset=1)
    return (rewards[:, i] - rewards[:, j]).abs().reshape(-1)


def order_agreement(proxy: torch.Tensor, gold: torch.Tensor) -> tuple[float, int]:
    """Share of within-prompt response pairs that the proxy orders as the gold RM does, over the pairs gold does not
    tie (a proxy tie counts as disagreement); and the number of such pairs."""
    k = proxy.shape[1]
    i, j = torch.triu_indices(k, k, offset=1)
    p, g = torch.sign(proxy[:, i] - proxy[:, j]), torch.sign(gold[:, i] - gold[:, j])
    decided = g != 0
    n = int(decided.sum())
    return (float((p[decided] == g[decided]).float().mean()) if n else float("nan")), n


def round_diagnostics(proxy: torch.Tensor, gold: torch.Tensor | None = None, prefix: str = "round/") -> dict[str, float]:
    """The scalar diagnostics of one round's meta set: mean and quantiles of the proxy's within-prompt gaps, mean
    proxy reward, and with a gold RM its mean reward and the proxy-gold order agreement."""
    gaps = within_prompt_gaps(proxy)
    out = {f"{prefix}gap_mean": float(gaps.mean()), f"{prefix}proxy_reward": float(proxy.mean())}
    for q, v in zip(QUANTILES, torch.quantile(gaps, torch.tensor(QUANTILES)).tolist()):
        out[f"{prefix}gap_q{int(q * 100):02d}"] = v
    if gold is not None:
        agreement, n = order_agreement(proxy, gold)
        out |= {f"{prefix}gold_reward": float(gold.mean()), f"{prefix}proxy_gold_agreement": agreement,
                f"{prefix}gold_decided_pairs": float(n)}
    return out
