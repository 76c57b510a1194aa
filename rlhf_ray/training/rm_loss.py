"""The reward-model loss of one micro-batch: Bradley-Terry with per-pair margin and smoothing, plus contrastive.

Used by the DeepSpeed RM learner (rm train, the strength ensemble). Pairs arrive prepared by
`rm_denoise.apply_strength`: flipped where asked, each with its own `margin` and `alpha`.
"""

import dataclasses

import torch

from ..algorithms import (
    CONTRASTIVE_PRESETS,
    ContrastiveConfig,
    bradley_terry_loss,
    contrastive_inputs,
    contrastive_loss,
    preference_accuracy,
    total_rm_loss,
)
from ..config import ContrastiveSection
from ..data.tokenize import pad_batch
from ..device import autocast
from ..models import sequence_rewards


def contrastive_settings(section: ContrastiveSection) -> ContrastiveConfig | None:
    """The preset of section.method with every field the config sets; None when contrastive training is off."""
    if section.method == "none":
        return None
    overrides = {k: v for k, v in section.model_dump().items() if k != "method" and v is not None}
    if section.method == "simcse" and "n_prototypes" in overrides:
        raise ValueError("rm.contrastive.n_prototypes is a SwAV setting; SimCSE has no prototypes")
    return dataclasses.replace(CONTRASTIVE_PRESETS[section.method], **overrides)


class RMTrainModule(torch.nn.Module):
    """The RM plus SwAV's trainable prototypes C [K, D] (random unit rows, as in SwAV) when the method needs them.

    Its forward is what DeepSpeed runs: ZeRO-3 gathers parameters, and counts micro-steps, per engine forward.
    """

    def __init__(self, rm, contrastive: ContrastiveConfig | None = None):
        super().__init__()
        self.rm = rm
        self.prototypes = None
        if contrastive is not None and contrastive.method == "swav":
            protos = torch.randn(contrastive.n_prototypes, rm.config.hidden_size)
            self.prototypes = torch.nn.Parameter(torch.nn.functional.normalize(protos, dim=-1))

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        """(rewards [B], last-token features [B, D], prototypes or None)."""
        rewards, features = sequence_rewards(self.rm, input_ids, attention_mask, return_features=True)
        return rewards, features, self.prototypes


def rm_micro_batch_loss(module, micro: list[dict], pad_id: int, device, contrastive: ContrastiveConfig | None = None,
                        mixed_precision: str = "none") -> tuple[torch.Tensor, dict]:
    """Loss and stats of one micro-batch of prepared pairs (chosen_ids, rejected_ids, margin, alpha).

    module: an RMTrainModule, or the DeepSpeed engine wrapping one. One forward over chosen and rejected together
    (2B rows). With contrastive training the batch goes in twice (the two dropout views): L_rm is the BT loss
    averaged over both views, plus beta * L_cl between them (P2 §3.1).
    """
    n = len(micro)
    views = 1 if contrastive is None else 2
    # The two dropout views are one forward over the batch twice (4B rows): rows get independent dropout masks,
    # and ZeRO-3 sees one forward per backward.
    sequences = ([p["chosen_ids"] for p in micro] + [p["rejected_ids"] for p in micro]) * views
    ids, mask = pad_batch(sequences, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    margin = torch.tensor([p.get("margin", 0.0) for p in micro], device=device)
    alpha = torch.tensor([p.get("alpha", 0.0) for p in micro], device=device)
    with autocast(mixed_precision):
        all_rewards, all_features, prototypes = module(ids, mask)
    bt, acc, gap, features = 0.0, 0.0, 0.0, []
    for v in range(views):
        rewards, feats = all_rewards[2 * n * v : 2 * n * (v + 1)], all_features[2 * n * v : 2 * n * (v + 1)]
        chosen, rejected = rewards[:n], rewards[n:]
        bt = bt + bradley_terry_loss(chosen, rejected, margin=margin, label_smoothing=alpha) / views
        acc += preference_accuracy(chosen, rejected).item() / views
        gap += (chosen - rejected).mean().item() / views
        features.append(contrastive_inputs(feats[:n], feats[n:], contrastive.mode) if contrastive else None)
    stats = {"train/bt_loss": bt.item(), "train/accuracy": acc, "train/reward_gap": gap, "tokens": int(mask.sum())}
    if contrastive is None:
        return bt, stats
    cl = contrastive_loss(features[0], features[1], contrastive, prototypes)
    stats["train/contrastive_loss"] = cl.item()
    return total_rm_loss(bt, cl, contrastive.beta), stats
