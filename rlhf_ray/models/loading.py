"""Load the four RLHF models and the tokenizer from HF directories."""

from pathlib import Path

from transformers import (
    AutoModelForCausalLM,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
)

from ..device import torch_dtype
from .reward_model import as_value_model


def load_tokenizer(path: str | Path, padding_side: str = "right"):
    tok = AutoTokenizer.from_pretrained(str(path))
    if tok.pad_token is None:
        # Safe because rewards and losses use attention masks, never pad ids.
        tok.pad_token = tok.eos_token
    tok.padding_side = padding_side
    return tok


def load_policy(path: str | Path, dtype: str = "float32") -> PreTrainedModel:
    return AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype(dtype))


def load_reference(path: str | Path, dtype: str = "float32") -> PreTrainedModel:
    """The frozen SFT policy for the KL term."""
    model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch_dtype(dtype)).eval()
    return model.requires_grad_(False)


def load_reward_model(path: str | Path, dtype: str = "float32", trainable: bool = False) -> PreTrainedModel:
    model = AutoModelForSequenceClassification.from_pretrained(str(path), dtype=torch_dtype(dtype))
    if model.config.num_labels != 1:
        raise ValueError(f"{path}: a reward model needs num_labels=1, found {model.config.num_labels}")
    return model if trainable else model.eval().requires_grad_(False)


def load_critic(reward_model_path: str | Path, dtype: str = "float32") -> PreTrainedModel:
    """The critic starts from the reward model's weights (MOSS; Secrets of RLHF II App. B.2); calling it gives the
    value of every position (as_value_model)."""
    return as_value_model(load_reward_model(reward_model_path, dtype, trainable=True))
