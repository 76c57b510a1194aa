"""Prepare RM training pairs from ensemble strength (P2 §2.4-2.5): flip, per-pair soft labels, adaptive margin.

The math is in rlhf_ray.algorithms.preference_strength; this joins it to the data (pairs matched by pair_id).
"""

import torch

from ..algorithms import adaptive_margin, flip_bottom, flipped_strength, smoothing_weights
from ..config import RMConfig
from ..data import DataError
from .strength_report import pair_id


def row_entries(rows, strength: dict[str, dict]) -> list[dict | None]:
    """Each row's entry of the annotated file (None where the file has no such pair)."""
    return [strength.get(pair_id(row["prompt"], row["chosen"], row["rejected"])) for row in rows]


def row_strength(rows, strength: dict[str, dict]) -> list[float | None]:
    """Strength mean of each row (None where the annotated file has no such pair)."""
    return [None if e is None else float(e["strength_mean"]) for e in row_entries(rows, strength)]


def apply_strength(pairs: list[dict], rows, rm: RMConfig, strength: dict[str, dict] | None = None) -> tuple[list[dict], dict]:
    """Pairs (from encode_pairs, `index` into rows) with `margin` and `alpha` set and the chosen flips applied.

    Without a denoising switch every pair gets alpha = rm.label_smoothing and margin 0, and strength is unused.
    A train pair with no strength is an error naming it (a partial annotation would silently skew the bottom q).
    """
    denoise = rm.flip or rm.soft_label or rm.adaptive_margin
    if not denoise:
        return [p | {"alpha": rm.label_smoothing, "margin": 0.0} for p in pairs], {}
    if strength is None:
        raise ValueError("rm.flip / rm.soft_label / rm.adaptive_margin need the strength annotations (rm.strength_file)")
    train_rows = [rows[p["index"]] for p in pairs]
    entries = row_entries(train_rows, strength)
    missing = [r for r, e in zip(train_rows, entries) if e is None]
    if missing:
        where = ", ".join(f"{r['file']}:{r['line']}" for r in missing[:3])
        raise DataError(f"{len(missing)} of {len(pairs)} train pairs have no entry in {rm.strength_file} (first: {where}); "
                        "run `rlhf-ray rm strength` on the same data settings")
    # A pair the ensemble held out (another data.eval_fraction or split_seed) has a strength no member trained on.
    held_out = [r for r, e in zip(train_rows, entries) if e.get("split", "train") != "train"]
    if held_out:
        raise DataError(f"{len(held_out)} train pairs were eval pairs when {rm.strength_file} was computed (first: "
                        f"{held_out[0]['file']}:{held_out[0]['line']}); use the data.eval_fraction and data.split_seed "
                        "of the `rm strength` run")
    means = [float(e["strength_mean"]) for e in entries]
    mu = torch.tensor(means, dtype=torch.float64)
    flip = flip_bottom(mu, rm.flip_fraction) if rm.flip else torch.zeros(len(pairs), dtype=torch.bool)
    mu = flipped_strength(mu, flip)  # a flipped pair's strength is -mu > 0
    soft = smoothing_weights(mu, rm.soft_label_alpha) if rm.soft_label else torch.zeros_like(mu)
    alpha = torch.where(soft > 0, soft, torch.full_like(mu, rm.label_smoothing))
    margin = adaptive_margin(mu, rm.margin_scale) if rm.adaptive_margin else torch.zeros_like(mu)
    out = []
    for p, f, a, m in zip(pairs, flip.tolist(), alpha.tolist(), margin.tolist()):
        q = p | {"alpha": a, "margin": m, "flipped": f}
        if f:
            q["chosen_ids"], q["rejected_ids"] = p["rejected_ids"], p["chosen_ids"]
        out.append(q)
    counts = {"flipped": int(flip.sum()), "soft_labelled": int((soft > 0).sum()),
              "margin_mean": float(margin.mean()) if len(out) else 0.0}
    return out, counts
