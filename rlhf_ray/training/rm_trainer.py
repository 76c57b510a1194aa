"""Bradley-Terry reward-model training in one process (the distributed learner group wraps the same step)."""

import json
import logging
import math
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import get_scheduler

from ..algorithms import bradley_terry_loss, preference_accuracy
from ..config import Config
from ..data import load_preferences
from ..data.tokenize import encode_pairs, pad_batch
from ..device import autocast, torch_device
from ..metrics import MetricsLogger
from ..models import (
    load_reward_model,
    load_tokenizer,
    reward_model_from_lm,
    score_sequences,
    sequence_rewards,
)
from ..models.assets import resolve_model
from ..run_dir import seed_everything
from .checkpoint import save_hf_atomic

log = logging.getLogger("rlhf_ray.rm")


def pair_rewards(model, batch: list[dict], pad_id: int, device, mixed_precision: str = "none"):
    """One forward over chosen and rejected together (2B rows): (r_chosen, r_rejected, tokens)."""
    ids, mask = pad_batch([b["chosen_ids"] for b in batch] + [b["rejected_ids"] for b in batch], pad_id)
    with autocast(mixed_precision):
        rewards = sequence_rewards(model, ids.to(device), mask.to(device))
    return rewards[: len(batch)], rewards[len(batch) :], int(mask.sum())


def evaluate(model, pairs: list[dict], pad_id: int, batch_size: int, mixed_precision: str = "none") -> dict[str, float]:
    """Held-out accuracy, BT loss and mean reward gap."""
    if not pairs:
        return {}
    c = score_sequences(model, [p["chosen_ids"] for p in pairs], pad_id, batch_size, mixed_precision)
    r = score_sequences(model, [p["rejected_ids"] for p in pairs], pad_id, batch_size, mixed_precision)
    return {
        "eval/accuracy": preference_accuracy(c, r).item(),
        "eval/loss": bradley_terry_loss(c, r).item(),
        "eval/reward_gap": (c - r).mean().item(),
        "eval/reward_mean": torch.cat([c, r]).mean().item(),
    }


