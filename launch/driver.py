"""The PPO driver (single controller): reading run_ppo top to bottom tells one RLHF iteration.

rollout (RolloutActors) -> score (RewardActors) -> log-probs, reference, values (LearnerGroup)
-> KL-shaped rewards + GAE (core) -> PPO epochs (LearnerGroup) -> weight sync (blob or broadcast) -> metrics.
"""

import logging
import math
import time
from contextlib import contextmanager
from pathlib import Path

import torch
from tqdm.auto import tqdm

from actors.group import ActorGroup, split_evenly
from actors.learner import make_learner_group
from actors.reward import RewardActor
from actors.rollout import RolloutActor
from actors.weight_sync import WeightSync
from rlhf_ray.algorithms import RunningMoments, make_kl_controller, masked_mean
from rlhf_ray.config import Config
from rlhf_ray.data import load_preferences, prompt_dataset
from rlhf_ray.data.tokenize import render_prompt
from rlhf_ray.metrics import MetricsLogger
from rlhf_ray.models import load_tokenizer, reward_model_from_lm
from rlhf_ray.models.assets import resolve_model
from rlhf_ray.ppo.advantages import compute_targets, mean_sequence_kl
from rlhf_ray.ppo.batch import make_sequences
from rlhf_ray.rollout.types import SamplingParams, concat
from rlhf_ray.run_dir import seed_everything
from rlhf_ray.training.checkpoint import save_hf_atomic

from .cluster import init_ray

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


def critic_init_dir(cfg: Config, policy_dir: Path, tokenizer, run_dir: Path) -> Path:
    """The critic starts from the RM; with a programmatic reward, from the policy with a fresh value head."""
    if cfg.model.reward:
        return Path(cfg.model.reward)
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


def run_ppo(cfg: Config, run_dir: Path, show_progress: bool = True) -> list[dict]:
    seed_everything(cfg.run.seed)
    if not cfg.model.reward and not cfg.reward.function:
        raise ValueError("set model.reward (a reward model directory, e.g. from `rlhf-ray rm train`) or reward.function")
    init_ray(cfg.cluster)
    policy_dir = resolve_model(cfg.model.policy)
    tokenizer = load_tokenizer(policy_dir)
    prompts = prompt_token_ids(cfg, tokenizer)
    log.info("%d RL prompts", len(prompts))
    critic_dir = critic_init_dir(cfg, policy_dir, tokenizer, run_dir)

    rollout = ActorGroup(RolloutActor, cfg.rollout.num_actors, cfg.rollout.resources, str(policy_dir), name="rollout",
                         engine=cfg.rollout.engine, max_model_len=cfg.rollout.max_model_len,
                         kv_cache_gib=cfg.rollout.kv_cache_gib, seed=cfg.run.seed, timeout_s=cfg.cluster.placement_timeout_s)
    reward = ActorGroup(RewardActor, cfg.reward.num_actors, cfg.reward.resources, cfg.model.reward, name="reward",
                        function=cfg.reward.function, function_kwargs=cfg.reward.function_kwargs,
                        mixed_precision=cfg.model.mixed_precision, batch_size=cfg.reward.batch_size,
                        timeout_s=cfg.cluster.placement_timeout_s)
    learner = make_learner_group(cfg.learner, cfg.ppo, policy_dir, critic_dir, cfg.run.seed,
                                 timeout_s=cfg.cluster.placement_timeout_s)
    weights = WeightSync(cfg.sync.transport, learner, rollout, cfg.sync.bucket_mb)
    kl_ctl = make_kl_controller(cfg.ppo.kl_controller, cfg.ppo.kl_coef, cfg.ppo.kl_target, cfg.ppo.kl_horizon)
    moments = RunningMoments()
    metrics = MetricsLogger(run_dir)
    order = torch.randperm(len(prompts), generator=torch.Generator().manual_seed(cfg.run.seed)).tolist()
    cursor, history = 0, []

    for it in tqdm(range(1, cfg.ppo.iterations + 1), desc="ppo", unit="iter", disable=not show_progress):
        timer = PhaseTimer()
        # 1. rollout: n samples for each prompt of this iteration, spread over the RolloutActors.
        batch_prompts = [prompts[order[(cursor + i) % len(order)]] for i in range(cfg.ppo.prompts_per_iteration)]
        cursor += cfg.ppo.prompts_per_iteration
        with timer("rollout"):
            shards = split_evenly(batch_prompts, len(rollout))
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
            exps = on_row_shards(learner, "experience", batch, rank_rows)
            exp = {k: torch.cat([e[k] for e in exps]) for k in exps[0]}
        # 4. rewards: RM score at the last token, -beta*KL on every token; GAE advantages and returns.
        t = compute_targets(scores, exp["old_logprobs"], exp["ref_logprobs"], exp["old_values"], act, cfg.ppo,
                            kl_ctl.value, moments)
        full = batch | {"old_logprobs": exp["old_logprobs"], "old_values": exp["old_values"],
                        "advantages": t.advantages, "returns": t.returns}
        # 5. PPO epochs on the learner group.
        with timer("learn"):
            steps = math.ceil(max(len(r) for r in rank_rows) / cfg.learner.micro_batch_size)
            stats = on_row_shards(learner, "ppo_update", full, rank_rows, steps)
        # 6. weight sync: the RolloutActors get the new policy (object-store blob or collective broadcast).
        with timer("sync"):
            weights.sync()
        kl = mean_sequence_kl(t.kl, act)
        kl_ctl.update(kl, len(ids))
        lengths = torch.tensor([len(r) for r in rollouts.response_ids], dtype=torch.float)
        n_tokens = float(lengths.sum())
        row = {
            "reward/mean": scores.mean().item(), "reward/std": scores.std().item() if len(scores) > 1 else 0.0,
            "kl/mean": kl, "kl/coef": kl_ctl.value, "response/length": lengths.mean().item(),
            "response/stop_frac": sum(f == "stop" for f in rollouts.finish_reasons) / len(rollouts),
            "return/mean": masked_mean(t.returns, act).item(),
            **{f"ppo/{k}": sum(s[k] for s in stats) / len(stats) for k in stats[0]},
            **{f"time/{k}_s": v for k, v in timer.seconds.items()},
            "perf/rollout_tokens_per_s": n_tokens / timer.seconds["rollout"],
            "perf/learn_tokens_per_s": float(attn.sum()) / timer.seconds["learn"],
        }
        metrics.log(it, row)
        history.append(row)
        log.info("iter %d: reward %.4f, kl %.4f, len %.1f, %s", it, row["reward/mean"], kl, row["response/length"],
                 ", ".join(f"{k} {v:.1f}s" for k, v in timer.seconds.items()))
    metrics.close()
    for group in (rollout, reward, learner):
        group.kill()
    return history
