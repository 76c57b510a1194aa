"""RMLearnerGroup: W Ray actors forming one DeepSpeed job that trains a reward model.

Each rank holds all encoded pairs (one object-store copy per node); the driver sends each step's pair indices,
split so that every rank runs the same number of micro-batches (ZeRO collectives).
"""

import math

import torch
from transformers import get_scheduler

from rlhf_ray.algorithms.metarm import MetaAscent, difference_loss
from rlhf_ray.config import MetaRMConfig, RMConfig
from rlhf_ray.data.tokenize import pad_batch
from rlhf_ray.device import autocast, torch_device
from rlhf_ray.memory import trims_host_memory
from rlhf_ray.models import (
    add_layer_dropout,
    load_reward_model,
    load_tokenizer,
    reward_model_from_lm,
    score_sequences,
)
from rlhf_ray.run_dir import load_state, rng_state, set_rng_state
from rlhf_ray.training.checkpoint import save_hf_atomic
from rlhf_ray.training.deepspeed_config import deepspeed_config
from rlhf_ray.training.rm_loss import RMTrainModule, contrastive_settings, rm_micro_batch_loss

from .dist import gathered, gathered_param, init_process_group, start_deepspeed_group
from .group import ActorGroup
from .precision import NodePrecision
from .weight_sync import WeightSource


