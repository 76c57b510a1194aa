"""Models: tiny test models, the SmolLM2 asset builder, loading, and the scalar-head reward model."""

from .loading import load_critic, load_policy, load_reference, load_reward_model, load_tokenizer
from .reward_model import (
    add_layer_dropout,
    as_value_model,
    reward_model_from_lm,
    rm_sequence,
    score_sequences,
    sequence_rewards,
    token_values,
)
from .tiny import build_tiny_llama, build_tiny_tokenizer

__all__ = [
    "add_layer_dropout", "as_value_model", "build_tiny_llama", "build_tiny_tokenizer", "load_critic", "load_policy", "load_reference",
    "load_reward_model", "load_tokenizer", "reward_model_from_lm", "rm_sequence", "score_sequences", "sequence_rewards", "token_values",
]
