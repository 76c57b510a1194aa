"""RMLearnerGroup: W Ray actors forming one DeepSpeed job that trains a reward model.

Each rank holds all encoded pairs (one object-store copy per node); the driver sends each step's pair indices,
split so that every rank runs the same number of micro-batches (ZeRO collectives).
"""

import math

import torch
from transformers import get_scheduler

from rlhf_ray.config import RMConfig
from rlhf_ray.device import torch_device
from rlhf_ray.models import (
    add_layer_dropout,
    load_reward_model,
    load_tokenizer,
    reward_model_from_lm,
    score_sequences,
)
from rlhf_ray.training.checkpoint import save_hf_atomic
from rlhf_ray.training.deepspeed_config import deepspeed_config
from rlhf_ray.training.rm_loss import RMTrainModule, contrastive_settings, rm_micro_batch_loss

from .dist import gathered, init_process_group, node_address, start_deepspeed_group
from .group import ActorGroup
from .precision import NodePrecision


class RMLearnerActor(NodePrecision):
    def __init__(self, rank: int = 0):
        self.rank = rank

    def master_address(self) -> tuple[str, int]:
        return node_address()

    def setup(self, addr: str, port: int, world_size: int, init_dir: str, from_lm: bool, rm: RMConfig,
              total_steps: int, pairs: list[dict], zero_stage: int = 2, seed: int = 0, mixed_precision: str = "auto") -> None:
        """The RM (a fresh head on an LM when from_lm, else an existing RM), AdamW + schedule, one DeepSpeed engine.

        pairs: all prepared pairs (chosen_ids, rejected_ids, margin, alpha); steps address them by index."""
        import deepspeed

        init_process_group(addr, port, self.rank, world_size)
        torch.manual_seed(seed)  # the same seed on every rank (and member): identical head init
        self.rm, self.pairs, self.zero_stage = rm, pairs, zero_stage
        self.mixed_precision = self._resolve_precision(mixed_precision).mode  # auto: decided for this node
        self.device = torch_device()
        self.tokenizer = load_tokenizer(init_dir)
        self.pad_id = self.tokenizer.pad_token_id
        if from_lm:
            self.model = reward_model_from_lm(init_dir, pad_token_id=self.pad_id)
        else:
            self.model = load_reward_model(init_dir, trainable=True)
        self.contrastive = contrastive_settings(rm.contrastive)
        if self.contrastive:
            add_layer_dropout(self.model, self.contrastive.dropout)
        module = RMTrainModule(self.model, self.contrastive)  # + SwAV prototypes, trained with the RM
        optimizer = torch.optim.AdamW(module.parameters(), lr=rm.lr, betas=tuple(rm.adam_betas), eps=rm.adam_eps,
                                      weight_decay=rm.weight_decay)
        scheduler = get_scheduler(rm.lr_schedule, optimizer, num_warmup_steps=min(rm.warmup_steps, total_steps),
                                  num_training_steps=total_steps)
        self.accum = rm.batch_size // (rm.micro_batch_size * world_size)
        ds = deepspeed_config(zero_stage, rm.micro_batch_size, world_size, rm.grad_clip, grad_accum=self.accum)
        self.engine, _, _, self.scheduler = deepspeed.initialize(model=module, optimizer=optimizer, lr_scheduler=scheduler,
                                                                 config=ds)
        self.engine.train()

    def train_step(self, indices: list[int]) -> dict[str, float]:
        """One optimizer step over this rank's share of the global batch, in accum micro-batches."""
        size = self.rm.micro_batch_size
        if len(indices) != size * self.accum:
            raise ValueError(f"rank {self.rank} got {len(indices)} pairs; a step takes {size * self.accum}")
        sums: dict[str, float] = {}
        for m in range(self.accum):
            micro = [self.pairs[i] for i in indices[m * size : (m + 1) * size]]
            # Through the engine's forward: ZeRO-3 counts micro-steps there (else accumulation overwrites).
            loss, stats = rm_micro_batch_loss(self.engine, micro, self.pad_id, self.device, self.contrastive,
                                              self.mixed_precision)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"RM loss became {loss.item()} on rank {self.rank}; lower rm.lr or check the data")
            self.engine.backward(loss)  # DeepSpeed divides by the accumulation steps
            self.engine.step()  # steps the optimizer and LR schedule at the accumulation boundary only
            for k, v in (stats | {"train/loss": loss.item()}).items():
                sums[k] = sums.get(k, 0.0) + v
        out = {k: v / self.accum for k, v in sums.items()}
        out["tokens"] = sums["tokens"]
        out["train/grad_norm"] = float(self.engine.get_global_grad_norm() or 0.0)
        out["train/lr"] = self.scheduler.get_last_lr()[0]
        return out

    def score(self, indices: list[int], batch_size: int) -> tuple[list[float], list[float]]:
        """Rewards of chosen and rejected for these pairs (eval mode: no dropout)."""
        pairs = [self.pairs[i] for i in indices]
        # Under ZeRO-3 every forward gathers each layer (collectives): all ranks must get equally long shards.
        chosen = score_sequences(self.model, [p["chosen_ids"] for p in pairs], self.pad_id, batch_size, self.mixed_precision)
        rejected = score_sequences(self.model, [p["rejected_ids"] for p in pairs], self.pad_id, batch_size,
                                   self.mixed_precision)
        return chosen.tolist(), rejected.tolist()

    def save(self, dest: str) -> None:
        """The RM in HF format on rank 0 (a collective under ZeRO-3: every rank must call it)."""
        with gathered(self.model, self.zero_stage):
            if self.rank == 0:
                save_hf_atomic(self.model, self.tokenizer, dest)


def make_rm_learner_group(rm: RMConfig, world_size: int, resources, init_dir: str, from_lm: bool, total_steps: int,
                          pairs_ref, zero_stage: int = 2, seed: int = 0, mixed_precision: str = "auto",
                          name: str = "rm-learner", **group_kwargs) -> ActorGroup:
    return start_deepspeed_group(RMLearnerActor, world_size, resources, str(init_dir), from_lm, rm, total_steps, pairs_ref,
                                 zero_stage, seed, mixed_precision, name=name, **group_kwargs)
