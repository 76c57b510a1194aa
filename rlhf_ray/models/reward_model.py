"""Reward model = causal-LM backbone + Linear(hidden, 1, bias=False) read at the last real token.

It is stored as the standard `*ForSequenceClassification` (num_labels=1) of the backbone's family, so
`transformers` reloads it with AutoModelForSequenceClassification. We compute the reward ourselves
from the attention mask (not from pad ids), so padding on either side and pad == eos are both safe.
The critic is the same network read at every token.
"""

import contextlib
import functools
import logging
from pathlib import Path

import torch
from transformers import AutoModelForSequenceClassification, PreTrainedModel

from ..algorithms import last_token_index
from ..device import torch_dtype


def reward_model_from_lm(lm_path: str | Path, dtype: str = "float32", pad_token_id: int | None = None) -> PreTrainedModel:
    """A fresh scalar head on a causal LM's backbone (MOSS: initialise the RM from the SFT model)."""
    with _quiet_load_report():  # its MISSING score.weight is the fresh head we asked for; anything else is said below
        model, info = AutoModelForSequenceClassification.from_pretrained(
            str(lm_path), num_labels=1, dtype=torch_dtype(dtype), output_loading_info=True)
    missing = [k for k in info["missing_keys"] if not k.startswith("score.")]
    if missing or info["mismatched_keys"]:
        logging.getLogger("rlhf_ray").warning("reward model from %s: backbone weights not loaded: %s", lm_path,
                                              missing + [str(k) for k in info["mismatched_keys"]])
    if pad_token_id is not None:
        model.config.pad_token_id = pad_token_id
    return model


@contextlib.contextmanager
def _quiet_load_report():
    """transformers' LOAD REPORT (a warning listing missing keys) left out while the block runs."""
    logger = logging.getLogger("transformers.modeling_utils")
    drop = lambda record: "LOAD REPORT" not in record.getMessage()  # noqa: E731
    logger.addFilter(drop)
    try:
        yield
    finally:
        logger.removeFilter(drop)


def _head(model: PreTrainedModel) -> torch.nn.Module:
    head = getattr(model, "score", None)
    if head is None:
        raise TypeError(f"{type(model).__name__} has no `score` head; expected a *ForSequenceClassification model")
    return head


def _hidden_states(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    # Positions count real tokens only, so left padding does not shift them.
    position_ids = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
    out = model.base_model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids)
    return out.last_hidden_state


def sequence_rewards(
    model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor, return_features: bool = False
):
    """r(x, y) per row [B] (and the last-token features [B, H] fed to the head, for contrastive losses)."""
    hidden = _hidden_states(model, input_ids, attention_mask)
    last = last_token_index(attention_mask)
    features = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    rewards = _head(model)(features).squeeze(-1).float()
    return (rewards, features) if return_features else rewards


def token_values(model: PreTrainedModel, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Critic values V(s_t) at every position [B, T] (the critic starts as a copy of the RM)."""
    return _head(model)(_hidden_states(model, input_ids, attention_mask)).squeeze(-1).float()


def as_value_model(model: PreTrainedModel) -> PreTrainedModel:
    """The critic: this RM, called as critic(input_ids, attention_mask) -> token values [B, T]. A DeepSpeed engine
    counts micro-steps and sets ZeRO's gradient-accumulation boundary in its own forward, so the critic must be
    called through it, not read through its submodules. Weights, state dict and save_pretrained stay the RM's."""
    model.forward = functools.partial(token_values, model)  # an instance attribute: nn.Module calls it
    return model


def rm_sequence(prompt_ids: list[int], response_ids: list[int], eos_id: int) -> list[int]:
    """The sequence an RM scores for (prompt, response): the RM reads its reward at a final EOS."""
    return list(prompt_ids) + list(response_ids) + ([] if response_ids and response_ids[-1] == eos_id else [eos_id])


@torch.no_grad()
def score_sequences(
    model: PreTrainedModel, sequences: list[list[int]], pad_id: int, batch_size: int = 16, mixed_precision: str = "none"
) -> torch.Tensor:
    """Rewards [N] for token-id sequences (each prompt + response + EOS), in batches; NaN is an error.

    Batches are cut from the sequences sorted by length (results in input order): with random lengths, padding
    every batch to its longest row computed about twice the tokens."""
    from ..data.tokenize import pad_batch
    from ..device import autocast

    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
    rewards = torch.zeros(len(sequences))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        ids, mask = pad_batch([sequences[i] for i in rows], pad_id)
        with autocast(mixed_precision):
            rewards[rows] = sequence_rewards(model, ids.to(device), mask.to(device)).float().cpu()
    model.train(was_training)
    if torch.isnan(rewards).any():
        raise FloatingPointError(f"reward model gave NaN for sequences {torch.nonzero(rewards.isnan()).flatten().tolist()}")
    return rewards


def add_layer_dropout(model: PreTrainedModel, p: float) -> list:
    """Dropout p on every decoder layer's output while training: the two stochastic "views" of contrastive RM
    training (P2 §3.1: dropout 0.05). Llama-family models carry no hidden dropout of their own. Returns the hooks."""
    layers = getattr(model.base_model, "layers", None) or getattr(model.base_model, "h", None)
    if layers is None:
        raise TypeError(f"{type(model).__name__}: no decoder layers found (base_model.layers or .h) to add dropout to")

    def hook(module, args, output):
        if not module.training or p == 0:
            return output
        if isinstance(output, tuple):
            return (torch.nn.functional.dropout(output[0], p, True), *output[1:])
        return torch.nn.functional.dropout(output, p, True)

    return [layer.register_forward_hook(hook) for layer in layers]
