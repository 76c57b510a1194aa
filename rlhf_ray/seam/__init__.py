"""SEAM's data side: worse answers per prompt (Contrast, GPT, Adv), built once and cached, and the scoring of
prompts from a policy's log-probs and an RM's rewards. The score's math is in rlhf_ray.algorithms.seam."""

from .adv import adv_answers, perturb
from .augment import augment_pairs, candidate_pairs, seam_column
from .contrast import ENCODER, contrast_answers, embed, nearest_others
from .degrade import Degraded, degrade_with_endpoint, degrade_with_engine, degrader_messages, keep_worse
from .scoring import FlatAnswers, SeamResult, combine, flatten_answers, score_prompts
from .worse_answers import (
    VARIANTS,
    WorseAnswerCache,
    build_worse_answers,
    builder_settings,
    cache_key,
    prompt_seed,
    weights_id,
)

__all__ = [
    "ENCODER",
    "VARIANTS",
    "Degraded",
    "FlatAnswers",
    "SeamResult",
    "WorseAnswerCache",
    "adv_answers",
    "augment_pairs",
    "build_worse_answers",
    "candidate_pairs",
    "builder_settings",
    "cache_key",
    "combine",
    "contrast_answers",
    "degrade_with_endpoint",
    "degrade_with_engine",
    "degrader_messages",
    "embed",
    "flatten_answers",
    "keep_worse",
    "nearest_others",
    "perturb",
    "prompt_seed",
    "score_prompts",
    "seam_column",
    "weights_id",
]
