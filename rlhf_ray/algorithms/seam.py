"""SEAM: how seamlessly a policy (PM) and a reward model (RM) agree on a prompt, from [gold, K worse] answers.

ALGORITHMS.md §3.2 and §6.1: with per-answer PM log-likelihoods l (length-penalised: the per-token mean) and RM
rewards r, h_j = 1[r(worse_j) > r(gold)] marks the RM misjudging worse answer j. A discrepancy D(x) in [0, 1] is
computed by one of three estimators, and seam_score = 1 - D: higher = more seamless.

    mass (default)  D = sum_j w_j h_j, w = softmax over [gold, worse_1..K] of l, restricted to the worse answers:
                    the PM's relative probability mass on worse answers that the RM prefers to gold
    count           D = #{j: h_j} / K (the released code's num_hacking / K)
    disagree        D = share of j where sign(l_gold - l_j) != sign(r_gold - r_j): PM and RM judge differently

Tensors are batched over prompts: gold_* are [N], worse_* are [N, K]; `valid` [N, K] masks worse answers a prompt
lacks (answers are padded to the largest K). Pure torch, no models.
"""

import math

import torch

from .registry import Registry

SEAM_ESTIMATORS = Registry("SEAM estimator")


def answer_loglik(logprob_sum: torch.Tensor, length: torch.Tensor, length_penalty: str = "mean") -> torch.Tensor:
    """The PM's log-likelihood of an answer: the per-token mean (the length penalty, §6.2) or the raw sum."""
    if length_penalty == "mean":
        return logprob_sum / length.clamp(min=1)
    if length_penalty == "sum":
        return logprob_sum
    raise ValueError(f"unknown length_penalty {length_penalty!r}; choose 'mean' or 'sum'")


def misjudged(gold_reward: torch.Tensor, worse_rewards: torch.Tensor) -> torch.Tensor:
    """h_j: the RM scores worse answer j strictly above gold (a tie is no misjudgement). [N, K] bool."""
    return worse_rewards > gold_reward[:, None]


@SEAM_ESTIMATORS.register("mass")
def mass_discrepancy(gold_ll, worse_ll, gold_reward, worse_rewards, valid) -> torch.Tensor:
    # log-sum-exp over [gold, valid worse] in one softmax: absent answers get -inf, so they carry no mass.
    logits = torch.cat([gold_ll[:, None], worse_ll.masked_fill(~valid, -math.inf)], dim=1)
    w = torch.softmax(logits.double(), dim=1)[:, 1:]
    return (w * (misjudged(gold_reward, worse_rewards) & valid)).sum(1)


@SEAM_ESTIMATORS.register("count")
def count_discrepancy(gold_ll, worse_ll, gold_reward, worse_rewards, valid) -> torch.Tensor:
    h = misjudged(gold_reward, worse_rewards) & valid
    return h.sum(1).double() / valid.sum(1).clamp(min=1)


@SEAM_ESTIMATORS.register("disagree")
def disagree_discrepancy(gold_ll, worse_ll, gold_reward, worse_rewards, valid) -> torch.Tensor:
    pm = torch.sign(gold_ll[:, None] - worse_ll)
    rm = torch.sign(gold_reward[:, None] - worse_rewards)
    return ((pm != rm) & valid).sum(1).double() / valid.sum(1).clamp(min=1)


def seam_score(gold_logprob_sum: torch.Tensor, gold_len: torch.Tensor, worse_logprob_sum: torch.Tensor,
               worse_len: torch.Tensor, gold_reward: torch.Tensor, worse_rewards: torch.Tensor,
               valid: torch.Tensor | None = None, estimator: str = "mass", length_penalty: str = "mean") -> torch.Tensor:
    """seam_score in [0, 1] per prompt, float64 (higher = PM and RM agree with the gold ordering). A worse answer
    with a NaN log-prob or reward counts as absent; a prompt whose gold answer has one, or that has no worse answer,
    gets NaN: it cannot be scored, so a filter lets it pass and counts it."""
    gold_ll = answer_loglik(gold_logprob_sum.double(), gold_len, length_penalty)
    worse_ll = answer_loglik(worse_logprob_sum.double(), worse_len, length_penalty)
    usable = ~(worse_ll.isnan() | worse_rewards.isnan())
    valid = usable if valid is None else valid & usable
    d = SEAM_ESTIMATORS.get(estimator)(gold_ll, worse_ll.nan_to_num(), gold_reward.double(),
                                       worse_rewards.double().nan_to_num(), valid)
    bad = (valid.sum(1) == 0) | gold_ll.isnan() | gold_reward.isnan()
    return (1.0 - d).masked_fill(bad, math.nan)


def lowest_fraction(scores: torch.Tensor, fraction: float) -> list[int]:
    """Positions of the floor(fraction * N) lowest scores, N counting the scored (non-NaN) entries only; ties are
    broken by position so that the choice is deterministic. NaN entries are never chosen."""
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"the dropped fraction must be in [0, 1), got {fraction}")
    scored = (~scores.isnan()).nonzero().flatten().tolist()
    n = math.floor(fraction * len(scored) + 1e-9)  # 0.2 * 10 is 2.0000000000000004 in floats: floor must say 2
    return sorted(sorted(scored, key=lambda i: (float(scores[i]), i))[:n])


def random_fraction(scores: torch.Tensor, fraction: float, generator: torch.Generator) -> list[int]:
    """The control of lowest_fraction: as many scored positions, drawn at random."""
    scored = (~scores.isnan()).nonzero().flatten()
    n = len(lowest_fraction(scores, fraction))
    return sorted(scored[torch.randperm(len(scored), generator=generator)[:n]].tolist())
