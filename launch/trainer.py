"""PPOTrainer: a PPO run's actors and driver state; step() is one RLHF iteration made of named phases.

    rollout (RolloutActors) -> score (RewardActors) -> experience: log-probs, reference, values (LearnerGroup)
    -> fill_buffer: KL-shaped rewards + GAE (core) into the replay buffer -> filter_buffer (a hook: SEAM, ...)
    -> learn: PPO epochs on the buffer as it is now (LearnerGroup) -> sync: weights to the RolloutActors

The actors live from start() to close(), so an outer loop (online rounds) can call step() again on the same actors.
"""

import json
import logging
import math
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

import torch
from ray.util.placement_group import remove_placement_group

from actors.group import ActorGroup, RestartBudget, ZeroShards, shared_placement_group
from actors.learner import make_learner_group
from actors.reward import RewardActor
from actors.rollout import RolloutActor
from actors.weight_sync import WeightSync
from rlhf_ray.algorithms import make_kl_controller
from rlhf_ray.config import Config
from rlhf_ray.data import load_preferences, load_prompt_rows, prompt_dataset
from rlhf_ray.data.prompts import keep_listed_prompts
from rlhf_ray.data.tokenize import render_prompt
from rlhf_ray.device import announce_precision, engine_logprobs_match
from rlhf_ray.metrics import MetricsLogger
from rlhf_ray.models import load_tokenizer, reward_model_from_lm
from rlhf_ray.models.assets import resolve_model
from rlhf_ray.ppo.advantages import compute_targets, mean_sequence_kl, uses_critic
from rlhf_ray.ppo.batch import action_values, make_sequences
from rlhf_ray.ppo.metrics import iteration_metrics
from rlhf_ray.ppo.replay_buffer import ReplayBuffer
from rlhf_ray.rollout.types import Rollouts, SamplingParams, concat, drop_non_finite_prompts
from rlhf_ray.run_dir import truncate_jsonl
from rlhf_ray.training.checkpoint import save_hf_atomic

from .checkpointing import DriverState, restore_ppo_checkpoint, save_ppo_checkpoint
from .cluster import init_ray, report_node_precision
from .rm_train import reward_model_save_dir, run_rm_train
from .testing import hang_if_asked

log = logging.getLogger("rlhf_ray.ppo")

# A buffer filter gets the filled buffer and the iteration and returns the rows to keep (positions into the buffer)
# and its metrics for the iteration's row.
BufferFilter = Callable[[ReplayBuffer, int], tuple[list[int], dict[str, float]]]
# A rollout hook sees each iteration's scored rollouts; its metrics join the iteration's row (a gold judge's reward).
RolloutHook = Callable[[Rollouts, torch.Tensor], dict[str, float]]
# A checkpoint part writes more state into a checkpoint's staging folder before it is committed (online rounds' RM).
CheckpointPart = Callable[[Path], None]


class PhaseTimer:
    """Seconds per phase of one iteration; each phase's start and end are points a test can stop the run at."""

    def __init__(self, iteration: int):
        self.iteration, self.seconds = iteration, {}

    @contextmanager
    def __call__(self, phase: str):
        hang_if_asked(f"{phase}:{self.iteration}")
        t0 = time.perf_counter()
        yield
        self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0
        hang_if_asked(f"{phase}:{self.iteration}:end")


