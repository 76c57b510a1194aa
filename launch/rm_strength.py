"""`rlhf-ray rm strength`: preference strength from an ensemble of M reward models (P2 §2.2-2.3).

1. M RMs, member m shuffling the train pairs with seed run.seed + m (the paper varies only the order),
   trained side by side, each a one-rank RM learner group (at most strength.max_concurrent at once).
2. Every member scores every train and eval pair: strength mean and population std per pair, written as
   annotated JSONL (the input of rm.strength_file).
3. Analysis: train pairs sorted by mean into strength.std_groups groups (per-group std), and into
   strength.retrain_groups groups, a fresh RM trained on each group alone and evaluated on the held-out split;
   a plot of std against mean.
"""

import json
import logging
import time
from pathlib import Path

import ray
import torch

from actors.rm_learner import make_rm_learner_group
from rlhf_ray.algorithms import preference_accuracy, preference_strength, strength_groups
from rlhf_ray.config import Config
from rlhf_ray.device import announce_precision, resolve_precision
from rlhf_ray.progress import Progress
from rlhf_ray.run_dir import seed_everything
from rlhf_ray.training.rm_data import RMData, prepare_rm_data, total_steps
from rlhf_ray.training.strength_report import (
    annotated_rows,
    format_groups,
    group_stats,
    plot_strength,
    write_jsonl,
)

from .cluster import init_ray, report_node_precision
from .rm_jobs import RMJob, score_pairs, train_side_by_side

log = logging.getLogger("rlhf_ray.strength")