def train_reward_model(cfg: Config, run_dir: Path, show_progress: bool = True) -> dict:
    """Train an RM as configured; save it in HF format; return the final eval metrics."""
    seed_everything(cfg.run.seed)
    device = torch_device()
    data = load_preferences(cfg.data)
    log.info("data:\n%s", data.summary())
    (run_dir / "data_report.json").write_text(json.dumps([r.to_dict() for r in data.reports], indent=1))

    lm_dir = resolve_model(cfg.model.policy)
    tokenizer = load_tokenizer(cfg.model.reward or lm_dir)
    if cfg.model.reward:
        model = load_reward_model(cfg.model.reward, cfg.model.dtype, trainable=True)
    else:
        model = reward_model_from_lm(lm_dir, cfg.model.dtype, pad_token_id=tokenizer.pad_token_id)
    model.to(device).train()

    enc = dict(max_len=cfg.model.max_len, max_response_len=cfg.model.max_response_len,
               use_chat_template=cfg.data.chat_template, on_overlong=cfg.model.on_overlong)
    train_pairs, train_stats = encode_pairs(tokenizer, data.train, **enc)
    eval_pairs, eval_stats = encode_pairs(tokenizer, data.eval, **enc)
    log.info("train: %s; eval: %s", train_stats.summary(), eval_stats.summary())
    if not train_pairs:
        raise ValueError("no training pairs left after loading and encoding; see the data report above")

    rm = cfg.rm
    steps_per_epoch = len(train_pairs) // rm.batch_size
    if steps_per_epoch == 0:
        raise ValueError(f"rm.batch_size {rm.batch_size} is larger than the {len(train_pairs)} training pairs")
    total_steps = min(rm.max_steps or math.inf, steps_per_epoch * rm.epochs)
    optimizer = torch.optim.AdamW(model.parameters(), lr=rm.lr, betas=tuple(rm.adam_betas), eps=rm.adam_eps,
                                  weight_decay=rm.weight_decay)
    scheduler = get_scheduler(rm.lr_schedule, optimizer, num_warmup_steps=min(rm.warmup_steps, total_steps),
                              num_training_steps=total_steps)
    metrics = MetricsLogger(run_dir)
    accum = rm.batch_size // rm.micro_batch_size
    pad_id = tokenizer.pad_token_id
    generator = torch.Generator().manual_seed(cfg.run.seed)  # the data order is a function of the seed alone

    results = evaluate(model, eval_pairs, pad_id, rm.micro_batch_size * 2, cfg.model.mixed_precision)
    metrics.log(0, results)
    log.info("step 0: %s", _fmt(results))
    bar = tqdm(total=total_steps, desc="rm train", unit="step", disable=not show_progress)
    step = 0
    while step < total_steps:
        order = torch.randperm(len(train_pairs), generator=generator).tolist()
        for start in range(0, steps_per_epoch * rm.batch_size, rm.batch_size):
            if step >= total_steps:
                break
            t0 = time.perf_counter()
            batch = [train_pairs[i] for i in order[start : start + rm.batch_size]]
            loss_sum, acc_sum, gap_sum, tokens = 0.0, 0.0, 0.0, 0
            for m in range(accum):
                micro = batch[m * rm.micro_batch_size : (m + 1) * rm.micro_batch_size]
                chosen, rejected, n_tokens = pair_rewards(model, micro, pad_id, device, cfg.model.mixed_precision)
                loss = bradley_terry_loss(chosen, rejected, label_smoothing=rm.label_smoothing)
                (loss / accum).backward()
                loss_sum += loss.item()
                acc_sum += preference_accuracy(chosen, rejected).item()
                gap_sum += (chosen - rejected).mean().item()
                tokens += n_tokens
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), rm.grad_clip or math.inf)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            elapsed = time.perf_counter() - t0
            row = {"train/loss": loss_sum / accum, "train/accuracy": acc_sum / accum, "train/reward_gap": gap_sum / accum,
                   "train/grad_norm": float(grad_norm), "train/lr": scheduler.get_last_lr()[0],
                   "perf/step_s": elapsed, "perf/tokens_per_s": tokens / elapsed}
            if not math.isfinite(row["train/loss"]):
                raise FloatingPointError(f"RM loss became {row['train/loss']} at step {step}; lower rm.lr or check the data")
            if step % rm.eval_every == 0 or step == total_steps:
                results = evaluate(model, eval_pairs, pad_id, rm.micro_batch_size * 2, cfg.model.mixed_precision)
                row |= results
                log.info("step %d: %s", step, _fmt(results))
            if step % cfg.run.log_every == 0 or "eval/accuracy" in row:
                metrics.log(step, row)
            if not show_progress and (step % max(1, total_steps // 10) == 0 or step == total_steps):
                log.info("step %d/%d: loss %.4f, accuracy %.3f, %.0f tokens/s", step, total_steps, row["train/loss"],
                         row["train/accuracy"], row["perf/tokens_per_s"])
            bar.update(1)
            bar.set_postfix(loss=f"{row['train/loss']:.3f}", acc=f"{row['train/accuracy']:.2f}")
    bar.close()
    metrics.close()
    save_dir = reward_model_save_dir(cfg, run_dir)
    save_hf_atomic(model, tokenizer, save_dir)
    log.info("reward model saved to %s", save_dir)
    summary = {"steps": step, "train_pairs": len(train_pairs), "eval_pairs": len(eval_pairs), **results,
               "reward_model": str(save_dir)}
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def reward_model_save_dir(cfg: Config, run_dir: Path) -> Path:
    """Where train_reward_model writes the RM: rm.save_dir, else <run_dir>/reward_model."""
    return Path(cfg.rm.save_dir) if cfg.rm.save_dir else Path(run_dir) / "reward_model"


def _fmt(metrics: dict) -> str:
    return ", ".join(f"{k}={v:.4f}" for k, v in metrics.items())
