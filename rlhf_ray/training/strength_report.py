"""Ensemble scores -> strength-annotated pairs and the preference-strength analysis (Secrets of RLHF II, §2).

`rlhf-ray rm strength CONFIG` scores every pair with M reward models; this module turns those [M, N] scores
into one JSONL row per pair (mu_i, sigma_i and the raw member scores), reads that file back for the denoising
methods, and produces the paper's analysis: per-group statistics, the sigma-vs-mu plot and a console table.
"""

import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import torch

from rlhf_ray.algorithms.preference_strength import preference_strength, strength_groups
from rlhf_ray.data.pair_id import pair_id
from rlhf_ray.data.report import DataError

_LOADED_KEYS = ("strength_mean", "strength_std", "split")


def annotated_rows(
    rows: Sequence[dict], split: str, member_chosen: torch.Tensor, member_rejected: torch.Tensor
) -> list[dict]:
    """One output dict per input row, in order: ids, provenance, texts, mu_i, sigma_i and the M member scores.

    member_chosen, member_rejected: [M, N] rewards of the ensemble on the N rows.
    """
    mu, sigma = preference_strength(member_chosen, member_rejected)
    if len(rows) != mu.numel():
        raise ValueError(f"{len(rows)} rows but scores for {mu.numel()} pairs")
    # Per-pair lists of member scores: [N][M] Python floats, JSON-ready.
    chosen_scores = member_chosen.detach().cpu().double().T.tolist()
    rejected_scores = member_rejected.detach().cpu().double().T.tolist()
    mu_list, sigma_list = mu.detach().cpu().double().tolist(), sigma.detach().cpu().double().tolist()
    out = []
    for i, row in enumerate(rows):
        out.append({
            "pair_id": pair_id(row["prompt"], row["chosen"], row["rejected"]),
            "split": split,
            "source": row["source"],
            "file": row["file"],
            "line": int(row["line"]),
            "prompt": row["prompt"],
            "chosen": row["chosen"],
            "rejected": row["rejected"],
            "strength_mean": mu_list[i],
            "strength_std": sigma_list[i],
            "chosen_scores": chosen_scores[i],
            "rejected_scores": rejected_scores[i],
        })
    return out


def write_jsonl(path: str | Path, rows: Sequence[dict]) -> Path:
    """Write one JSON object per line into `path.tmp`, then rename it over `path` (a crash leaves no half file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(tmp, path)
    return path


def load_strength(path: str | Path) -> dict[str, dict]:
    """pair_id -> {"strength_mean", "strength_std", "split"} from a file written by `write_jsonl`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"preference-strength file {str(path)!r} not found; `rlhf-ray rm strength CONFIG` writes it"
        )
    out: dict[str, dict] = {}
    with open(path, encoding="utf-8") as f:
        for lineno, text in enumerate(f, start=1):
            if not text.strip():
                continue
            try:
                rec = json.loads(text)
                if not isinstance(rec, dict):
                    raise ValueError(f"expected a JSON object, got {type(rec).__name__}")
                missing = [k for k in ("pair_id", *_LOADED_KEYS) if k not in rec]
                if missing:
                    raise ValueError(f"missing key(s) {', '.join(missing)}")
                mean, std = float(rec["strength_mean"]), float(rec["strength_std"])
                if not math.isfinite(mean):
                    raise ValueError(f"strength_mean is {mean}")
            except (ValueError, TypeError) as e:
                # JSONDecodeError is a ValueError; every cause is reported as file:line.
                raise DataError(f"{path}:{lineno}: bad preference-strength row ({e})") from e
            out[str(rec["pair_id"])] = {"strength_mean": mean, "strength_std": std, "split": rec["split"]}
    return out


def group_stats(mu: torch.Tensor, sigma: torch.Tensor, n_groups: int) -> list[dict]:
    """Per-group summary of the pairs sorted by mu ascending and cut into n_groups (the paper's §2 grouping)."""
    mu, sigma = mu.detach().cpu().double().flatten(), sigma.detach().cpu().double().flatten()
    if mu.numel() < n_groups:
        # An empty group has no mean; ask for fewer groups instead of reporting NaNs.
        raise ValueError(f"cannot cut {mu.numel()} pairs into {n_groups} non-empty groups")
    stats = []
    for g, idx in enumerate(strength_groups(mu, n_groups=n_groups), start=1):
        m, s = mu[idx], sigma[idx]
        stats.append({
            "group": g,
            "pairs": int(idx.numel()),
            "mu_min": float(m.min()),
            "mu_max": float(m.max()),
            "mu_mean": float(m.mean()),
            "sigma_mean": float(s.mean()),
            "share_negative": float((m < 0).double().mean()),
        })
    return stats


def plot_strength(
    mu: torch.Tensor,
    sigma: torch.Tensor,
    path: str | Path,
    groups: list[dict] | None = None,
    group_accuracy: list[float] | None = None,
) -> None:
    """PNG: sigma vs mu per pair (+ group means); beside it, when given, held-out accuracy of per-group RMs."""
    import matplotlib

    # Agg renders to files without a display (cluster nodes, CI).
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n_panels = 2 if group_accuracy is not None else 1
    fig, axes = plt.subplots(1, n_panels, figsize=(6 * n_panels, 4.5), squeeze=False)
    try:
        ax = axes[0][0]
        ax.scatter(mu.detach().cpu().flatten().tolist(), sigma.detach().cpu().flatten().tolist(),
                   s=4, alpha=0.3, label="pairs")
        if groups:
            ax.plot([g["mu_mean"] for g in groups], [g["sigma_mean"] for g in groups],
                    "o-", color="C3", label="group means")
            ax.legend()
        ax.set_xlabel("strength mean (mu)")
        ax.set_ylabel("strength std (sigma)")
        ax.set_title("std vs mean of preference strength")
        if group_accuracy is not None:
            ax = axes[0][1]
            ax.bar(range(1, len(group_accuracy) + 1), group_accuracy)
            ax.axhline(0.5, linestyle="--", color="gray")
            ax.set_xlabel("group (by mu, ascending)")
            ax.set_ylabel("held-out accuracy")
            ax.set_title("RM trained on one group alone")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)


def format_groups(groups: list[dict], accuracy: list[float] | None = None) -> str:
    """Plain-text table of `group_stats` output (and per-group accuracy when given), one line per group."""
    if accuracy is not None and len(accuracy) != len(groups):
        raise ValueError(f"{len(accuracy)} accuracies for {len(groups)} groups")
    header = f"{'group':>5} {'pairs':>7} {'mu range':>21} {'mu mean':>9} {'sigma mean':>10} {'share<0':>8}"
    lines = [header + (f" {'accuracy':>8}" if accuracy is not None else "")]
    for i, g in enumerate(groups):
        mu_range = f"[{g['mu_min']:.3f}, {g['mu_max']:.3f}]"
        line = (f"{g['group']:>5} {g['pairs']:>7} {mu_range:>21} {g['mu_mean']:>9.3f} "
                f"{g['sigma_mean']:>10.3f} {g['share_negative']:>8.2%}")
        lines.append(line + (f" {accuracy[i]:>8.3f}" if accuracy is not None else ""))
    return "\n".join(lines)
