"""SEAM-guided RM augmentation (ALGORITHMS.md §3.3, §6.1): hard negatives from the prompts where policy and RM
disagree most, and the control that adds as many pairs at random."""

import math

import torch

from ..algorithms.seam import lowest_fraction


def seam_column(rows: list[dict]) -> torch.Tensor:
    """The seam field of `seam score` rows as float64, NaN where a prompt was not scored."""
    return torch.tensor([math.nan if r["seam"] is None else r["seam"] for r in rows], dtype=torch.float64)


def candidate_pairs(row: dict) -> list[tuple[str, bool]]:
    """(worse answer, misjudged) for one scored prompt: misjudged when the RM scored it strictly above gold."""
    gold = row.get("gold_reward")
    if gold is None:  # an unscorable gold answer: nothing is judged against it
        return []
    return [(answer, reward is not None and reward > gold)
            for answer, reward in zip(row["worse_answers"], row["worse_reward"], strict=True) if reward is not None]


def augment_pairs(rows: list[dict], fraction: float, select: str, seed: int = 0) -> tuple[list[dict], dict]:
    """Pairs (prompt, chosen = gold, rejected = worse answer) from `seam score` rows.

    seam: every misjudged worse answer of the lowest-SEAM floor(fraction * N) scored prompts.
    random: the same number of pairs, drawn uniformly (seeded) from all gold > worse pairs of all scored prompts,
    misjudged or not (standard augmentation). Returns the pairs and their counts."""
    scores = seam_column(rows)
    scored = (~scores.isnan()).nonzero().flatten().tolist()
    lowest = lowest_fraction(scores, fraction) if fraction < 1 else scored
    hard = [(i, answer, True) for i in lowest for answer, wrong in candidate_pairs(rows[i]) if wrong]
    if select == "seam":
        picked = hard
    elif select == "random":
        pool = [(i, answer, wrong) for i in scored for answer, wrong in candidate_pairs(rows[i])]
        order = torch.randperm(len(pool), generator=torch.Generator().manual_seed(seed))[: len(hard)]
        picked = [pool[j] for j in sorted(order.tolist())]
    else:
        raise ValueError(f"augment select must be seam or random, got {select!r}")
    pairs = [{"prompt": rows[i]["prompt"], "format": rows[i]["format"], "chosen": rows[i]["gold"], "rejected": answer,
              "seam": rows[i]["seam"], "misjudged": wrong} for i, answer, wrong in picked]
    counts = {"select": select, "fraction": fraction, "prompts": len(rows), "scored": len(scored),
              "lowest_prompts": len(lowest), "pairs": len(pairs), "pair_prompts": len({i for i, _, _ in picked}),
              "misjudged_pairs": sum(wrong for _, _, wrong in picked)}
    return pairs, counts
