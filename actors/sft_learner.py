"""SFTLearnerGroup: W Ray actors forming one DeepSpeed job that fine-tunes a policy on gold responses.

Each rank holds all encoded examples; the driver sends each step's indices, split so that every rank runs the same
number of micro-batches (ZeRO collectives), as the RM learner does.
"""

import math

import torch
from transformers import get_scheduler

from rlhf_ray.config import SFTConfig
from rlhf_ray.device import autocast, torch_device
from rlhf_ray.memory import trims_host_memory
from rlhf_ray.models import load_policy, load_tokenizer
from rlhf_ray.training.checkpoint import save_hf_atomic
from rlhf_ray.training.deepspeed_config import deepspeed_config
from rlhf_ray.training.sft import response_nll, sft_batch

from .dist import gathered, init_process_group, node_address, start_deepspeed_group
from .group import ActorGroup
from .precision import NodePrecision


class SFTLearnerActor(NodePrecision):
    def __init__(self, rank: int = 0):
        self.rank = rank

    def master_address(self) -> tuple[str, int]:
        return node_address()  # start_deepspeed_group asks rank 0 for the group's rendezvous address

    def setup(self, addr: str, port: int, world_size: int, policy_dir: str, sft: SFTConfig, total_steps: int,
              examples: list[dict], zero_stage: int = 2, seed: int = 0, mixed_precision: str = "auto") -> None:
        import deepspeed

        init_process_group(addr, port, self.rank, world_size)
        torch.manual_seed(seed)
        self.sft, self.examples, self.zero_stage = sft, examples, zero_stage
        self.mixed_precision = self._resolve_precision(mixed_precision).mode
        self.device = torch_device()
        self.tokenizer = load_tokenizer(policy_dir)
        self.pad_id = self.tokenizer.pad_token_id
        self.model = load_policy(policy_dir)
        optimizer = torch.optim.AdamW(self.model.parameters(), lr=sft.lr, weight_decay=sft.weight_decay)
        scheduler = get_scheduler(sft.lr_schedule, optimizer, num_warmup_steps=min(sft.warmup_steps, total_steps),
                                  num_training_steps=total_steps)
        self.accum = sft.batch_size // (sft.micro_batch_size * world_size)
        ds = deepspeed_config(zero_stage, sft.micro_batch_size, world_size, sft.grad_clip, grad_accum=self.accum)
        self.engine, _, _, self.scheduler = deepspeed.initialize(model=self.model, optimizer=optimizer,
                                                                 lr_scheduler=scheduler, config=ds)

    def _nll(self, examples: list[dict]) -> tuple[torch.Tensor, torch.Tensor]:
        ids, mask, loss_mask = sft_batch(examples, self.pad_id)
        with autocast(self.mixed_precision):
            logits = self.engine(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
        return response_nll(logits, ids.to(self.device), loss_mask.to(self.device))

    @trims_host_memory
    def train_step(self, indices: list[int]) -> dict[str, float]:
        """One optimizer step over this rank's share of the batch: token-mean NLL per micro-batch, accumulated."""
        size = self.sft.micro_batch_size
        if len(indices) != size * self.accum:
            raise ValueError(f"rank {self.rank} got {len(indices)} examples; a step takes {size * self.accum}")
        self.engine.train()
        loss_sum, tokens = 0.0, 0.0
        for m in range(self.accum):
            nll, n = self._nll([self.examples[i] for i in indices[m * size : (m + 1) * size]])
            loss = nll.sum() / n.sum().clamp(min=1)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"SFT loss became {loss.item()} on rank {self.rank}; lower sft.lr or check the data")
            self.engine.backward(loss)  # DeepSpeed divides by the accumulation steps
            self.engine.step()  # steps the optimizer and LR schedule at the accumulation boundary only
            loss_sum, tokens = loss_sum + nll.sum().item(), tokens + n.sum().item()
        out = {"train/loss": loss_sum / max(tokens, 1.0), "train/lr": self.scheduler.get_last_lr()[0],
               "tokens": float(sum(len(self.examples[i]["input_ids"]) for i in indices)), "response_tokens": tokens}
        norm = self.engine.get_global_grad_norm()
        if norm is not None:
            out["train/grad_norm"] = float(norm)
        return out

    @trims_host_memory
    @torch.no_grad()
    def eval_nll(self, indices: list[int], batch_size: int) -> list[tuple[float, float]]:
        """(summed response NLL, response tokens) of each example (eval mode: no dropout)."""
        self.engine.eval()
        out = []
        for start in range(0, len(indices), batch_size):
            nll, n = self._nll([self.examples[i] for i in indices[start : start + batch_size]])
            out += list(zip(nll.tolist(), n.tolist()))
        return out

    def save(self, dest: str) -> None:
        """The policy in HF format on rank 0 (a collective under ZeRO-3: every rank must call it)."""
        with gathered(self.model, self.zero_stage):
            if self.rank == 0:
                save_hf_atomic(self.model, self.tokenizer, dest)


def make_sft_learner_group(sft: SFTConfig, world_size: int, resources, policy_dir: str, total_steps: int, examples_ref,
                           zero_stage: int = 2, seed: int = 0, mixed_precision: str = "auto", name: str = "sft-learner",
                           **group_kwargs) -> ActorGroup:
    return start_deepspeed_group(SFTLearnerActor, world_size, resources, str(policy_dir), sft, total_steps, examples_ref,
                                 zero_stage, seed, mixed_precision, name=name, **group_kwargs)
