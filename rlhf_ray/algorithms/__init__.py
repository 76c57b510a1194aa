"""The RLHF math: pure torch functions, no distribution code. Registries let configs pick by name."""

from .bradley_terry import bradley_terry_loss, preference_accuracy
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
from .ppo_loss import aggregate, clipped_value_loss, ppo_policy_loss
from .registry import ADVANTAGE_ESTIMATORS, KL_ESTIMATORS, POLICY_LOSSES, Registry
from .reward_shaping import RunningMoments, last_token_index, normalize_scores, shape_token_rewards

__all__ = [
    "ADVANTAGE_ESTIMATORS", "KL_ESTIMATORS", "POLICY_LOSSES", "Registry",
    "AdaptiveKLController", "FixedKLController", "RunningMoments",
    "aggregate", "bradley_terry_loss", "clipped_value_loss", "entropy_from_logits", "gae_advantages",
    "kl_k1", "kl_k2", "kl_k3", "kl_penalty", "last_token_index", "logprobs_from_logits",
    "make_kl_controller", "masked_mean", "masked_sum", "masked_var", "masked_whiten", "normalize_scores",
    "ppo_policy_loss", "preference_accuracy", "shape_token_rewards",
]
