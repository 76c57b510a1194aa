"""Online iterative RLHF (ALGORITHMS.md §2.3): rounds around a live PPOTrainer.

    round r:  meta set = prompts x k responses sampled from the current policy (RolloutActors)
              r > 1: RM update by online.rm_update (MetaRM | vanilla | labeled by the oracle | frozen) on an RM learner
                     group that lives across rounds, then the new RM pushed to every RewardActor (and the critic)
              diagnostics on the meta set (proxy gaps before/after, proxy-gold agreement) join the round's first row
              ppo.iterations PPO iterations (PPOTrainer.step), the policy continuing

The RM learner's state (DeepSpeed, the MetaRM ascent's Adam, labeled pairs) goes into every PPO checkpoint, so a
resume anywhere in a round continues the same RM. With online.rm_learner released (auto on CPU) the RM learner's
actors stop after each update, its state parked under <run>/online/rm_learner; the next update rebuilds them from it.
"""

import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import ray
import torch

from actors.group import ActorGroup
from actors.reward import RewardActor
from actors.rm_learner import make_rm_learner_group
from actors.weight_sync import Target, WeightSync
from rlhf_ray.config import ConfigError
from rlhf_ray.models import load_tokenizer, rm_sequence
from rlhf_ray.models.assets import resolve_model
from rlhf_ray.ppo.advantages import uses_critic
from rlhf_ray.rollout.types import Rollouts, concat
from rlhf_ray.round_diagnostics import round_diagnostics, within_prompt_gaps
from rlhf_ray.run_dir import load_state
from rlhf_ray.training.rm_data import prepare_rm_data, total_steps

from .evaluate import gold_judge
from .rm_jobs import score_sequences_on
from .rm_train import check_learner_batch, train_rm
from .testing import hang_if_asked
from .trainer import PPOTrainer, sampling_params

log = logging.getLogger("rlhf_ray.online")

STATE = "online_state.pt"


def link_tree(src: Path, dest: Path) -> None:
    """dest: a copy of src whose files are hard links where the filesystem allows (no second copy of GBs of state)."""
    def link_or_copy(a, b):
        try:
            os.link(a, b)
        except OSError:
            shutil.copy2(a, b)

    shutil.copytree(src, dest, copy_function=link_or_copy)


@dataclass
class MetaSet:
    """k responses of the current policy to each of M prompts: RM token sequences [M][k] and the rollouts."""

    sequences: list[list[list[int]]]
    rollouts: Rollouts

    @property
    def flat(self) -> list[list[int]]:
        return [s for prompt in self.sequences for s in prompt]

    @property
    def pairs(self) -> list[tuple[list[int], list[int]]]:
        """(prompt, response) token pairs, as RewardActors score them (the same sequences as flat)."""
        return list(zip(self.rollouts.prompt_ids, self.rollouts.response_ids))

    def shaped(self, scores: torch.Tensor) -> torch.Tensor:
        return scores.view(len(self.sequences), -1)


