"""`rlhf-ray rm train`: Bradley-Terry RM training on the learner group (DeepSpeed), with held-out evals,
HF checkpoints, metrics and progress like the PPO runs. Denoising and contrastive terms come from the rm section."""

import json
import logging
import math
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import ray

from actors.group import ActorGroup
from actors.rm_learner import make_rm_learner_group
from rlhf_ray.config import Config, ConfigError, RMConfig
from rlhf_ray.device import Precision, announce_precision
from rlhf_ray.metrics import MetricsLogger
from rlhf_ray.progress import Progress
from rlhf_ray.run_dir import seed_everything
from rlhf_ray.training.rm_data import RMData, prepare_rm_data, total_steps
from rlhf_ray.training.rm_eval import rm_eval_metrics

from .cluster import init_ray, report_node_precision
from .report import write_report
from .rm_jobs import RMJob, score_pairs, train_side_by_side

log = logging.getLogger("rlhf_ray.rm")


def reward_model_save_dir(cfg: Config, run_dir: Path) -> Path:
    """Where rm train writes the RM: rm.save_dir, else <run_dir>/reward_model."""
    return Path(cfg.rm.save_dir) if cfg.rm.save_dir else Path(run_dir) / "reward_model"


def run_rm_train(cfg: Config, run_dir: Path, show_progress: bool = True, precision: Precision | None = None,
                 then: Callable[[ActorGroup, RMData], dict] | None = None) -> dict:
    """`rm train`: an RM trained as configured on a group of learner.world_size ranks that lives for this call; owns
    Ray, the group and the files (data report, metrics, checkpoints, the HF RM, summary.json). Returns the summary.

    precision: the caller's resolved model.mixed_precision when it has logged it already (train runs an RM first).
    then(group, data): more work for the trained group before it is freed (gold build labels pairs); its dict joins
    the summary."""
    rm, learner = cfg.rm, cfg.learner
    check_learner_batch(cfg)
    seed_everything(cfg.run.seed)
    precision = precision or announce_precision(cfg.model.mixed_precision)  # each rank decides again for its own node
    data = prepare_rm_data(cfg)
    (run_dir / "data_report.json").write_text(json.dumps(data.reports, indent=1))
    steps = total_steps(len(data.train_rows), rm)
    init_ray(cfg.cluster, run_dir)
    group = make_rm_learner_group(rm, learner.world_size, learner.resources, data.init_dir, data.from_lm, steps,
                                  ray.put(data.pairs), learner.zero_stage, cfg.run.seed, cfg.model.mixed_precision,
                                  timeout_s=cfg.cluster.placement_timeout_s)
    metrics = MetricsLogger(run_dir, cfg=cfg)
    try:  # on any error too: free the group (and its GPUs)
        report_node_precision(precision, group)
        t_start = time.perf_counter()
        results = train_rm(group, data, rm, cfg.run.seed, steps, on_row=metrics.log, show_progress=show_progress,
                           log_every=cfg.run.log_every,
                           on_save=lambda step: save_checkpoint(group, run_dir, step, cfg.run.keep_checkpoints))
        save_dir = reward_model_save_dir(cfg, run_dir)
        group.run("save", str(save_dir))
        extra = then(group, data) if then else {}
    finally:
        metrics.close()
        group.kill()
    log.info("reward model saved to %s", save_dir)
    summary = {"steps": steps, "train_pairs": len(data.train_rows), "eval_pairs": len(data.eval_rows),
               "train_seconds": round(time.perf_counter() - t_start, 1), "denoise": data.denoise, **results,
               "reward_model": str(save_dir), **extra}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    write_report(run_dir)
    return summary


def check_learner_batch(cfg: Config, section: str = "rm") -> None:
    """A DeepSpeed learner group's batch rule (the rm or sft section): every rank runs the same micro-batches."""
    loop, world = getattr(cfg, section), cfg.learner.world_size
    if loop.batch_size % (loop.micro_batch_size * world):
        raise ConfigError(f"{section}.batch_size ({loop.batch_size}) must be a multiple of {section}.micro_batch_size x "
                          f"learner.world_size ({loop.micro_batch_size} x {world}): every rank runs the same micro-batches")


def train_rm(group: ActorGroup, data: RMData, rm: RMConfig, seed: int, steps: int, on_row=None, on_save=None,
             show_progress: bool = True, log_every: int = 1, meta: list[list[list[int]]] | None = None,
             meta_batch: int = 16, train_index: list[int] | None = None) -> dict:
    """Train the RM held by a live RM learner group for `steps` optimizer steps over data's train pairs (a seeded
    order), with held-out evals every rm.eval_every steps, at the end and (rm.eval_at_start) before the first step.
    Writes no files: on_row(step, row) gets the metric rows, on_save(step) is called every rm.save_every steps.
    meta (a group set up with metarm): MetaRM steps on meta_batch of these prompts each (see RMJob).
    train_index: the pairs to train on (default data.train_index; online rounds add labeled pairs).
    Returns the last eval's metrics."""
    job = RMJob("rm", group, data.train_index if train_index is None else train_index, rm, seed, steps, meta, meta_batch)

    def evaluate(step: int) -> dict:
        t0 = time.perf_counter()
        chosen, rejected = score_pairs(group, data.eval_index, rm.micro_batch_size * 2, f"rm eval at step {step}",
                                       show_progress)
        tokens = sum(len(data.pairs[i]["chosen_ids"]) + len(data.pairs[i]["rejected_ids"]) for i in data.eval_index)
        results = rm_eval_metrics(chosen, rejected, data.eval_sources, data.eval_strength)
        return results | {"eval/seconds": time.perf_counter() - t0, "eval/tokens": float(tokens)} if results else results

    results = {}
    if rm.eval_at_start:  # step 0: the untrained head, the baseline of the eval curve
        results = evaluate(0)
        if on_row:
            on_row(0, results)
        log.info("step 0: %s", _fmt(results))
    progress = Progress(steps, "rm train", logger=log, bar=show_progress)

    def on_step(job: RMJob, row: dict) -> None:
        nonlocal results
        step = job.step
        if step % rm.eval_every == 0 or job.done:
            results = evaluate(step)
            progress.exclude(results.get("eval/seconds", 0.0))  # the eval reports its own progress
            row |= results
            log.info("step %d: %s", step, _fmt(results))
        if on_save and rm.save_every and step % rm.save_every == 0 and not job.done:
            on_save(step)
        if on_row and (step % log_every == 0 or "eval/accuracy" in row):
            on_row(step, row)
        progress.update(1, loss=row["train/loss"], acc=row["train/accuracy"], tokens_per_s=round(row["perf/tokens_per_s"]))

    train_side_by_side([job], on_step)
    progress.close()
    return results


def save_checkpoint(group, run_dir: Path, step: int, keep: int) -> None:
    """An HF checkpoint at <run>/checkpoints/step-N; older ones beyond `keep` are removed."""
    root = Path(run_dir) / "checkpoints"
    group.run("save", str(root / f"step-{step:06d}"))
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint of step %d in %s", step, root)


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if not math.isnan(v))
