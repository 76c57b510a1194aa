"""`rlhf-ray rm train`: Bradley-Terry RM training on the learner group (DeepSpeed), with held-out evals,
HF checkpoints, metrics and progress like the PPO runs. Denoising and contrastive terms come from the rm section."""

import json
import logging
import math
import shutil
import time
from pathlib import Path

import ray

from actors.rm_learner import make_rm_learner_group
from rlhf_ray.config import Config, ConfigError
from rlhf_ray.device import Precision, announce_precision
from rlhf_ray.metrics import MetricsLogger
from rlhf_ray.progress import Progress
from rlhf_ray.run_dir import seed_everything
from rlhf_ray.training.rm_eval import rm_eval_metrics

from .cluster import init_ray, report_node_precision
from .rm_jobs import RMJob, prepare_rm_data, score_pairs, total_steps, train_side_by_side

log = logging.getLogger("rlhf_ray.rm")


def reward_model_save_dir(cfg: Config, run_dir: Path) -> Path:
    """Where rm train writes the RM: rm.save_dir, else <run_dir>/reward_model."""
    return Path(cfg.rm.save_dir) if cfg.rm.save_dir else Path(run_dir) / "reward_model"


def run_rm_train(cfg: Config, run_dir: Path, show_progress: bool = True, precision: Precision | None = None) -> dict:
    """Train an RM as configured on learner.world_size ranks; save it in HF format; return the final metrics.

    precision: the caller's resolved model.mixed_precision when it has logged it already (train runs an RM first)."""
    rm, learner = cfg.rm, cfg.learner
    if rm.batch_size % (rm.micro_batch_size * learner.world_size):
        raise ConfigError(f"rm.batch_size ({rm.batch_size}) must be a multiple of rm.micro_batch_size x learner.world_size "
                          f"({rm.micro_batch_size} x {learner.world_size}): every rank runs the same micro-batches")
    seed_everything(cfg.run.seed)
    precision = precision or announce_precision(cfg.model.mixed_precision)  # each rank decides again for its own node
    data = prepare_rm_data(cfg, run_dir)
    steps = total_steps(len(data.train_rows), rm)
    init_ray(cfg.cluster)
    group = make_rm_learner_group(rm, learner.world_size, learner.resources, data.init_dir, data.from_lm, steps,
                                  ray.put(data.pairs), learner.zero_stage, cfg.run.seed, cfg.model.mixed_precision,
                                  timeout_s=cfg.cluster.placement_timeout_s)
    try:  # on any error too: free the group (and its GPUs)
        report_node_precision(precision, group)
        return _train(cfg, run_dir, data, group, steps, show_progress)
    finally:
        group.kill()


def _train(cfg: Config, run_dir: Path, data, group, steps: int, show_progress: bool) -> dict:
    rm = cfg.rm
    job = RMJob("rm", group, data.train_index, rm, cfg.run.seed, steps)
    metrics = MetricsLogger(run_dir)
    t_start = time.perf_counter()

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
        metrics.log(0, results)
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
        if rm.save_every and step % rm.save_every == 0 and not job.done:
            save_checkpoint(group, run_dir, step, cfg.run.keep_checkpoints)
        if step % cfg.run.log_every == 0 or "eval/accuracy" in row:
            metrics.log(step, row)
        progress.update(1, loss=row["train/loss"], acc=row["train/accuracy"], tokens_per_s=round(row["perf/tokens_per_s"]))

    try:
        train_side_by_side([job], on_step)
        progress.close()
        save_dir = reward_model_save_dir(cfg, run_dir)
        group.run("save", str(save_dir))
    finally:
        metrics.close()
    log.info("reward model saved to %s", save_dir)
    summary = {"steps": job.step, "train_pairs": len(data.train_rows), "eval_pairs": len(data.eval_rows),
               "train_seconds": round(time.perf_counter() - t_start, 1), "denoise": data.denoise, **results,
               "reward_model": str(save_dir)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def save_checkpoint(group, run_dir: Path, step: int, keep: int) -> None:
    """An HF checkpoint at <run>/checkpoints/step-N; older ones beyond `keep` are removed."""
    root = Path(run_dir) / "checkpoints"
    group.run("save", str(root / f"step-{step:06d}"))
    for old in sorted(root.glob("step-*"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    log.info("checkpoint of step %d in %s", step, root)


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if not math.isnan(v))
