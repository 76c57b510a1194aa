"""LearnerGroup: W Ray actors forming one DeepSpeed job that holds the policy, the critic and the reference.
With a critic-free advantage estimator (critic_dir None) there is no critic: no value forward, backward or state.

gloo on CPU, NCCL on GPU (rlhf_ray.device); a client torch AdamW so nothing JIT-compiles on CPU. Every rank gets
the same number of rows (ZeroShards pads the shorter shards), so every rank runs the same forwards and steps.
"""

import torch

from rlhf_ray.algorithms import row_loss_weights
from rlhf_ray.config import LearnerConfig, PPOConfig
from rlhf_ray.device import autocast, torch_device
from rlhf_ray.fault_injection import die_if_asked
from rlhf_ray.memory import trims_host_memory
from rlhf_ray.models import load_critic, load_policy, load_reference
from rlhf_ray.ppo.batch import sequence_logprobs, trim_padding
from rlhf_ray.ppo.update import actor_loss, critic_loss
from rlhf_ray.training.deepspeed_config import deepspeed_config
from rlhf_ray.weight_codec import unpack_state_dict

from .dist import init_process_group, start_deepspeed_group
from .group import ActorGroup
from .precision import NodePrecision
from .process_stats import PeakMemory
from .weight_sync import WeightSource