class RMLearnerActor(NodePrecision, WeightSource):
    def __init__(self, rank: int = 0):
        self.rank = rank

    def source_module(self):
        return self.model  # the RM alone (RewardActors follow it), without any SwAV prototypes

    def setup(self, addr: str, port: int, world_size: int, init_dir: str, from_lm: bool, rm: RMConfig,
              total_steps: int, pairs: list[dict], zero_stage: int = 2, seed: int = 0, mixed_precision: str = "auto",
              metarm: MetaRMConfig | None = None) -> None:
        """The RM (a fresh head on an LM when from_lm, else an existing RM), AdamW + schedule, one DeepSpeed engine.

        pairs: all prepared pairs (chosen_ids, rejected_ids, margin, alpha); steps address them by index.
        metarm: set to run MetaRM steps (train_step with meta sequences); its ascent keeps its own Adam state."""
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
        self.metarm, self.ascent = metarm, None
        if metarm is not None:
            if zero_stage == 1:
                raise ValueError("MetaRM runs on ZeRO stage 0, 2 or 3 (stage 1 reduces gradients only at its own step)")
            shapes = [p.ds_shape if hasattr(p, "ds_shape") else p.shape for p in self._trainable()]
            self.ascent = MetaAscent(shapes, metarm.meta_lr, betas=tuple(metarm.adam_betas or rm.adam_betas),
                                     eps=metarm.adam_eps or rm.adam_eps)

    def _trainable(self) -> list[torch.nn.Parameter]:
        return [p for p in self.engine.module.parameters() if p.requires_grad]

    @trims_host_memory
    def train_step(self, indices: list[int], meta: list[list[list[int]]] | None = None) -> dict[str, float]:
        """One optimizer step over this rank's share of the global batch, in accum micro-batches.

        meta: this rank's MetaRM prompts, each k token sequences (prompt + policy response) sampled from the current
        policy. Then the step is MetaRM's (ALGORITHMS.md §2.2): the BT gradient is taken at theta' = theta + Delta,
        where Delta is an Adam ascent step on the difference loss J, and applied to theta (or to theta' when
        metarm.variant is alternating). Without meta it is the plain BT step (the vanilla control)."""
        size = self.rm.micro_batch_size
        if len(indices) != size * self.accum:
            raise ValueError(f"rank {self.rank} got {len(indices)} pairs; a step takes {size * self.accum}")
        restore, meta_stats = (None, {}) if meta is None else self._meta_ascent(meta)
        sums: dict[str, float] = {}
        for m in range(self.accum):
            micro = [self.pairs[i] for i in indices[m * size : (m + 1) * size]]
            # Through the engine's forward: ZeRO-3 counts micro-steps there (else accumulation overwrites).
            loss, stats = rm_micro_batch_loss(self.engine, micro, self.pad_id, self.device, self.contrastive,
                                              self.mixed_precision)
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"RM loss became {loss.item()} on rank {self.rank}; lower rm.lr or check the data")
            self.engine.backward(loss)  # DeepSpeed divides by the accumulation steps
            if m == self.accum - 1:
                grad_norm = self._grad_norm()
                if restore is not None:
                    restore()
            self.engine.step()  # steps the optimizer and LR schedule at the accumulation boundary only
            for k, v in (stats | {"train/loss": loss.item()}).items():
                sums[k] = sums.get(k, 0.0) + v
        out = {k: v / self.accum for k, v in sums.items()}
        out["tokens"] = sums["tokens"]
        if math.isnan(grad_norm) and self.engine.get_global_grad_norm() is not None:
            grad_norm = float(self.engine.get_global_grad_norm())
        if not math.isnan(grad_norm):  # a ZeRO engine without clipping computes none: then no field
            out["train/grad_norm"] = grad_norm
        out["train/lr"] = self.scheduler.get_last_lr()[0]
        return out | meta_stats

    def _meta_ascent(self, meta: list[list[list[int]]]):
        """theta' = theta + Delta on the working weights; returns (what restores theta before the main step, stats).

        The gradient of J goes through the engine (ZeRO reduces and partitions it) and is read back whole on every
        rank; Delta comes from the ascent's own Adam, identical on every rank. Under ZeRO 2-3 the optimizer's fp32
        master copy stays at theta and its step rewrites the working weights from it, so restoring is implicit there;
        ZeRO-0 trains the working weights themselves, so they are copied back. alternating moves the master too.
        """
        from deepspeed.utils import safe_get_full_fp32_param, safe_get_full_grad, safe_set_full_fp32_param

        if self.ascent is None:
            raise RuntimeError("this RM learner was set up without metarm; pass metarm= to setup for MetaRM steps")
        k, micro = self.metarm.k, self.metarm.micro_prompts
        if any(len(group) != k for group in meta):
            raise ValueError(f"rank {self.rank}: every meta prompt needs k={k} responses, got {[len(g) for g in meta]}")
        j_total = 0.0
        for start in range(0, len(meta), micro):
            group = meta[start : start + micro]
            # One reduction for all of J: the last meta micro-batch is the accumulation boundary.
            self.engine.set_gradient_accumulation_boundary(start + micro >= len(meta))
            ids, mask = pad_batch([seq for prompt in group for seq in prompt], self.pad_id)
            with autocast(self.mixed_precision):
                rewards, _, _ = self.engine(ids.to(self.device), mask.to(self.device))
            j = difference_loss(rewards.float().view(len(group), k)) * (len(group) / len(meta))  # mean over prompts
            self.engine.backward(-j, scale_wrt_gas=False)  # ascent on J = descent on -J
            j_total += j.item()
        params = self._trainable()
        grads = []
        for p, shadow in zip(params, self.ascent.shadow, strict=True):  # whole, rank-averaged (ZeRO 2-3: a collective)
            g = safe_get_full_grad(p)
            grads.append(torch.zeros_like(shadow) if g is None else -g.detach().float())  # a copy: zero_grad follows
        self.engine.optimizer.zero_grad()  # the BT gradients must not accumulate onto J's
        self.engine.set_gradient_accumulation_boundary(None)  # back to the engine's own micro-step count
        delta = self.ascent.delta(grads, consume=True)  # no further copies: each is a model's worth of memory
        del grads
        saved = []
        with torch.no_grad():
            for p, d in zip(params, delta, strict=True):
                with gathered_param(p, self.zero_stage):  # ZeRO-3: rank 0's write is scattered back
                    if self.zero_stage == 0:
                        saved.append(p.detach().clone())
                    p.data.add_(d.to(p.dtype))
            if self.metarm.variant == "alternating" and self.zero_stage > 0:
                for p, d in zip(params, delta, strict=True):
                    safe_set_full_fp32_param(p, safe_get_full_fp32_param(p) + d)
        stats = {"metarm/J": j_total, "metarm/delta_norm": float(torch.linalg.vector_norm(torch.stack([d.norm() for d in delta])))}
        if self.metarm.variant == "alternating" or self.zero_stage > 0:
            return None, stats

        def restore():
            with torch.no_grad():
                for p, t in zip(params, saved, strict=True):
                    p.copy_(t)

        return restore, stats

    def _grad_norm(self) -> float:
        """The global gradient norm before clipping. ZeRO 1-3 engines compute it in their step; a ZeRO-0 engine with
        a client optimizer keeps none, so it is computed here, before the step (every rank holds all gradients)."""
        if self.zero_stage == 0:
            grads = [p.grad for p in self.engine.module.parameters() if p.grad is not None]
            return float(torch.nn.utils.get_total_norm(grads)) if grads else 0.0
        return math.nan  # read after the step, below

    @trims_host_memory
    def score(self, indices: list[int], batch_size: int) -> tuple[list[float], list[float]]:
        """Rewards of chosen and rejected for these pairs (eval mode: no dropout)."""
        pairs = [self.pairs[i] for i in indices]
        # Under ZeRO-3 every forward gathers each layer (collectives): all ranks must get equally long shards.
        chosen = score_sequences(self.model, [p["chosen_ids"] for p in pairs], self.pad_id, batch_size, self.mixed_precision)
        rejected = score_sequences(self.model, [p["rejected_ids"] for p in pairs], self.pad_id, batch_size,
                                   self.mixed_precision)
        return chosen.tolist(), rejected.tolist()

    @trims_host_memory
    def score_sequences(self, sequences: list[list[int]], batch_size: int) -> list[float]:
        """Rewards of whole token sequences (prompt + response + EOS); a collective under ZeRO-3 like score."""
        return score_sequences(self.model, sequences, self.pad_id, batch_size, self.mixed_precision).tolist()

    def add_pairs(self, pairs: list[dict]) -> int:
        """Append encoded pairs (chosen_ids, rejected_ids) to the pairs steps address; returns the new count.
        Online `labeled` rounds add the oracle-labeled pairs of the policy's own responses this way."""
        # Like undenoised train pairs: no margin, the run's label smoothing. The shared pairs object stays intact.
        self.pairs = self.pairs + [{"margin": 0.0, "alpha": self.rm.label_smoothing} | p for p in pairs]
        return len(self.pairs)

    @trims_host_memory
    def save_state(self, ckpt_dir: str) -> None:
        """Weights, AdamW moments, LR schedule (every rank its ZeRO shards), the MetaRM ascent's Adam and the RNG,
        so that a resumed run continues this RM exactly. A collective: every rank must call it."""
        client = {"ascent": self.ascent.state_dict() if self.ascent else None, "pairs": len(self.pairs)}
        self.engine.save_checkpoint(ckpt_dir, tag="state", client_state=client, save_latest=False)
        # Every rank its own RNG (DeepSpeed keeps client_state from rank 0 only): dropout differs per rank.
        torch.save(rng_state(), f"{ckpt_dir}/rng_rank{self.rank}.pt")

    @trims_host_memory
    def load_state(self, ckpt_dir: str) -> None:
        """Restore what save_state wrote (added pairs must be added again first: their count is checked)."""
        path, client = self.engine.load_checkpoint(ckpt_dir, tag="state", load_optimizer_states=True,
                                                   load_lr_scheduler_states=True)
        if path is None:
            raise FileNotFoundError(f"no DeepSpeed RM state under {ckpt_dir}")
        if client["pairs"] != len(self.pairs):
            raise RuntimeError(f"{ckpt_dir}: saved with {client['pairs']} pairs, this learner holds {len(self.pairs)}")
        set_rng_state(load_state(f"{ckpt_dir}/rng_rank{self.rank}.pt"))
        if self.ascent and client["ascent"]:
            self.ascent.load_state_dict(client["ascent"])

    def save(self, dest: str) -> None:
        """The RM in HF format on rank 0 (a collective under ZeRO-3: every rank must call it)."""
        with gathered(self.model, self.zero_stage):
            if self.rank == 0:
                save_hf_atomic(self.model, self.tokenizer, dest)


def make_rm_learner_group(rm: RMConfig, world_size: int, resources, init_dir: str, from_lm: bool, total_steps: int,
                          pairs_ref, zero_stage: int = 2, seed: int = 0, mixed_precision: str = "auto",
                          metarm: MetaRMConfig | None = None, name: str = "rm-learner", **group_kwargs) -> ActorGroup:
    return start_deepspeed_group(RMLearnerActor, world_size, resources, str(init_dir), from_lm, rm, total_steps, pairs_ref,
                                 zero_stage, seed, mixed_precision, metarm, name=name, **group_kwargs)