def train_and_score(cfg: Config, data: RMData, pairs_ref, specs: list[tuple[str, list[int], int]], score_index: list[int],
                    show_progress: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Train one RM per (name, train indices, shuffle seed), in waves of strength.max_concurrent; each then scores
    the score_index pairs. Returns (chosen, rejected) rewards per RM, in spec order."""
    wave = cfg.strength.max_concurrent or len(specs)
    out = []
    for start in range(0, len(specs), wave):
        jobs = []
        try:
            for name, indices, seed in specs[start : start + wave]:
                steps = total_steps(len(indices), cfg.rm, name)
                # Same init seed for every RM (identical head), as the paper varies only the data order.
                group = make_rm_learner_group(cfg.rm, 1, cfg.learner.resources, data.init_dir, data.from_lm, steps, pairs_ref,
                                              cfg.learner.zero_stage, cfg.run.seed, cfg.model.mixed_precision,
                                              name=name, timeout_s=cfg.cluster.placement_timeout_s)
                jobs.append(RMJob(name, group, indices, cfg.rm, seed, steps))
                report_node_precision(resolve_precision(cfg.model.mixed_precision), group)
            names = f"{jobs[0].name}..{jobs[-1].name}" if len(jobs) > 1 else jobs[0].name
            total = sum(j.steps for j in jobs)
            with Progress(total, f"train {names}", logger=log, bar=show_progress) as progress:
                train_side_by_side(jobs, lambda job, row: progress.update(1, rm=job.name, loss=row["train/loss"]))
            out += [score_pairs(j.group, score_index, cfg.rm.micro_batch_size * 2, f"{j.name} scores", show_progress)
                    for j in jobs]
        finally:
            for job in jobs:
                job.group.kill()
    return out


def run_strength(cfg: Config, run_dir: Path, show_progress: bool = True) -> dict:
    seed_everything(cfg.run.seed)
    announce_precision(cfg.model.mixed_precision)  # each member decides again for its own node
    t_start = time.perf_counter()
    s = cfg.strength
    # Members follow the baseline recipe (P2 §2.2): plain BT, no denoising, smoothing or contrastive term.
    cfg = cfg.model_copy(update={"rm": cfg.rm.model_copy(update={
        "flip": False, "soft_label": False, "adaptive_margin": False, "label_smoothing": 0.0,
        "contrastive": cfg.rm.contrastive.model_copy(update={"method": "none"})})})
    data = prepare_rm_data(cfg, denoise=False)
    (run_dir / "data_report.json").write_text(json.dumps(data.reports, indent=1))
    n_train = len(data.train_rows)
    steps = total_steps(n_train, cfg.rm, "strength members")
    if steps < n_train // cfg.rm.batch_size:
        log.warning("rm.max_steps=%d covers %d of %d train pairs: members see different subsets, not only a different "
                    "order (P2 trains every member on all pairs)", steps, steps * cfg.rm.batch_size, n_train)
    if s.retrain_groups:  # fail now rather than after the ensemble has trained
        total_steps(n_train // s.retrain_groups, cfg.rm, f"each of strength.retrain_groups={s.retrain_groups} groups")
    init_ray(cfg.cluster, run_dir)
    pairs_ref = ray.put(data.pairs)
    all_index = data.train_index + data.eval_index

    # 1-2. the ensemble, and every member's rewards on every pair.
    specs = [(f"member-{m}", data.train_index, cfg.run.seed + m) for m in range(s.members)]
    scores = train_and_score(cfg, data, pairs_ref, specs, all_index, show_progress)
    chosen = torch.stack([c for c, _ in scores])  # [M, N_train + N_eval]
    rejected = torch.stack([r for _, r in scores])
    mu, sigma = preference_strength(chosen, rejected)
    out_path = Path(s.output) if s.output else run_dir / "strength.jsonl"
    write_jsonl(out_path, annotated_rows(data.train_rows, "train", chosen[:, :n_train], rejected[:, :n_train])
                + annotated_rows(data.eval_rows, "eval", chosen[:, n_train:], rejected[:, n_train:]))
    member_acc = [preference_accuracy(c[n_train:], r[n_train:]).item() for c, r in scores] if data.eval_rows else []

    # 3. the analysis over train pairs.
    mu_train, sigma_train = mu[:n_train], sigma[:n_train]
    std_table = group_stats(mu_train, sigma_train, min(s.std_groups, n_train))
    retrain_table, retrain_acc = [], None
    if s.retrain_groups and data.eval_rows:
        groups = strength_groups(mu_train, n_groups=s.retrain_groups)
        specs = [(f"group-{g + 1}", idx.tolist(), cfg.run.seed) for g, idx in enumerate(groups)]
        group_scores = train_and_score(cfg, data, pairs_ref, specs, data.eval_index, show_progress)
        retrain_acc = [preference_accuracy(c, r).item() for c, r in group_scores]
        retrain_table = group_stats(mu_train, sigma_train, s.retrain_groups)
    plot_path = run_dir / "strength_plot.png"
    plot_strength(mu_train, sigma_train, plot_path, std_table, retrain_acc)

    print(f"preference strength of {n_train} train pairs from {s.members} RMs:")
    print(format_groups(std_table))
    if retrain_acc:
        print(f"held-out accuracy of an RM trained on each of {s.retrain_groups} groups alone ({len(data.eval_rows)} pairs):")
        print(format_groups(retrain_table, retrain_acc))
    summary = {
        "members": s.members, "train_pairs": n_train, "eval_pairs": len(data.eval_rows),
        "member_eval_accuracy": member_acc,
        "ensemble_eval_accuracy": (mu[n_train:] > 0).float().mean().item() if data.eval_rows else None,
        "share_negative_train": (mu_train < 0).float().mean().item(),
        "std_groups": std_table, "retrain_groups": [g | {"eval_accuracy": a} for g, a in zip(retrain_table, retrain_acc or [])],
        "annotated": str(out_path), "plot": str(plot_path), "seconds": round(time.perf_counter() - t_start, 1),
    }
    (run_dir / "strength_summary.json").write_text(json.dumps(summary, indent=1))
    log.info("annotated pairs in %s, plot in %s (%.0f s)", out_path, plot_path, summary["seconds"])
    return summary
