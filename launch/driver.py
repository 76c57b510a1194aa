"""The PPO driver (single controller): reading run_ppo top to bottom tells one RLHF iteration.

rollout (RolloutActors) -> score (RewardActors) -> log-probs, reference, values (LearnerGroup)
-> KL-shaped rewards + GAE (core) -> replay buffer -> PPO epochs (LearnerGroup) -> weight sync (blob or
broadcast) -> checkpoint every N iterations -> metrics.
"""

import json
import logging
import math
import os
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from ray.util.placement_group import remove_placement_group
from tqdm.auto import tqdm

from actors.group import ActorGroup, shared_placement_group, split_evenly
from actors.learner import make_learner_group
from actors.reward import RewardActor
from actors.rollout import RolloutActor
from actors.weight_sync import WeightSync
from rlhf_ray.algorithms import make_kl_controller, masked_mean
from rlhf_ray.config import Config
from rlhf_ray.data import load_preferences, prompt_dataset
from rlhf_ray.data.tokenize import render_prompt
from rlhf_ray.device import announce_precision
from rlhf_ray.metrics import MetricsLogger
from rlhf_ray.models import load_tokenizer, reward_model_from_lm
from rlhf_ray.models.assets import resolve_model
from rlhf_ray.ppo.advantages import compute_targets, mean_sequence_kl
from rlhf_ray.ppo.batch import make_sequences
from rlhf_ray.rollout.types import SamplingParams, concat
from rlhf_ray.run_dir import seed_everything, truncate_jsonl
from rlhf_ray.training.checkpoint import checkpoint_iteration, latest_checkpoint, save_hf_atomic

from .checkpointing import DriverState, restore_ppo_checkpoint, save_ppo_checkpoint
from .cluster import init_ray, report_node_precision
from .rm_train import reward_model_save_dir, run_rm_train

log = logging.getLogger("rlhf_ray.ppo")


class PhaseTimer:
    def __init__(self):
        self.seconds: dict[str, float] = {}

    @contextmanager
    def __call__(self, phase: str):
        t0 = time.perf_counter()
        yield
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0


def prompt_token_ids(cfg: Config, tokenizer) -> list[list[int]]:
    """RL prompts of the configured preference set, rendered (chat template) and cut from the left to fit."""
    prompts = prompt_dataset(load_preferences(cfg.data).train)
    room = cfg.rollout.max_model_len - cfg.rollout.max_new_tokens
    out = []
    for row in prompts:
        ids = tokenizer(render_prompt(tokenizer, row["prompt"], row["format"], cfg.data.chat_template),
                        add_special_tokens=False)["input_ids"]
        out.append(ids[-room:])
    if not out:
        raise ValueError("no RL prompts: the configured data gave no training pairs")
    return out


def critic_init_dir(reward_dir: str | None, policy_dir: Path, tokenizer, run_dir: Path) -> Path:
    """The critic starts from the RM; with a programmatic reward, from the policy with a fresh value head."""
    if reward_dir:
        return Path(reward_dir)
    out = run_dir / "critic_init"
    if not (out / "config.json").exists():
        save_hf_atomic(reward_model_from_lm(policy_dir, pad_token_id=tokenizer.pad_token_id), tokenizer, out)
    return out


def on_row_shards(group: ActorGroup, method: str, tensors: dict, rank_rows: list[list[int]], *args) -> list:
    """Call `method(rows of tensors, *args)` on each learner rank with its own rows; gather in rank order."""
    return group.gather([getattr(a, method).remote({k: v[rows] for k, v in tensors.items()}, *args)
                         for a, rows in zip(group.actors, rank_rows)])


def sampling_params(cfg: Config, seed: int) -> SamplingParams:
    r = cfg.rollout
    return SamplingParams(n=r.n_samples, max_tokens=r.max_new_tokens, temperature=r.temperature, top_p=r.top_p,
                          top_k=r.top_k, repetition_penalty=r.repetition_penalty, seed=seed)


def reward_model_dir(cfg: Config, run_dir: Path, show_progress: bool = True, precision=None) -> str | None:
    """model.reward as given; with neither it nor reward.function, train one (rm section) or reuse the run's."""
    if cfg.model.reward or cfg.reward.function:
        return cfg.model.reward
    rm_run = run_dir / "rm"
    dest = reward_model_save_dir(cfg, rm_run)
    if (dest / "config.json").exists():  # save_hf_atomic: a config.json means a complete save
        log.info("reusing the reward model in %s", dest)
        return str(dest)
    log.info("no model.reward or reward.function: training a reward model first (rm section) into %s", dest)
    rm_run.mkdir(parents=True, exist_ok=True)
    # An RM learner group of its own, killed when done: its memory is free before the PPO actors start.
    summary = run_rm_train(cfg, rm_run, show_progress=show_progress, precision=precision)
    log.info("reward model: eval accuracy %.4f on %d held-out pairs after %d steps", summary.get("eval/accuracy", math.nan),
             summary["eval_pairs"], summary["steps"])
    return summary["reward_model"]


