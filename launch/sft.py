"""`rlhf-ray sft`: supervised fine-tuning of model.policy on the gold responses of the configured preference set, on
a DeepSpeed learner group (learner.world_size ranks, learner.zero_stage), with held-out losses, HF checkpoints every
sft.save_every steps (all kept: the policy ladder of the SEAM saturation study) and the final <run>/policy.

The first stage of SFT -> RM -> PPO: `rlhf-ray train CONFIG model.policy=<run>/policy` starts RLHF from it.
"""

import json
import logging
import math
import time
from pathlib import Path

import ray
import torch

from actors.group import ZeroShards
from actors.sft_learner import make_sft_learner_group
from rlhf_ray.config import Config
from rlhf_ray.data import load_preferences, prompt_dataset
from rlhf_ray.device import announce_precision
from rlhf_ray.metrics import MetricsLogger
from rlhf_ray.models import load_tokenizer
from rlhf_ray.models.assets import resolve_model
from rlhf_ray.progress import Progress
from rlhf_ray.run_dir import seed_everything
from rlhf_ray.training.rm_data import total_steps
from rlhf_ray.training.sft import encode_sft

from .cluster import init_ray, report_node_precision
from .rm_jobs import seeded_batches
from .rm_train import check_learner_batch

log = logging.getLogger("rlhf_ray.sft")


def sft_examples(cfg: Config) -> tuple[list[dict], list[dict], list[dict]]:
    """Encoded train and held-out examples (each distinct prompt with its gold, first chosen, response) and the data
    report per file."""
    data = load_preferences(cfg.data)
    log.info("data:\n%s", data.summary())
    tokenizer = load_tokenizer(resolve_model(cfg.model.policy))
    enc = dict(max_len=cfg.model.max_len, max_response_len=cfg.model.max_response_len,
               use_chat_template=cfg.data.chat_template, on_overlong=cfg.model.on_overlong)
    train, train_stats = encode_sft(tokenizer, prompt_dataset(data.train), **enc)
    held, held_stats = encode_sft(tokenizer, prompt_dataset(data.eval), **enc)
    log.info("sft train: %s; eval: %s", train_stats.summary().replace("pairs", "examples"),
             held_stats.summary().replace("pairs", "examples"))
    return train, held, [r.to_dict() for r in data.reports]


def run_sft(cfg: Config, run_dir: Path, show_progress: bool = True) -> dict:
    """Fine-tune as configured; writes metrics, checkpoints, <run>/policy and summary.json. Returns the summary."""
    sft, learner = cfg.sft, cfg.learner
    check_learner_batch(cfg, "sft")
    seed_everything(cfg.run.seed)
    precision = announce_precision(cfg.model.mixed_precision)
    train, held, reports = sft_examples(cfg)
    (run_dir / "data_report.json").write_text(json.dumps(reports, indent=1))
    steps = total_steps(len(train), sft, "sft", section="sft", unit="train examples")
    examples = train + held  # one list on every rank; held-out examples after the train ones
    eval_index = list(range(len(train), len(examples)))
    init_ray(cfg.cluster, run_dir)
    group = make_sft_learner_group(sft, learner.world_size, learner.resources, str(resolve_model(cfg.model.policy)),
                                   steps, ray.put(examples), learner.zero_stage, cfg.run.seed, cfg.model.mixed_precision,
                                   timeout_s=cfg.cluster.placement_timeout_s)
    metrics = MetricsLogger(run_dir, cfg=cfg)
    ladder, results = [], {}
    try:
        report_node_precision(precision, group)

        def evaluate(step: int) -> dict:
            if not eval_index:
                return {}
            t0 = time.perf_counter()
            shards = ZeroShards.split(len(eval_index), len(group), sft.micro_batch_size)
            parts = group.gather([a.eval_nll.remote([eval_index[i] for i in shards.padded(r)], sft.micro_batch_size)
                                  for r, a in enumerate(group.actors)])
            nll = [x for part in shards.unpad(parts) for x in part]
            loss = sum(a for a, _ in nll) / max(sum(n for _, n in nll), 1.0)
            out = {"eval/loss": loss, "eval/perplexity": math.exp(min(loss, 50.0)), "eval/examples": float(len(nll)),
                   "eval/seconds": time.perf_counter() - t0}
            log.info("step %d: eval loss %.4f (perplexity %.2f) on %d held-out examples", step, loss,
                     out["eval/perplexity"], len(nll))
            return out

        results = evaluate(0)
        metrics.log(0, results)
        batches = seeded_batches(list(range(len(train))), sft.batch_size, torch.Generator().manual_seed(cfg.run.seed))
        progress = Progress(steps, "sft", logger=log, bar=show_progress)
        t_start = time.perf_counter()
        for step in range(1, steps + 1):
            t0 = time.perf_counter()
            batch = next(batches)
            shards = ZeroShards.split(len(batch), len(group), sft.micro_batch_size)
            stats = group.gather([a.train_step.remote([batch[i] for i in shards.padded(r)])
                                  for r, a in enumerate(group.actors)])
            row = {k: sum(s[k] for s in stats) / len(stats) for k in stats[0] if k not in ("tokens", "response_tokens")}
            elapsed = time.perf_counter() - t0
            row |= {"perf/step_s": elapsed, "perf/tokens_per_s": sum(s["tokens"] for s in stats) / elapsed}
            if step % sft.eval_every == 0 or step == steps:
                results = evaluate(step)
                progress.exclude(results.get("eval/seconds", 0.0))
                row |= results
            if sft.save_every and step % sft.save_every == 0 and step < steps:
                ladder.append(save_step(group, run_dir, step))
            metrics.log(step, row)
            progress.update(1, loss=round(row["train/loss"], 4), tokens_per_s=round(row["perf/tokens_per_s"]))
        progress.close()
        final = run_dir / "policy"
        group.run("save", str(final))
        if sft.save_every:
            ladder.append(save_step(group, run_dir, steps))
    finally:
        metrics.close()
        group.kill()
    summary = {"steps": steps, "train_examples": len(train), "eval_examples": len(held),
               "train_seconds": round(time.perf_counter() - t_start, 1), **results, "policy": str(final),
               "checkpoints": [str(p) for p in ladder]}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    log.info("policy saved to %s%s", final, f"; {len(ladder)} checkpoints in {run_dir / 'checkpoints'}" if ladder else "")
    return summary


def save_step(group, run_dir: Path, step: int) -> Path:
    dest = Path(run_dir) / "checkpoints" / f"step-{step:06d}"
    group.run("save", str(dest))
    return dest
