"""Head-to-head comparison of two policies by a judge's scores on the same prompts, with bootstrap intervals.

ALGORITHMS.md §6.8: no GPT-4 here, so the judge is a (gold) reward model; the result is reported with the number
of prompts and a confidence interval from resampling the prompts.
"""

import numpy as np


def compare_scores(a: list[float], b: list[float], tie_margin: float = 0.0, n_boot: int = 2000, confidence: float = 0.95,
                   seed: int = 0) -> dict:
    """Win/tie/loss of A against B, prompt by prompt (score_a[i] vs score_b[i]), the mean score gap A - B, and
    percentile bootstrap intervals over prompts for the gap, the win rate and the win+tie/2 rate.

    A prompt is a tie when |a - b| <= tie_margin (CHOICE: 0, only equal scores, e.g. identical responses)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"need two equally long, non-empty score lists, got {a.shape} and {b.shape}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError(f"non-finite judge scores at prompts {np.flatnonzero(~(np.isfinite(a) & np.isfinite(b))).tolist()}")
    gap = a - b
    win, tie = gap > tie_margin, np.abs(gap) <= tie_margin
    n = len(a)
    idx = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))  # each row: one resample of the prompts
    lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2

    def interval(values: np.ndarray) -> list[float]:
        return [float(x) for x in np.percentile(values[idx].mean(axis=1), [lo, hi])]

    score = win + 0.5 * tie
    return {
        "prompts": n, "wins": int(win.sum()), "ties": int(tie.sum()), "losses": int(n - win.sum() - tie.sum()),
        "win_rate": float(win.mean()), "tie_rate": float(tie.mean()), "loss_rate": float(1 - win.mean() - tie.mean()),
        "win_rate_ci": interval(win.astype(np.float64)),
        "score": float(score.mean()), "score_ci": interval(score),  # win + tie/2: 0.5 means no difference
        "mean_gap": float(gap.mean()), "mean_gap_ci": interval(gap),
        "confidence": confidence, "bootstrap": n_boot, "tie_margin": tie_margin,
    }