def hang_for_tests(iteration: int) -> None:
    """RLHF_RAY_TEST_HANG_AFTER=N: stop after iteration N's rows so a test can kill the job at a known point."""
    if os.environ.get("RLHF_RAY_TEST_HANG_AFTER") == str(iteration):
        log.warning("RLHF_RAY_TEST_HANG_AFTER=%d: hanging until killed", iteration)
        while True:
            time.sleep(1)


def run_ppo(cfg: Config, run_dir: Path, show_progress: bool = True, resume: bool = False) -> list[dict]:
    """Run PPO iterations; with resume, continue from the run folder's last complete checkpoint."""
    seed_everything(cfg.run.seed)
    ckpt = latest_checkpoint(run_dir)
    if ckpt and not resume:
        raise FileExistsError(f"{run_dir} already holds checkpoint {ckpt.name}: pass --resume to continue it, "
                              "or choose another run.name")
    if ckpt and resume and checkpoint_iteration(ckpt) >= cfg.ppo.iterations:
        log.info("%s already holds all %d iterations (raise ppo.iterations to go on)", ckpt, cfg.ppo.iterations)
        return []
    if resume and not ckpt:
        log.info("--resume: no complete checkpoint under %s yet; starting from iteration 1", run_dir / "checkpoints")
    precision = announce_precision(cfg.model.mixed_precision)  # each actor decides again for its own node
    rollout_precision = announce_precision(cfg.rollout.dtype, knob="rollout.dtype")
    policy_dir = resolve_model(cfg.model.policy)
    tokenizer = load_tokenizer(policy_dir)
    prompts = prompt_token_ids(cfg, tokenizer)
    log.info("%d RL prompts", len(prompts))
    init_ray(cfg.cluster)
    reward_dir = reward_model_dir(cfg, run_dir, show_progress, precision)  # before the PPO actors exist: RM training gets the machine
    critic_dir = critic_init_dir(reward_dir, policy_dir, tokenizer, run_dir)

    # colocate: RolloutActor i and RewardActor i share bundle i of one placement group (one node, one GPU).
    shared = shared_placement_group([(cfg.rollout.resources, cfg.rollout.num_actors),
                                     (cfg.reward.resources, cfg.reward.num_actors)], "rollout+reward",
                                    cfg.cluster.placement_timeout_s) if cfg.cluster.colocate else None
    # On resume the RolloutActors load the checkpoint's HF policy, as vLLM loads any HF folder.
    rollout = ActorGroup(RolloutActor, cfg.rollout.num_actors, cfg.rollout.resources, str(ckpt / "policy" if ckpt else policy_dir),
                         name="rollout", pg=shared, engine=cfg.rollout.engine, dtype=cfg.rollout.dtype,
                         max_model_len=cfg.rollout.max_model_len, kv_cache_gib=cfg.rollout.kv_cache_gib, seed=cfg.run.seed, timeout_s=cfg.cluster.placement_timeout_s)
    reward = ActorGroup(RewardActor, cfg.reward.num_actors, cfg.reward.resources, reward_dir, name="reward", pg=shared,
                        function=cfg.reward.function, function_kwargs=cfg.reward.function_kwargs,
                        mixed_precision=cfg.model.mixed_precision, batch_size=cfg.reward.batch_size,
                        timeout_s=cfg.cluster.placement_timeout_s)
    learner = make_learner_group(cfg.learner, cfg.ppo, policy_dir, critic_dir, cfg.run.seed, cfg.model.mixed_precision,
                                 timeout_s=cfg.cluster.placement_timeout_s)
    state = DriverState(make_kl_controller(cfg.ppo.kl_controller, cfg.ppo.kl_coef, cfg.ppo.kl_target, cfg.ppo.kl_horizon))
    if ckpt:
        restore_ppo_checkpoint(ckpt, cfg, state, learner)
    # Rows newer than the checkpoint (or all rows, starting afresh) belong to iterations that will run again.
    dropped = sum(truncate_jsonl(run_dir / f, state.iteration) for f in ("metrics.jsonl", "samples.jsonl"))
    if dropped:
        log.info("dropped %d metric/sample rows written after iteration %d", dropped, state.iteration)
    metrics = MetricsLogger(run_dir, purge_step=state.iteration + 1)
    samples = open(run_dir / "samples.jsonl", "a", encoding="utf-8") if cfg.run.save_samples else None
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(cfg.run.seed)).tolist()
    history = []

    try:  # on any error too: free the actors and placement groups (a cluster outlives this driver)
        report_node_precision(rollout_precision, rollout)
        report_node_precision(precision, reward, learner)
        weights = WeightSync(cfg.sync.transport, learner, rollout, cfg.sync.bucket_mb)
        # A bar in a terminal only: elsewhere the per-iteration log line below is the progress.
        bar = tqdm(range(state.iteration + 1, cfg.ppo.iterations + 1), desc="ppo", unit="iter",
                   disable=not (show_progress and sys.stderr.isatty()))
        for it in bar:
            timer = PhaseTimer()
            # 1. rollout: n samples for each prompt of this iteration, spread over the RolloutActors.
            batch_index = [order[(state.cursor + i) % len(order)] for i in range(cfg.ppo.prompts_per_iteration)]
            state.cursor += cfg.ppo.prompts_per_iteration
            with timer("rollout"):
                shards = split_evenly([prompts[i] for i in batch_index], len(rollout))
                parts = rollout.gather([a.generate.remote(s, sampling_params(cfg, cfg.run.seed * 100003 + it * 101 + k))
                                        for k, (a, s) in enumerate(zip(rollout.actors, shards)) if s])
                rollouts = concat(parts)
            # 2. score every (prompt, response) with the RewardActors.
            with timer("score"):
                pairs = list(zip(rollouts.prompt_ids, rollouts.response_ids))
                scores = torch.tensor([s for part in reward.run_sharded("score", pairs) for s in part])
            # 3. current-policy and reference log-probs and critic values, sharded over the learner ranks.
            ids, attn, act = make_sequences(rollouts.prompt_ids, rollouts.response_ids, tokenizer.pad_token_id)
            batch = {"input_ids": ids, "attention_mask": attn, "action_mask": act}
            rank_rows = split_evenly(list(range(len(ids))), len(learner))
            with timer("experience"):
                n_micro = math.ceil(max(len(r) for r in rank_rows) / cfg.learner.micro_batch_size)  # ZeRO-3: equal forwards
                exps = on_row_shards(learner, "experience", batch, rank_rows, n_micro)
                exp = {k: torch.cat([e[k] for e in exps]) for k in exps[0]}
            # 4. rewards: RM score at the last token, -beta*KL on every token; GAE advantages and returns.
            t = compute_targets(scores, exp["old_logprobs"], exp["ref_logprobs"], exp["old_values"], act, cfg.ppo,
                                state.kl_ctl.value, state.moments)
            # 5. the replay buffer holds this iteration's experiences (on-policy: refilled every iteration).
            state.buffer.clear()
            state.buffer.add(batch | {"old_logprobs": exp["old_logprobs"], "old_values": exp["old_values"],
                                      "advantages": t.advantages, "returns": t.returns, "scores": scores})
            # 6. PPO epochs on the learner group.
            with timer("learn"):
                steps = math.ceil(max(len(r) for r in rank_rows) / cfg.learner.micro_batch_size)
                train = {k: v for k, v in state.buffer.data.items() if k != "scores"}
                stats = on_row_shards(learner, "ppo_update", train, rank_rows, steps)
            # 7. weight sync: the RolloutActors get the new policy (object-store blob or collective broadcast).
            with timer("sync"):
                weights.sync()
            kl = mean_sequence_kl(t.kl, act)
            state.kl_ctl.update(kl, len(ids))
            state.iteration = it
            lengths = torch.tensor([len(r) for r in rollouts.response_ids], dtype=torch.float)
            n_tokens = float(lengths.sum())
            row = {
                "reward/mean": scores.mean().item(), "reward/std": scores.std().item() if len(scores) > 1 else 0.0,
                "kl/mean": kl, "kl/coef": state.kl_ctl.value, "response/length": lengths.mean().item(),
                "response/stop_frac": sum(f == "stop" for f in rollouts.finish_reasons) / len(rollouts),
                "return/mean": masked_mean(t.returns, act).item(),
                **{f"ppo/{k}": sum(s[k] for s in stats) / len(stats) for k in stats[0]},
                **{f"time/{k}_s": v for k, v in timer.seconds.items()},
                "perf/rollout_tokens_per_s": n_tokens / timer.seconds["rollout"],
                "perf/learn_tokens_per_s": float(attn.sum()) / timer.seconds["learn"],
            }
            metrics.log(it, row)
            if samples:
                for j in range(len(rollouts)):
                    samples.write(json.dumps({"step": it, "prompt_index": batch_index[rollouts.prompt_index[j]],
                                              "score": scores[j].item(), "finish": rollouts.finish_reasons[j],
                                              "response": rollouts.texts[j]}) + "\n")
                samples.flush()
            history.append(row)
            bar.set_postfix(reward=f"{row['reward/mean']:.3f}", kl=f"{kl:.3f}")
            log.info("iter %d: reward %.4f, kl %.4f, len %.1f, %s", it, row["reward/mean"], kl, row["response/length"],
                     ", ".join(f"{k} {v:.1f}s" for k, v in timer.seconds.items()))
            hang_for_tests(it)
            # 8. checkpoint after the iteration's rows are written: a resume drops rows newer than its checkpoint.
            if (cfg.run.checkpoint_every and it % cfg.run.checkpoint_every == 0) or it == cfg.ppo.iterations:
                t0 = time.perf_counter()
                save_ppo_checkpoint(run_dir, cfg, state, learner, tokenizer)
                log.info("checkpoint of iteration %d written in %.1f s", it, time.perf_counter() - t0)
    finally:
        metrics.close()
        if samples:
            samples.close()
        for group in (rollout, reward, learner):
            group.kill()
        if shared:
            remove_placement_group(shared)
    return history