class PPOTrainer:
    def __init__(self, cfg: Config, run_dir: Path, show_progress: bool = True, buffer_filter: BufferFilter | None = None):
        self.cfg, self.run_dir, self.show_progress, self.buffer_filter = cfg, Path(run_dir), show_progress, buffer_filter
        p = cfg.ppo
        self.state = DriverState(make_kl_controller(p.kl_controller, p.kl_coef, p.kl_target, p.kl_horizon))
        self.rollout = self.reward = self.learner = self.shared_pg = self.weights = None
        self.metrics = self.samples = None
        self.served_app: str | None = None  # the Serve app this trainer deployed (reward.remote: serve), deleted on close
        self.old_logprobs = cfg.ppo.old_logprobs  # where the PPO ratio's denominator comes from; start() may overrule
        self.rows_learned: list[int] = []  # row_id of every buffer row the last learn phase trained on
        self.rollout_hooks: list[RolloutHook] = []
        self.checkpoint_parts: list[CheckpointPart] = []
        # Actor restarts (fault section); a restarted RewardActor holds the RM it was made with: hooks that would
        # have given it a newer one (online rounds) run here.
        self.restarts = RestartBudget(cfg.fault.max_actor_restarts)
        self.reward_restored: list[Callable[[int], None]] = []

    # ------------------------------------------------------------------ lifetime
    def start(self, checkpoint: Path | None = None) -> None:
        """Prompts, the reward model (trained first when there is none), the actor groups and their weight sync;
        with a checkpoint, the learners and the driver state continue from it."""
        cfg = self.cfg
        precision = announce_precision(cfg.model.mixed_precision)  # each actor decides again for its own node
        rollout_precision = announce_precision(cfg.rollout.dtype, knob="rollout.dtype")
        if cfg.ppo.old_logprobs == "rollout":  # the engine's log-probs serve only where they equal the learner's
            match, why = engine_logprobs_match(precision, rollout_precision)
            self.old_logprobs = "rollout" if match else "learner"
            if not match:
                log.info("ppo.old_logprobs=rollout -> learner: %s, so their log-probs differ; the PPO ratio and the "
                         "KL penalty take the learner's own (one forward more)", why)
        if departures := sampling_params(cfg, seed=0).departures_from_policy():
            # MOSS samples this way too; PPO's ratio and KL read the policy at temperature 1 all the same.
            log.info("rollout samples at %s: not the policy's own distribution, while PPO's log-probs are the "
                     "policy's at temperature 1 (its ratio treats the samples as the policy's)", ", ".join(departures))
        self.policy_dir = resolve_model(cfg.model.policy)
        self.tokenizer = load_tokenizer(self.policy_dir)
        self.prompt_rows = rl_prompt_rows(cfg)  # texts and gold answers (SEAM); self.prompts: their token ids
        self.prompts = prompt_token_ids(cfg, self.tokenizer, self.prompt_rows)
        log.info("%d RL prompts", len(self.prompts))
        init_ray(cfg.cluster, self.run_dir)
        # Before the PPO actors exist: RM training gets the machine.
        reward_dir = train_or_reuse_reward_model(cfg, self.run_dir, self.show_progress, precision)
        self.reward_dir = reward_dir  # None with a reward function
        critic_dir = critic_init_dir(reward_dir, self.policy_dir, self.tokenizer, self.run_dir) if uses_critic(cfg.ppo) else None

        # colocate: RolloutActor i and RewardActor i share bundle i of one placement group (one node, one GPU).
        timeout = cfg.cluster.placement_timeout_s
        if cfg.cluster.colocate:
            self.shared_pg = shared_placement_group([(cfg.rollout.resources, cfg.rollout.num_actors),
                                                     (cfg.reward.resources, cfg.reward.num_actors)], "rollout+reward",
                                                    timeout)
        # On resume the RolloutActors load the checkpoint's HF policy, as vLLM loads any HF folder.
        policy = checkpoint / "policy" if checkpoint else self.policy_dir
        self.rollout = ActorGroup(RolloutActor, cfg.rollout.num_actors, cfg.rollout.resources, str(policy),
                                  name="rollout", pg=self.shared_pg, engine=cfg.rollout.engine, dtype=cfg.rollout.dtype,
                                  max_model_len=cfg.rollout.max_model_len, kv_cache_gib=cfg.rollout.kv_cache_gib,
                                  seed=cfg.run.seed, timeout_s=timeout)
        serve_app = None
        if cfg.reward.remote == "serve":
            from .serve_rm import ensure_rm_app

            serve_app = cfg.reward.serve.app
            if ensure_rm_app(cfg, reward_dir):
                self.served_app = serve_app
        self.reward = ActorGroup(RewardActor, cfg.reward.num_actors, cfg.reward.resources,
                                 None if serve_app else reward_dir, name="reward", serve_app=serve_app,
                                 pg=self.shared_pg, function=cfg.reward.function,
                                 function_kwargs=cfg.reward.function_kwargs, mixed_precision=cfg.model.mixed_precision,
                                 batch_size=cfg.reward.batch_size, non_finite=cfg.reward.non_finite, timeout_s=timeout)
        self.learner = make_learner_group(cfg.learner, cfg.ppo, self.policy_dir, critic_dir, cfg.run.seed,
                                          cfg.model.mixed_precision, timeout_s=timeout)
        report_node_precision(rollout_precision, self.rollout)
        report_node_precision(precision, self.reward, self.learner)
        self.weights = WeightSync(cfg.sync.transport, self.learner, [self.rollout], cfg.sync.bucket_mb)
        self.weights.connect()
        if checkpoint:
            restore_ppo_checkpoint(checkpoint, cfg, self.state, self.learner)
        # Rows newer than the checkpoint (or all rows, starting afresh) belong to iterations that will run again.
        dropped = sum(truncate_jsonl(self.run_dir / f, self.state.iteration) for f in ("metrics.jsonl", "samples.jsonl"))
        if dropped:
            log.info("dropped %d metric/sample rows written after iteration %d", dropped, self.state.iteration)
        self.metrics = MetricsLogger(self.run_dir, purge_step=self.state.iteration + 1, cfg=cfg)
        if cfg.run.save_samples:
            self.samples = open(self.run_dir / "samples.jsonl", "a", encoding="utf-8")
        self.order = prompt_order(cfg, len(self.prompts))

    def close(self) -> None:
        """Free the actors and placement groups (a cluster outlives this driver); safe after a failed start."""
        for handle in (self.metrics, self.samples):
            if handle:
                handle.close()
        for group in (self.rollout, self.reward, self.learner):
            if group:
                group.kill()
        if self.shared_pg:
            remove_placement_group(self.shared_pg)
        if self.served_app:
            from ray import serve

            serve.delete(self.served_app)

    def checkpoint(self) -> Path:
        t0 = time.perf_counter()
        path = save_ppo_checkpoint(self.run_dir, self.cfg, self.state, self.learner, self.tokenizer,
                                   self.checkpoint_parts)
        log.info("checkpoint of iteration %d written in %.1f s", self.state.iteration, time.perf_counter() - t0)
        return path

    # ------------------------------------------------------------------ one iteration
    def step(self, iteration: int, extra_row: dict[str, float] | None = None) -> dict[str, float]:
        """One RLHF iteration; returns its metrics row (also written to metrics.jsonl and TensorBoard), which
        extra_row joins (an online round's diagnostics)."""
        timer, t0 = PhaseTimer(iteration), time.perf_counter()
        if self.state.ahead:  # generated while the last iteration learned (rollout.one_step_off_policy)
            batch_index, rollouts = self.state.ahead
            self.state.ahead = None
            timer.seconds["rollout"] = rollouts.seconds  # hidden behind that learn phase, bar its rollout_wait
        else:
            batch_index = self.next_prompts()
            with timer("rollout"):
                rollouts = self.generate(batch_index, iteration)
        with timer("score"):
            scores = self.score(rollouts)
        rollouts, scores, hooked = self.skip_non_finite(rollouts, scores, iteration)
        for hook in self.rollout_hooks:
            with timer("hooks"):
                hooked |= hook(rollouts, scores)
        batch = self.sequences(rollouts, batch_index)
        with timer("experience"):
            exp = self.experience(batch)
        targets = self.fill_buffer(batch, exp, scores, rollouts)
        if self.buffer_filter:
            with timer("filter"):
                hooked |= self.filter_buffer(iteration)
        ahead = self.generate_ahead(iteration)
        with timer("learn"):
            stats, learn_tokens = self.learn()
        if ahead:
            with timer("rollout_wait"):  # the part of the next rollout that learning did not hide
                self.state.ahead = ahead()
        with timer("sync"):
            self.weights.sync()
        # The KL controller and the counters move once the iteration is complete.
        act = batch["action_mask"]
        kl = mean_sequence_kl(targets.kl, act)
        self.state.kl_ctl.update(kl, len(act))
        self.state.iteration = iteration
        row = iteration_metrics(scores, [len(r) for r in rollouts.response_ids], rollouts.finish_reasons, kl,
                                self.state.kl_ctl.value, targets.returns, act, stats, timer.seconds, learn_tokens,
                                len(self.state.buffer)) | hooked | (extra_row or {})
        # Wall time of the whole step, the phases and what runs between them (the benchmark's per-iteration time).
        row["perf/iteration_s"] = time.perf_counter() - t0
        row["fault/actor_restarts"] = float(self.restarts.used)  # in this process, since the run (or its resume) began
        row["perf/samples_per_s"] = len(rollouts) / row["perf/iteration_s"]
        self.record(iteration, row, rollouts, batch_index, scores)
        return row

    def next_prompts(self) -> list[int]:
        """This iteration's prompts (indices into self.prompts) from the seeded order; the cursor is checkpointed."""
        n = self.cfg.ppo.prompts_per_iteration
        batch_index = [self.order[(self.state.cursor + i) % len(self.order)] for i in range(n)]
        self.state.cursor += n
        return batch_index

    def generate(self, batch_index: list[int], iteration: int) -> Rollouts:
        """rollout.n_samples responses per prompt, the prompts spread over the RolloutActors (each its own seed). A
        RolloutActor that dies or hangs (fault.rollout_timeout_s) is restarted, given the current policy, and its
        prompts generated again with the same seed."""
        return concat(self.rollout.run_sharded_resilient(
            "generate", [self.prompts[i] for i in batch_index], budget=self.restarts,
            rank_args=self.rank_sampling(iteration), timeout_s=self.cfg.fault.rollout_timeout_s,
            recover=lambda rank: self.weights.restore()))

    def rank_sampling(self, iteration: int) -> Callable[[int], tuple[SamplingParams]]:
        """Each RolloutActor's sampling for this iteration: its own seed, from run.seed, the iteration and its rank."""
        seed = self.cfg.run.seed * 100003 + iteration * 101
        return lambda rank: (sampling_params(self.cfg, seed + rank),)

    def generate_ahead(self, iteration: int) -> Callable[[], tuple[list[int], Rollouts]] | None:
        """With rollout.one_step_off_policy, start generating iteration+1's responses with the weights the engines
        hold now (before this iteration's update); returns the wait for them. None when off or on the last
        iteration (a run extended past its end generates its next iteration on-policy)."""
        if not self.cfg.rollout.one_step_off_policy or iteration >= self.cfg.total_iterations:
            return None
        batch_index = self.next_prompts()
        refs = self.rollout.call_sharded("generate", [self.prompts[i] for i in batch_index],
                                         rank_args=self.rank_sampling(iteration + 1))
        return lambda: (batch_index, concat(self.rollout.gather(refs)))

    def score(self, rollouts: Rollouts) -> torch.Tensor:
        """The RM score of every (prompt, response), spread over the RewardActors."""
        pairs = list(zip(rollouts.prompt_ids, rollouts.response_ids))
        parts = self.reward.run_sharded_resilient("score", pairs, budget=self.restarts,
                                                  timeout_s=self.cfg.fault.score_timeout_s,
                                                  recover=self._reward_actor_restarted)
        return torch.tensor([s for part in parts for s in part])

    def skip_non_finite(self, rollouts: Rollouts, scores: torch.Tensor, iteration: int):
        """reward.non_finite=skip: every sample of a prompt with a NaN reward leaves the iteration (RewardActors send
        NaN for a non-finite reward); the samples dropped are counted in the iteration's row."""
        if self.cfg.reward.non_finite != "skip":
            return rollouts, scores, {}
        kept, scores, skipped = drop_non_finite_prompts(rollouts, scores)
        if not len(kept):
            raise FloatingPointError(f"iteration {iteration}: every prompt had a non-finite reward "
                                     "(reward.non_finite=skip): nothing left to learn from")
        if skipped:
            log.warning("iteration %d: %d samples skipped, their prompts had a non-finite reward "
                        "(reward.non_finite=skip)", iteration, skipped)
        return kept, scores, {"reward/non_finite_skipped": float(skipped)}

    def _reward_actor_restarted(self, rank: int) -> None:
        for hook in self.reward_restored:
            hook(rank)

    def sequences(self, rollouts: Rollouts, batch_index: list[int]) -> dict[str, torch.Tensor]:
        """Right-padded prompt+response rows with their masks, a row_id and the prompt's index into self.prompts."""
        ids, attn, act = make_sequences(rollouts.prompt_ids, rollouts.response_ids, self.tokenizer.pad_token_id)
        return {"input_ids": ids, "attention_mask": attn, "action_mask": act, "row_id": torch.arange(len(ids)),
                "prompt_index": torch.tensor([batch_index[i] for i in rollouts.prompt_index])}

    def experience(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Reference log-probs, critic values (with a critic) and current-policy log-probs (ppo.old_logprobs=learner),
        the rows sharded over the learner ranks."""
        rows = {k: batch[k] for k in ("input_ids", "attention_mask", "action_mask")}
        shards = ZeroShards.split(len(batch["input_ids"]), len(self.learner), self.cfg.learner.micro_batch_size)
        policy = self.old_logprobs == "learner"
        parts = shards.unpad(self.learner.run_zero_shards("experience", rows, shards, policy))
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}

    def fill_buffer(self, batch: dict, exp: dict, scores: torch.Tensor, rollouts: Rollouts):
        """Per-token rewards (RM score at the last token, -beta*KL on every token), advantages and returns (the
        estimator's; critic-free ones group the rows by prompt); the buffer then holds this iteration's experiences
        (refilled every iteration). The policy log-probs of the KL penalty come from ppo.old_logprobs; the PPO
        ratio's denominator too, except with rollout.one_step_off_policy: then it is the sampling policy's (the
        engine's log-probs, one update older), and the ratio corrects for the staleness."""
        sampled = None  # the engine's log-probs of its samples, placed on the response tokens, where they are used
        if self.cfg.rollout.one_step_off_policy or "old_logprobs" not in exp:
            sampled = action_values(rollouts.response_logprobs, batch["action_mask"])
        logprobs = exp["old_logprobs"] if "old_logprobs" in exp else sampled
        values = exp.get("old_values", torch.zeros_like(logprobs))  # no critic: values unused
        t = compute_targets(scores, logprobs, exp["ref_logprobs"], values, batch["action_mask"], self.cfg.ppo,
                            self.state.kl_ctl.value, self.state.moments, group=batch["prompt_index"])
        self.state.buffer.clear()
        critic = {"old_values": exp["old_values"]} if "old_values" in exp else {}
        if self.cfg.rollout.one_step_off_policy:
            logprobs = sampled
        self.state.buffer.add(batch | critic | {"old_logprobs": logprobs, "advantages": t.advantages,
                                                "returns": t.returns, "scores": scores})
        return t

    def filter_buffer(self, iteration: int) -> dict[str, float]:
        """The buffer-filter hook: keep the rows the filter names (it sees the filled buffer); its metrics."""
        before = len(self.state.buffer)
        keep, metrics = self.buffer_filter(self.state.buffer, iteration)
        if not keep:
            raise ValueError(f"iteration {iteration}: the buffer filter kept no rows of {before}")
        self.state.buffer.filter(keep)
        log.info("iteration %d: the buffer filter kept %d of %d rows", iteration, len(keep), before)
        return metrics

    def learn(self) -> tuple[list[dict], float]:
        """PPO epochs on the learner group over the buffer as it is now (after any filter), sharded so that every rank
        takes the same number of optimizer steps. Returns each rank's stats and the real tokens trained on."""
        data = self.state.buffer.data
        train = {k: v for k, v in data.items() if k not in ("scores", "prompt_index")}
        shards = ZeroShards.split(len(self.state.buffer), len(self.learner), self.cfg.learner.micro_batch_size)
        results = self.learner.run_zero_shards("ppo_update", train, shards)
        self.rows_learned = sorted({r for res in results for r in res["rows"]})
        return [res["stats"] for res in results], float(data["attention_mask"].sum())

    def record(self, iteration: int, row: dict, rollouts: Rollouts, batch_index: list[int], scores: torch.Tensor) -> None:
        """The metrics row, every sample, and a log line."""
        self.metrics.log(iteration, row)
        if self.samples:
            for j in range(len(rollouts)):
                self.samples.write(json.dumps({"step": iteration, "prompt_index": batch_index[rollouts.prompt_index[j]],
                                               "score": scores[j].item(), "finish": rollouts.finish_reasons[j],
                                               "response": rollouts.texts[j]}) + "\n")
            self.samples.flush()
        seconds = {k.removeprefix("time/").removesuffix("_s"): v for k, v in row.items() if k.startswith("time/")}
        log.info("iter %d: reward %.4f, kl %.4f, len %.1f, %s", iteration, row["reward/mean"], row["kl/mean"],
                 row["response/length"], ", ".join(f"{k} {v:.1f}s" for k, v in seconds.items()))


# ---------------------------------------------------------------------- what a run starts from
def rl_prompt_rows(cfg: Config):
    """RL prompts: those of data.prompt_paths, or the configured preference set's train prompts, each with its gold
    answer; only those data.rl_prompts lists."""
    if cfg.data.prompt_paths:
        prompts, reports = load_prompt_rows(cfg.data)
        for report in reports:
            log.info("RL prompts: %s", report.summary())
    else:
        prompts = prompt_dataset(load_preferences(cfg.data).train)
    if cfg.data.rl_prompts:
        prompts = keep_listed_prompts(prompts, cfg.data.rl_prompts)
    if not len(prompts):
        raise ValueError("no RL prompts: " + ("data.prompt_paths gave no prompts" if cfg.data.prompt_paths else
                                              "the configured data gave no training pairs")
                         + (f" listed in data.rl_prompts={cfg.data.rl_prompts}" if cfg.data.rl_prompts else ""))
    return prompts


def prompt_order(cfg: Config, n_prompts: int) -> list[int]:
    """The order in which PPO takes the RL prompts, cycled: a permutation seeded by run.seed, cut to ppo.prompt_pool."""
    order = torch.randperm(n_prompts, generator=torch.Generator().manual_seed(cfg.run.seed)).tolist()
    return order[: cfg.ppo.prompt_pool]


def prompt_token_ids(cfg: Config, tokenizer, rows=None) -> list[list[int]]:
    """RL prompts (default: rl_prompt_rows) rendered (chat template) and cut from the left to fit."""
    return encode_prompts(cfg, tokenizer, rl_prompt_rows(cfg) if rows is None else rows)


def encode_prompts(cfg: Config, tokenizer, rows, room: int | None = None) -> list[list[int]]:
    """Prompt rows rendered (chat template) and tokenized, cut from the left to `room` tokens (default: what the
    rollout leaves for them, rollout.max_model_len - rollout.max_new_tokens)."""
    room = cfg.rollout.max_model_len - cfg.rollout.max_new_tokens if room is None else room
    return [tokenizer(render_prompt(tokenizer, row["prompt"], row["format"], cfg.data.chat_template),
                      add_special_tokens=False)["input_ids"][-room:] for row in rows]


def sampling_params(cfg: Config, seed: int, n: int | None = None) -> SamplingParams:
    """The rollout section's sampling; n responses per prompt (default rollout.n_samples)."""
    r = cfg.rollout
    return SamplingParams(n=r.n_samples if n is None else n, max_tokens=r.max_new_tokens, temperature=r.temperature,
                          top_p=r.top_p, top_k=r.top_k, repetition_penalty=r.repetition_penalty, seed=seed)


def train_or_reuse_reward_model(cfg: Config, run_dir: Path, show_progress: bool = True, precision=None) -> str | None:
    """model.reward as given (None with reward.function); with neither, the run's own RM: reused from <run>/rm when
    a complete one is there, else trained now (the rm section) on an RM learner group freed afterwards."""
    if cfg.model.reward or cfg.reward.function:
        return cfg.model.reward
    rm_run = run_dir / "rm"
    dest = reward_model_save_dir(cfg, rm_run)
    if (dest / "config.json").exists():  # save_hf_atomic: a config.json means a complete save
        log.info("reusing the reward model in %s", dest)
        return str(dest)
    log.info("no model.reward or reward.function: training a reward model first (rm section) into %s", dest)
    rm_run.mkdir(parents=True, exist_ok=True)
    summary = run_rm_train(cfg, rm_run, show_progress=show_progress, precision=precision)
    log.info("reward model: eval accuracy %.4f on %d held-out pairs after %d steps", summary.get("eval/accuracy", math.nan),
             summary["eval_pairs"], summary["steps"])
    return summary["reward_model"]


def critic_init_dir(reward_dir: str | None, policy_dir: Path, tokenizer, run_dir: Path) -> Path:
    """The critic starts from the RM; with a programmatic reward, from the policy with a fresh value head."""
    if reward_dir:
        return Path(reward_dir)
    out = run_dir / "critic_init"
    if not (out / "config.json").exists():
        save_hf_atomic(reward_model_from_lm(policy_dir, pad_token_id=tokenizer.pad_token_id), tokenizer, out)
    return out
