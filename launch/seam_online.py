"""SeamFilter: the PPOTrainer's buffer filter under seam.filter (ALGORITHMS.md §6.6).

After an iteration's experiences fill the buffer, every prompt in it that has a gold answer gets a SEAM score from
the *current* policy (teacher-forced log-probs on the RolloutActors, which hold the weights that sampled the
iteration) and the *current* RM (the RewardActors), over [gold, seam.k worse answers] that the SeamActor built once
and cached. The lowest-SEAM seam.drop_fraction of the scored prompts leave the buffer with all their rows
(seam.filter: random drops as many at random, the control); prompts that cannot be scored (no gold answer) pass
and are counted.
"""

import logging
import math
from pathlib import Path

import torch

from actors.group import ActorGroup
from actors.seam import SeamActor
from rlhf_ray.algorithms.seam import lowest_fraction, random_fraction
from rlhf_ray.models.assets import cache_dir
from rlhf_ray.ppo.replay_buffer import ReplayBuffer
from rlhf_ray.seam import combine, flatten_answers

from .seam import distribution, seam_prompt_ids

log = logging.getLogger("rlhf_ray.seam")


class SeamFilter:
    def __init__(self, trainer):
        self.trainer, self.cfg = trainer, trainer.cfg
        self.group: ActorGroup | None = None
        self.prompt_ids: dict[int, list[int]] = {}  # prompt index -> its ids with room for an answer
        self.last_scores: dict[int, float] = {}  # the last iteration's score per scorable prompt (NaN: unscored)

    def start(self) -> None:
        cfg, rows = self.cfg, self.trainer.prompt_rows
        self.texts, self.golds = list(rows["prompt"]), list(rows["gold"])
        cache = Path(cfg.seam.cache or cache_dir() / "seam") / f"{cfg.seam.variant}.jsonl"
        # The degrader's engine (gpt) takes what a RolloutActor takes; other variants need a CPU at most.
        resources = cfg.rollout.resources if cfg.seam.variant == "gpt" else cfg.rollout.resources.model_copy(
            update={"num_gpus": 0.0})
        self.group = ActorGroup(SeamActor, 1, resources, cfg.model_dump(), str(cache), (self.texts, self.golds),
                                name="seam", timeout_s=cfg.cluster.placement_timeout_s)
        self.group.run("ready")
        log.info("SEAM filter: %s of the lowest-SEAM %.0f%% of each iteration's prompts (%s worse answers, k=%d, "
                 "estimator %s)", "random drop" if cfg.seam.filter == "random" else "drop",
                 100 * cfg.seam.drop_fraction, cfg.seam.variant, cfg.seam.k, cfg.seam.estimator)

    def close(self) -> None:
        if self.group:
            self.group.kill()

    def __call__(self, buffer: ReplayBuffer, iteration: int) -> tuple[list[int], dict[str, float]]:
        s, tr = self.cfg.seam, self.trainer
        row_prompt = buffer.data["prompt_index"].tolist()
        prompts = sorted(set(row_prompt))
        scorable = [p for p in prompts if self.golds[p].strip()]
        worse, built = self.group.run("worse_answers", [self.texts[p] for p in scorable],
                                      [self.golds[p] for p in scorable])[0]
        for p in scorable:
            if p not in self.prompt_ids:
                self.prompt_ids[p] = seam_prompt_ids(self.cfg, tr.tokenizer, [tr.prompt_rows[p]])[0]
        flat = flatten_answers([self.prompt_ids[p] for p in scorable], [self.golds[p] for p in scorable], worse,
                               tr.tokenizer, s.max_answer_tokens)
        eos = tr.tokenizer.eos_token_id
        lps = [lp for part in tr.rollout.run_sharded("answer_logprobs", [(p, a + [eos]) for p, a in
                                                                           zip(flat.prompt_ids, flat.answer_ids)])
               for lp in part]
        rewards = [r for part in tr.reward.run_sharded("score", flat.reward_pairs()) for r in part]
        res = combine(flat, [sum(lp) for lp in lps], [len(lp) for lp in lps], rewards, s.estimator, s.length_penalty)
        if s.filter == "seam":
            dropped = lowest_fraction(res.scores, s.drop_fraction)
        else:  # the control: as many, at random; seeded by the run and the iteration, so a resume drops the same
            gen = torch.Generator().manual_seed(self.cfg.run.seed * 1_000_003 + iteration)
            dropped = random_fraction(res.scores, s.drop_fraction, gen)
        self.last_scores = dict(zip(scorable, res.scores.tolist()))
        gone = {scorable[i] for i in dropped}
        keep = [i for i, p in enumerate(row_prompt) if p not in gone]
        scored = res.scores[~res.scores.isnan()]
        if len(scored) and tr.metrics:
            tr.metrics.histogram("seam/scores", scored, iteration)
        metrics = {"seam/prompts": len(prompts), "seam/scored": len(scored),
                   "seam/unscored": len(prompts) - len(scored), "seam/no_gold": len(prompts) - len(scorable),
                   "seam/dropped_prompts": len(gone), "seam/dropped_rows": len(row_prompt) - len(keep),
                   "seam/worse_built": built, "seam/misjudgement_rate": res.misjudgement_rate(),
                   "seam/nan_answers": res.nan_answers}
        if len(scored):  # mean, std, min, max and quantiles: the same summary as `seam score` writes
            metrics |= {f"seam/{k}": v for k, v in distribution(res.scores).items() if k != "scored"}
            metrics["seam/dropped_max"] = max((float(res.scores[i]) for i in dropped), default=math.nan)
        return keep, metrics
