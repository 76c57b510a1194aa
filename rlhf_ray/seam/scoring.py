"""SEAM scores of prompts from two scorers: the policy's teacher-forced log-probs and the RM's rewards of every
(prompt, answer) pair over [gold, worse_1..K] (ALGORITHMS.md §3.1-3.2).

Answers are cut to `max_answer_tokens` (the paper: 128) and, for the policy, end with EOS, so a short answer's
log-likelihood includes stopping. The scorers are plain callables on flat pair lists, so the same code runs on a
RolloutActor and a RewardActor (online), on actor pools (offline), or on local models (tests).
"""

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..algorithms.seam import misjudged, seam_score

Pairs = list[tuple[list[int], list[int]]]
LogprobFn = Callable[[list[list[int]], list[list[int]]], list[list[float]]]  # (prompts, answers) -> per-token lps
RewardFn = Callable[[Pairs], list[float]]


@dataclass
class SeamResult:
    scores: torch.Tensor  # [N] seam_score, NaN where a prompt could not be scored
    misjudged: torch.Tensor  # [N, K] bool: the RM put worse answer j above gold
    valid: torch.Tensor  # [N, K] bool: worse answer j exists
    gold_reward: torch.Tensor  # [N]
    worse_rewards: torch.Tensor  # [N, K]
    gold_loglik: torch.Tensor  # [N] summed log-prob of the gold answer (with EOS)
    gold_len: torch.Tensor  # [N]
    nan_answers: int = 0  # answers whose log-prob or reward was NaN: left out of their prompt's score

    def misjudgement_rate(self) -> float:
        """The share of existing worse answers that the RM scores above gold."""
        n = int(self.valid.sum())
        return float((self.misjudged & self.valid).sum()) / n if n else float("nan")


def encode_answer(tokenizer, text: str, max_answer_tokens: int) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"][:max_answer_tokens]


@dataclass
class FlatAnswers:
    """Every scorable (prompt, answer) pair of a prompt set, flat, with where it belongs: slot 0 is the gold answer,
    slot j + 1 worse answer j. Answers of no tokens are left out (an absent gold makes its prompt unscorable)."""

    prompt_ids: list[list[int]]
    answer_ids: list[list[int]]
    where: list[tuple[int, int]]
    n: int  # prompts
    k: int  # the most worse answers of any prompt

    def policy_inputs(self, eos_id: int) -> tuple[list[list[int]], list[list[int]]]:
        """What the policy scores: each answer followed by EOS, so stopping is part of its likelihood."""
        return self.prompt_ids, [a + [eos_id] for a in self.answer_ids]

    def reward_pairs(self) -> Pairs:
        return list(zip(self.prompt_ids, self.answer_ids))


def flatten_answers(prompt_ids: list[list[int]], golds: list[str], worse: list[list[str]], tokenizer,
                    max_answer_tokens: int = 128) -> FlatAnswers:
    if not (len(prompt_ids) == len(golds) == len(worse)):
        raise ValueError(f"{len(prompt_ids)} prompts, {len(golds)} gold answers, {len(worse)} worse-answer lists")
    flat = FlatAnswers([], [], [], len(golds), max((len(w) for w in worse), default=0))
    for i, (p, g, ws) in enumerate(zip(prompt_ids, golds, worse)):
        for slot, text in enumerate([g, *ws]):
            answer = encode_answer(tokenizer, text, max_answer_tokens)
            if answer:
                flat.prompt_ids.append(p)
                flat.answer_ids.append(answer)
                flat.where.append((i, slot))
    return flat


def combine(flat: FlatAnswers, logprob_sums: list[float], lengths: list[int], rewards: list[float],
            estimator: str = "mass", length_penalty: str = "mean") -> SeamResult:
    """The scores from each flat pair's summed policy log-prob, its token count and its reward."""
    n, k = flat.n, flat.k
    loglik = torch.full((n, k + 1), float("nan"), dtype=torch.float64)
    length = torch.ones((n, k + 1), dtype=torch.float64)
    reward = torch.full((n, k + 1), float("nan"), dtype=torch.float64)
    present = torch.zeros((n, k + 1), dtype=torch.bool)
    for (i, slot), lp, m, r in zip(flat.where, logprob_sums, lengths, rewards, strict=True):
        loglik[i, slot], length[i, slot], reward[i, slot], present[i, slot] = lp, m, r, True
    nan = (loglik.isnan() | reward.isnan()) & present
    valid = present[:, 1:] & ~nan[:, 1:]
    scores = seam_score(loglik[:, 0], length[:, 0], loglik[:, 1:], length[:, 1:], reward[:, 0], reward[:, 1:],
                        valid, estimator, length_penalty)
    return SeamResult(scores, misjudged(reward[:, 0], reward[:, 1:]) & valid, valid, reward[:, 0], reward[:, 1:],
                      loglik[:, 0], length[:, 0], int(nan.sum()))


def score_prompts(prompt_ids: list[list[int]], golds: list[str], worse: list[list[str]], tokenizer,
                  policy_logprobs: LogprobFn, rewards: RewardFn, estimator: str = "mass",
                  length_penalty: str = "mean", max_answer_tokens: int = 128) -> SeamResult:
    """seam_score of each prompt with two scorer callables; worse[i] may hold fewer answers than others."""
    flat = flatten_answers(prompt_ids, golds, worse, tokenizer, max_answer_tokens)
    lps = policy_logprobs(*flat.policy_inputs(tokenizer.eos_token_id))
    rs = rewards(flat.reward_pairs())
    return combine(flat, [sum(lp) for lp in lps], [len(lp) for lp in lps], rs, estimator, length_penalty)