class LearnerActor(NodePrecision, WeightSource, PeakMemory):
    def __init__(self, rank: int = 0):
        self.rank = rank

    def setup(self, addr: str, port: int, world_size: int, policy_dir: str, critic_dir: str | None,
              learner: LearnerConfig, ppo: PPOConfig, seed: int = 0, mixed_precision: str = "auto") -> None:
        init_process_group(addr, port, self.rank, world_size)
        torch.manual_seed(seed)  # the same seed on every rank: replicated init, then ZeRO shards
        self.learner, self.ppo, self.world_size, self.seed = learner, ppo, world_size, seed
        self.zero_stage, self.critic_dir = learner.zero_stage, critic_dir
        # bf16: forwards under autocast, fp32 weights and AdamW states; auto decides for this node.
        self.mixed_precision = self._resolve_precision(mixed_precision).mode
        self.device = torch_device()
        self.reference = load_reference(policy_dir).to(self.device)
        self.policy = self._engine(load_policy(policy_dir), learner.actor_lr)
        self.critic = self._engine(load_critic(critic_dir), learner.critic_lr) if critic_dir else None
        self.updates = 0

    def _engine(self, model, lr: float):
        import deepspeed

        size = self.learner.micro_batch_size
        # padding_free: one sequence per forward, DeepSpeed accumulating a step's micro_batch_size of them.
        micro, accum = (1, size) if self.learner.padding_free else (size, 1)
        ds = deepspeed_config(self.zero_stage, micro, self.world_size, self.learner.grad_clip, grad_accum=accum)
        # fused: one kernel over all parameters instead of ~10 per tensor (2-3x faster steps on CPU and GPU).
        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=self.learner.weight_decay, fused=True)
        engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds)
        if self.world_size == 1 and self.zero_stage == 0:
            # One rank, no ZeRO optimizer: the all-reduce would only flatten and copy the grads. (ZeRO 1-3 move the
            # gradients into their partitions in that same step, so they keep it.)
            engine.enable_backward_allreduce = False
        return engine

    def _engines(self) -> dict:
        return {"policy": self.policy} | ({"critic": self.critic} if self.critic else {})

    def source_module(self):
        return self.policy.module  # the RolloutActors follow the policy

    def _micro_batches(self, batch: dict[str, torch.Tensor]) -> list[slice]:
        """The rows of each no-grad forward, micro_batch_size at a time in row order: a prompt's samples share its
        length, so these carry little padding (single rows measured slower: 17.5 s vs 14.1 s on the quickstart)."""
        n, size = batch["input_ids"].shape[0], self.learner.micro_batch_size
        if n % size:
            raise ValueError(f"rank {self.rank} got {n} rows, not a multiple of learner.micro_batch_size={size} "
                             "(the driver pads every shard with ZeroShards)")
        return [slice(start, start + size) for start in range(0, n, size)]

    @trims_host_memory
    @torch.no_grad()
    def experience(self, batch: dict[str, torch.Tensor], policy: bool = True) -> dict[str, torch.Tensor]:
        """Log-probs of the reference and (policy=True) of the current policy, and critic values (with a critic), for
        this rank's rows. In micro-batches, each cut to its longest row; results are padded back to the batch's
        width."""
        for engine in self._engines().values():
            engine.eval()
        width = batch["input_ids"].shape[1] - 1
        parts = {"ref_logprobs": []} | ({"old_logprobs": []} if policy else {}) | ({"old_values": []} if self.critic else {})
        for rows in self._micro_batches(batch):
            mb = trim_padding({k: v[rows] for k, v in batch.items()})
            ids, attn, act = (mb[k].to(self.device) for k in ("input_ids", "attention_mask", "action_mask"))
            with autocast(self.mixed_precision):
                out = {"ref_logprobs": sequence_logprobs(self.reference, ids, attn, action_mask=act)}
                if policy:
                    out["old_logprobs"] = sequence_logprobs(self.policy, ids, attn, action_mask=act)
                if self.critic:
                    out["old_values"] = self.critic(ids, attn)[:, :-1]
            for key, value in out.items():
                parts[key].append(torch.nn.functional.pad(value.float().cpu(), (0, width - value.shape[1])))
        for engine in self._engines().values():
            engine.train()
        return {key: torch.cat(values) for key, values in parts.items()}

    @trims_host_memory
    def ppo_update(self, batch: dict[str, torch.Tensor]) -> dict:
        """ppo_epochs passes over this rank's rows in shuffled micro-batches, one optimizer step each.

        Returns {"stats": means over the steps, "rows": the distinct row_id values trained on}."""
        n = batch["input_ids"].shape[0]
        self._micro_batches(batch)  # the size check
        mb_size = self.learner.micro_batch_size
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.updates)
        die_if_asked("learner", self.rank, self.updates + 1)  # a test's death: the other ranks wait in a collective
        sums, count = {}, 0
        for _ in range(self.learner.ppo_epochs):
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, mb_size):
                step = {k: v[order[start : start + mb_size]] for k, v in batch.items()}
                for k, v in self._step(step).items():
                    sums[k] = sums.get(k, 0.0) + v
                count += 1
        self.updates += 1
        rows = sorted(set(batch["row_id"].tolist())) if "row_id" in batch else []
        return {"stats": {k: v / max(count, 1) for k, v in sums.items()} | {"ppo_steps": count}, "rows": rows}

    def _step(self, step: dict[str, torch.Tensor]) -> dict[str, float]:
        """One optimizer step of the policy (and critic) on these rows; its stats. Padded, the rows share one forward;
        padding_free, each row runs alone at its own length, its loss weighted by its share of the batch's loss: the
        same summed gradient, without the padding's FLOPs."""
        rows = len(step["input_ids"])
        if self.learner.padding_free:
            shares = row_loss_weights(step["action_mask"], self.ppo.loss_agg).tolist()  # each row's part of the loss
            pieces = [({k: v[r : r + 1] for k, v in step.items()}, shares[r]) for r in range(rows)]
        else:
            pieces = [(step, 1.0)]
        stats: dict[str, float] = {}
        for piece, share in pieces:
            mb = {k: v.to(self.device) for k, v in trim_padding(piece).items()}
            with autocast(self.mixed_precision):
                loss, out = actor_loss(self.policy, mb, self.ppo, self.learner)
            scale = share * len(pieces)  # DeepSpeed divides by the accumulation steps, len(pieces)
            self.policy.backward(loss * scale)
            self.policy.step()
            if self.critic:
                with autocast(self.mixed_precision):
                    vloss, vstats = critic_loss(self.critic, mb, self.ppo)
                self.critic.backward(vloss * scale)
                self.critic.step()
                out = out | vstats
            for k, v in out.items():
                stats[k] = stats.get(k, 0.0) + share * float(v)
        return stats

    @trims_host_memory
    def reinit_critic(self, blob: bytes) -> None:
        """A fresh critic (new AdamW states) from reward-model weights, e.g. an RM pushed after a MetaRM round.
        Every rank calls it (a new DeepSpeed engine)."""
        if not self.critic:
            raise RuntimeError("reinit_critic: this learner has no critic (a critic-free ppo.advantage_estimator)")
        model = load_critic(self.critic_dir)
        model.load_state_dict(unpack_state_dict(blob))
        self.critic = self._engine(model, self.learner.critic_lr)

    def save_checkpoint(self, ckpt_dir: str) -> None:
        """DeepSpeed states of policy and critic (every rank its ZeRO shards) + HF policy/critic on rank 0.

        A collective: every rank must call it. ckpt_dir must be on storage that all learner nodes share.
        """
        state = {"updates": self.updates, "torch_rng": torch.get_rng_state()}
        for name, engine in self._engines().items():
            engine.save_checkpoint(f"{ckpt_dir}/deepspeed/{name}", tag="state", client_state=state,
                                   save_latest=False)
            with self._full_state_dict(engine.module) as full:
                if self.rank == 0:
                    engine.module.save_pretrained(f"{ckpt_dir}/{name}", state_dict=full, safe_serialization=True)

    def load_checkpoint(self, ckpt_dir: str) -> int:
        """Restore weights, AdamW moments, update counter and RNG written by save_checkpoint; returns updates."""
        for name, engine in self._engines().items():
            path, client = engine.load_checkpoint(f"{ckpt_dir}/deepspeed/{name}", tag="state",
                                                  load_optimizer_states=True, load_lr_scheduler_states=True)
            if path is None:
                raise FileNotFoundError(f"no DeepSpeed {name} state under {ckpt_dir}/deepspeed/{name}")
        self.updates = int(client["updates"])
        torch.set_rng_state(client["torch_rng"])
        return self.updates


def make_learner_group(learner: LearnerConfig, ppo: PPOConfig, policy_dir: str, critic_dir: str | None, seed: int = 0,
                       mixed_precision: str = "auto", **group_kwargs) -> ActorGroup:
    critic_dir = str(critic_dir) if critic_dir else None
    return start_deepspeed_group(LearnerActor, learner.world_size, learner.resources, str(policy_dir), critic_dir,
                                 learner, ppo, seed, mixed_precision, name="learner", **group_kwargs)
