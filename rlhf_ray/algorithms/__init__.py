"""The RLHF math: pure torch functions, no distribution code. Registries let configs pick by name."""

from .bradley_terry import bradley_terry_loss, preference_accuracy
from .contrastive import (
    CONTRASTIVE_PRESETS,
    ContrastiveConfig,
    contrastive_inputs,
    contrastive_loss,
    simcse_loss,
    sinkhorn,
    swav_loss,
    total_rm_loss,
)
from .gae import gae_advantages
from .kl import AdaptiveKLController, FixedKLController, kl_k1, kl_k2, kl_k3, kl_penalty, make_kl_controller
from .masked import (
    entropy_from_logits,
    logprobs_from_logits,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
)
from .outcome_advantages import grpo_advantages, reinforce_pp_advantages, rloo_advantages, sequence_returns
from .ppo_loss import aggregate, clipped_value_loss, ppo_policy_loss, row_loss_weights
from .preference_strength import (
    adaptive_margin,
    apply_flip,
    flip_bottom,
    flipped_strength,
    preference_strength,
    smoothing_weights,
    strength_groups,
)
from .registry import ADVANTAGE_ESTIMATORS, KL_ESTIMATORS, POLICY_LOSSES, Registry
from .reward_shaping import RunningMoments, last_token_index, normalize_scores, shape_token_rewards

__all__ = [
    "ADVANTAGE_ESTIMATORS", "KL_ESTIMATORS", "POLICY_LOSSES", "Registry",
    "AdaptiveKLController", "FixedKLController", "RunningMoments",
    "aggregate", "bradley_terry_loss", "clipped_value_loss", "entropy_from_logits", "gae_advantages",
    "grpo_advantages", "reinforce_pp_advantages", "rloo_advantages", "sequence_returns",
    "kl_k1", "kl_k2", "kl_k3", "kl_penalty", "last_token_index", "logprobs_from_logits",
    "make_kl_controller", "masked_mean", "masked_sum", "masked_var", "masked_whiten", "normalize_scores",
    "ppo_policy_loss", "preference_accuracy", "row_loss_weights", "shape_token_rewards",
    # Secrets of RLHF II reward-model methods
    "CONTRASTIVE_PRESETS", "ContrastiveConfig", "adaptive_margin", "apply_flip", "contrastive_inputs",
    "contrastive_loss", "flip_bottom", "flipped_strength", "preference_strength", "simcse_loss", "sinkhorn",
    "smoothing_weights", "strength_groups", "swav_loss", "total_rm_loss",
]