class OnlineRounds:
    """The round loop's state and actors beside a started PPOTrainer: the RM learner group, the gold judge."""

    def __init__(self, trainer: PPOTrainer, show_progress: bool = True):
        self.trainer, self.cfg, self.show_progress = trainer, trainer.cfg, show_progress
        self.online = self.cfg.online
        self.rm_group = self.gold = self.data = self.rm_steps = None
        self.labeled: list[dict] = []  # oracle-labeled pairs added so far (re-added on resume)
        self.rm_updates = 0
        self.parked = trainer.run_dir / "online" / "rm_learner"  # a released RM learner's state between updates

    @property
    def releases_rm(self) -> bool:
        """Whether the RM learner's actors stop between updates (online.rm_learner; auto: on CPU learners)."""
        if self.online.rm_learner == "auto":
            return not self.cfg.learner.resources.num_gpus
        return self.online.rm_learner == "released"

    @property
    def updates_rm(self) -> bool:
        return self.online.rounds > 1 and self.online.rm_update != "frozen"

    def round_of(self, iteration: int) -> int:
        return (iteration - 1) // self.cfg.ppo.iterations + 1

    def starts_round(self, iteration: int) -> bool:
        return (iteration - 1) % self.cfg.ppo.iterations == 0

    # ------------------------------------------------------------------ lifetime
    def start(self, checkpoint: Path | None = None) -> None:
        cfg, trainer = self.cfg, self.trainer
        # A gold judge named, or found beside relabeled data in a run of rounds (rounds 1 stays a plain PPO run).
        gold = self.online.gold or (gold_judge(cfg.data.relabel_with) if self.online.rounds > 1 else None)
        if self.online.rm_update == "labeled" and self.online.rounds > 1 and not gold:
            raise ConfigError("online.rm_update=labeled needs an oracle: online.gold=<gold RM folder>, or "
                              "data.relabel_with=<a `rlhf-ray gold build` run folder>")
        if gold:
            gold = str(resolve_model(gold))
            if load_tokenizer(gold).get_vocab() != trainer.tokenizer.get_vocab():
                raise ConfigError(f"online.gold {gold}: its tokenizer differs from the policy's; the gold RM scores "
                                  "the policy's token ids, so it must share the policy's tokenizer")
            self.gold = ActorGroup(RewardActor, 1, cfg.reward.resources, gold, name="gold",
                                   mixed_precision=cfg.model.mixed_precision, batch_size=cfg.reward.batch_size,
                                   timeout_s=cfg.cluster.placement_timeout_s)
            trainer.rollout_hooks.append(self.gold_reward)
            log.info("gold RM %s judges every iteration's samples", gold)
        if not self.updates_rm:
            return
        if trainer.reward_dir is None:
            raise ConfigError("online rounds update a reward model, but the run has none (reward.function)")
        # The RM's data as `rm train` prepares it (denoising included); the RM continues the run's own.
        self.data = prepare_rm_data(cfg.model_copy(update={"model": cfg.model.model_copy(update={"reward": trainer.reward_dir})}))
        check_learner_batch(cfg)
        self.rm_steps = self.online.rm_steps or total_steps(len(self.data.train_rows), cfg.rm.model_copy(
            update={"epochs": 1, "max_steps": None}), "online RM update")
        self.pairs_ref = ray.put(self.data.pairs)
        resumed = checkpoint is not None and (checkpoint / STATE).exists()
        if resumed:
            self.read_state(checkpoint)  # before any RM group exists: it takes the labeled pairs at creation
        shutil.rmtree(self.parked, ignore_errors=True)  # only the checkpoint's state counts on a (re)start
        if self.online.rm_init == "continue" and not self.releases_rm:
            self.rm_group = self.make_rm_group()
        trainer.checkpoint_parts.append(self.save)
        trainer.reward_restored.append(lambda rank: self.give_rewards_the_current_rm())
        if resumed:
            self.restore(checkpoint)

    @property
    def shape(self) -> dict[str, int]:
        return {"online.rounds": self.online.rounds, "ppo.iterations": self.cfg.ppo.iterations,
                "online.rm_steps": self.rm_steps}

    def make_rm_group(self) -> ActorGroup:
        """continue: the run's RM, its LR schedule spanning every round's update; sft: a fresh head on the initial
        policy, scheduled over one round. Labeled pairs of earlier rounds are added."""
        cfg, continue_ = self.cfg, self.online.rm_init == "continue"
        init, from_lm = (self.data.init_dir, False) if continue_ else (str(self.trainer.policy_dir), True)
        steps = self.rm_steps * ((self.online.rounds - 1) if continue_ else 1)
        group = make_rm_learner_group(cfg.rm, cfg.learner.world_size, cfg.learner.resources, init, from_lm, steps,
                                      self.pairs_ref, cfg.learner.zero_stage, cfg.run.seed, cfg.model.mixed_precision,
                                      metarm=cfg.metarm if self.online.rm_update == "metarm" else None,
                                      timeout_s=cfg.cluster.placement_timeout_s)
        if self.labeled:
            group.run("add_pairs", self.labeled)
        return group

    def acquire_rm_group(self) -> ActorGroup:
        """The RM learner for an update or a push: the resident one, or one rebuilt from the parked state."""
        if self.rm_group is None:
            self.rm_group = self.make_rm_group()
            if self.parked.exists():
                self.rm_group.run("load_state", str(self.parked))
        return self.rm_group

    def release_rm_group(self, save: bool = True) -> None:
        """released: park the RM learner's state (unless unchanged since it was loaded) and stop its actors."""
        if not self.releases_rm or self.rm_group is None:
            return
        if save:
            staging = self.parked.with_name(self.parked.name + ".staging")
            shutil.rmtree(staging, ignore_errors=True)
            self.rm_group.run("save_state", str(staging))
            shutil.rmtree(self.parked, ignore_errors=True)
            staging.rename(self.parked)
        self.rm_group.kill()
        self.rm_group = None

    def close(self) -> None:
        for group in (self.rm_group, self.gold):
            if group:
                group.kill()
        shutil.rmtree(self.parked.parent, ignore_errors=True)  # the checkpoints hold what a resume needs

    def save(self, staging: Path) -> None:
        """A checkpoint part: the RM learner's whole state and the round loop's own."""
        torch.save({"labeled": self.labeled, "rm_updates": self.rm_updates, "shape": self.shape}, staging / STATE)
        if self.rm_group:
            self.rm_group.run("save_state", str(staging / "rm_learner"))
        elif self.parked.exists():  # released: the state parked after the last update
            link_tree(self.parked, staging / "rm_learner")

    def read_state(self, checkpoint: Path) -> None:
        """The round loop's own state (labeled pairs, RM updates done) from a checkpoint of the same round shape."""
        saved = load_state(checkpoint / STATE)
        if saved["shape"] != self.shape:
            # Round boundaries and the RM's LR schedule are functions of these: a resume could not continue the run.
            raise ConfigError(f"{checkpoint} was written by a run of {saved['shape']}; this config has {self.shape}. "
                              "Resume with the same online.rounds, ppo.iterations and online.rm_steps")
        self.labeled, self.rm_updates = saved["labeled"], saved["rm_updates"]

    def restore(self, checkpoint: Path) -> None:
        """The RM learner's state from the checkpoint, and the current RM to the RewardActors."""
        saved = checkpoint / "rm_learner"
        if saved.exists():
            if self.releases_rm:
                link_tree(saved, self.parked)
            else:
                if self.rm_group is None:  # rm_init sft, resumed inside a round: this round's RM
                    self.rm_group = self.make_rm_group()
                self.rm_group.run("load_state", str(saved))
        self.give_rewards_the_current_rm()  # the critic is the checkpoint's own
        log.info("online: restored the RM learner of %s (%d RM updates so far, %d labeled pairs)", checkpoint,
                 self.rm_updates, len(self.labeled))

    def give_rewards_the_current_rm(self) -> None:
        """RewardActors made with the initial RM (a resume, a restarted actor) get the current one, if it moved."""
        if not self.rm_updates:
            return
        resident = self.rm_group is not None
        self.acquire_rm_group()
        self.push(reinit_critic=False)
        if not resident:
            self.release_rm_group(save=False)

    # ------------------------------------------------------------------ one round's start
    def begin_round(self, r: int, step: int) -> dict[str, float]:
        """Round r's meta set, RM update and push (r > 1), and diagnostics; the row joins iteration `step`'s."""
        t0 = time.perf_counter()
        meta = self.sample_meta_set(r)
        before = meta.shaped(self.trainer.score(meta.rollouts))  # the RM that PPO uses, as PPO calls it
        row: dict[str, float] = {"round/index": float(r), "round/meta_prompts": float(len(meta.sequences))}
        after = before
        if r > 1 and self.updates_rm:
            row |= self.update_rm(r, meta)
            hang_if_asked(f"rm_update:{r}")
            self.push(reinit_critic=self.online.critic_init == "rm" and uses_critic(self.cfg.ppo))
            after = meta.shaped(self.trainer.score(meta.rollouts))
            own = score_sequences_on(self.rm_group, meta.flat, self.cfg.reward.batch_size)
            row["round/push_max_abs_diff"] = float((after.flatten() - own).abs().max())
            t_park = time.perf_counter()
            self.release_rm_group()
            if self.releases_rm:
                row["time/rm_park_s"] = time.perf_counter() - t_park
        gold = meta.shaped(self.gold_scores(meta.pairs)) if self.gold else None
        row |= round_diagnostics(after, gold)
        row["round/gap_mean_before_update"] = float(within_prompt_gaps(before).mean())
        self.trainer.metrics.histogram("round/gaps", within_prompt_gaps(after), step)
        row["time/round_start_s"] = time.perf_counter() - t0
        log.info("round %d: %s", r, ", ".join(f"{k.removeprefix('round/')} {v:.4g}" for k, v in row.items()))
        return row

    def sample_meta_set(self, r: int) -> MetaSet:
        """metarm.k responses of the current policy to each of the round's meta prompts (a seeded draw of RL prompts)."""
        cfg, trainer, k = self.cfg, self.trainer, self.cfg.metarm.k
        n = self.online.meta_prompts or (self.rm_steps or 1) * cfg.metarm.meta_batch_prompts
        n = min(n, len(trainer.prompts))
        order = torch.randperm(len(trainer.prompts), generator=torch.Generator().manual_seed(cfg.run.seed * 7919 + r))
        index = order[:n].tolist()
        seed = cfg.run.seed * 100003 + 10_000_000 + r * 101  # apart from the iterations' sampling seeds
        rollouts = concat(trainer.rollout.run_sharded("generate", [trainer.prompts[i] for i in index],
                                                      rank_args=lambda rank: (sampling_params(cfg, seed + rank, n=k),)))
        eos = trainer.tokenizer.eos_token_id
        flat = [rm_sequence(p, resp, eos) for p, resp in zip(rollouts.prompt_ids, rollouts.response_ids)]
        return MetaSet([flat[m * k : (m + 1) * k] for m in range(n)], rollouts)

    def update_rm(self, r: int, meta: MetaSet) -> dict[str, float]:
        """rm_steps RM steps: MetaRM (meta term on this meta set) or vanilla on the same pairs in the same order;
        labeled first adds oracle-ordered pairs of the policy's responses. Returns the update's summary."""
        cfg, o = self.cfg, self.online
        t0 = time.perf_counter()
        row: dict[str, float] = {}
        if o.rm_init == "sft":  # a fresh RM each round: nothing of the last one is loaded
            if self.rm_group:
                self.rm_group.kill()
            self.rm_group = self.make_rm_group()
        else:
            self.acquire_rm_group()
        if o.rm_update == "labeled":
            row |= self.add_labeled_pairs(meta)
        train_index = self.data.train_index + list(range(len(self.data.pairs), len(self.data.pairs) + len(self.labeled)))
        rows: list[dict] = []
        rm = cfg.rm.model_copy(update={"eval_at_start": False, "eval_every": self.rm_steps, "save_every": None})
        results = train_rm(self.rm_group, self.data, rm, cfg.run.seed * 1000 + r, self.rm_steps,
                           on_row=lambda step, values: rows.append(values), show_progress=self.show_progress,
                           meta=meta.sequences if o.rm_update == "metarm" else None,
                           meta_batch=cfg.metarm.meta_batch_prompts, train_index=train_index)
        self.rm_updates += 1
        for key in ("train/loss", "train/accuracy", "train/grad_norm", "metarm/J", "metarm/delta_norm"):
            values = [v[key] for v in rows if key in v]
            if values:
                row[f"round/rm_{key.replace('/', '_')}"] = sum(values) / len(values)
        row |= {"round/proxy_eval_accuracy": results.get("eval/accuracy", float("nan")),
                "round/rm_steps": float(self.rm_steps), "time/rm_update_s": time.perf_counter() - t0}
        return row

    def add_labeled_pairs(self, meta: MetaSet) -> dict[str, float]:
        """The oracle orders responses 0 and 1 of every meta prompt; these pairs join the RM's data (ties skipped)."""
        k = self.cfg.metarm.k
        gold = self.gold_scores([meta.pairs[m * k + i] for m in range(len(meta.sequences)) for i in (0, 1)]).view(-1, 2)
        new = [{"chosen_ids": seqs[0], "rejected_ids": seqs[1]} if g[0] > g[1] else
               {"chosen_ids": seqs[1], "rejected_ids": seqs[0]}
               for seqs, g in zip(meta.sequences, gold.tolist()) if g[0] != g[1]]
        self.labeled += new
        self.rm_group.run("add_pairs", new)
        log.info("labeled: %d new pairs from the oracle (%d ties skipped), %d in all", len(new),
                 len(meta.sequences) - len(new), len(self.labeled))
        return {"round/labeled_pairs": float(len(new)), "round/labeled_ties": float(len(meta.sequences) - len(new))}

    def push(self, reinit_critic: bool) -> None:
        """The RM learner's weights to every RewardActor (and a fresh critic from them). One object-store blob: once
        per round, so no standing broadcast group is kept for it."""
        targets = [self.trainer.reward]
        if reinit_critic:
            targets.append(Target(self.trainer.learner, "reinit_critic", collective=False))
        WeightSync("object_store", self.rm_group, targets).sync()

    # ------------------------------------------------------------------ scoring
    def gold_scores(self, pairs: list[tuple[list[int], list[int]]]) -> torch.Tensor:
        return torch.tensor([s for part in self.gold.run_sharded("score", pairs) for s in part])

    def gold_reward(self, rollouts: Rollouts, scores: torch.Tensor) -> dict[str, float]:
        """A rollout hook: the gold RM's mean reward of this iteration's samples."""
        return {"reward/gold_mean": float(self.gold_scores(list(zip(rollouts.prompt_ids, rollouts.response_ids))).mean())}
