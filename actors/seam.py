"""SeamActor: builds and caches SEAM's worse answers for the prompts an online run meets (ALGORITHMS.md §6.6).

It holds what building needs and scoring does not: the degrader engine of the gpt variant (its own engine, since
the degrader stays the initial policy while the RolloutActors move on), or the sentence encoder of contrast. The
scoring itself borrows the RolloutActors (current policy) and RewardActors (current RM): they already hold the
weights SEAM must read, kept current by the run's own weight sync, and sit idle while the buffer is filtered.
"""

from rlhf_ray.config import Config
from rlhf_ray.models import load_tokenizer
from rlhf_ray.models.assets import resolve_model
from rlhf_ray.seam import (
    WorseAnswerCache,
    build_worse_answers,
    builder_settings,
    degrade_with_endpoint,
    keep_worse,
)
from rlhf_ray.seam.degrade import sample_degraded

from .rollout import RolloutActor


class SeamActor:
    def __init__(self, config: dict, cache_path: str, pool: tuple[list[str], list[str]], rank: int = 0):
        self.cfg = Config.model_validate(config)
        s, r = self.cfg.seam, self.cfg.rollout
        self.cache = WorseAnswerCache(cache_path)
        self.settings = builder_settings(self.cfg)
        self.pool = pool  # every RL prompt and gold answer: contrast neighbours do not depend on the batch
        self.encoder = None
        if s.variant == "contrast":  # one retrieval over the whole pool, cached: later batches read the cache
            self.encoder = resolve_model(s.encoder)
            build_worse_answers("contrast", *pool, s.k, s.seed, self.cache, self.settings, encoder_dir=self.encoder,
                                pool=pool)
        self.degrader = self.tokenizer = None
        if s.variant == "gpt" and not s.degrader_endpoint:
            model = resolve_model(s.degrader or self.cfg.model.policy)
            self.degrader = RolloutActor(str(model), engine=r.engine, dtype=r.dtype, max_model_len=r.max_model_len,
                                         kv_cache_gib=r.kv_cache_gib)
            self.tokenizer = load_tokenizer(model)
        self.stats = {"dropped_empty": 0, "dropped_gold_copies": 0, "dropped_repeats": 0}

    def ready(self) -> bool:
        return True

    def _degrade(self, questions, golds, k, seeds) -> list[list[str]]:
        s, r = self.cfg.seam, self.cfg.rollout
        if s.degrader_endpoint:
            out = degrade_with_endpoint(s.degrader_endpoint, s.degrader, questions, golds, k, seeds,
                                        s.degrader_max_tokens, s.degrader_temperature)
        else:
            out = keep_worse(sample_degraded(self.degrader.engine, self.tokenizer, questions, golds, k, seeds,
                                             s.degrader_max_tokens, s.degrader_temperature,
                                             max_prompt_tokens=r.max_model_len - s.degrader_max_tokens), golds)
        self.stats["dropped_empty"] += out.dropped_empty
        self.stats["dropped_gold_copies"] += out.dropped_gold
        self.stats["dropped_repeats"] += out.dropped_repeats
        return out.answers

    def worse_answers(self, prompts: list[str], golds: list[str]) -> tuple[list[list[str]], int]:
        """seam.k worse answers per prompt (fewer where the builder dropped some), and how many prompts were built
        now (the rest came from the cache)."""
        s = self.cfg.seam
        before = len(self.cache.rows)
        worse = build_worse_answers(s.variant, prompts, golds, s.k, s.seed, self.cache, self.settings, self._degrade,
                                    self.encoder, self.pool)
        return worse, len(self.cache.rows) - before

    def degrader_stats(self) -> dict:
        return dict(self.stats)
