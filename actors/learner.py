"""LearnerGroup: W Ray actors forming one DeepSpeed job that holds the policy, the critic and the reference.

gloo on CPU, NCCL on GPU (rlhf_ray.device); a client torch AdamW so nothing JIT-compiles on CPU.
"""

import math
from contextlib import contextmanager

import torch

from rlhf_ray.config import LearnerConfig, PPOConfig
from rlhf_ray.device import autocast, torch_device
from rlhf_ray.models import load_critic, load_policy, load_reference, token_values
from rlhf_ray.ppo.batch import sequence_logprobs, trim_padding
from rlhf_ray.ppo.update import actor_loss, critic_loss
from rlhf_ray.training.deepspeed_config import deepspeed_config
from rlhf_ray.weight_sync import broadcast_state_dict, make_weight_group, pack_state_dict, weight_metadata

from .dist import gathered, init_process_group, node_address, start_deepspeed_group
from .group import ActorGroup
from .precision import NodePrecision


class LearnerActor(NodePrecision):
    def __init__(self, rank: int = 0):
        self.rank = rank

    def master_address(self) -> tuple[str, int]:
        return node_address()

    def setup(self, addr: str, port: int, world_size: int, policy_dir: str, critic_dir: str,
              learner: LearnerConfig, ppo: PPOConfig, seed: int = 0, mixed_precision: str = "auto") -> None:
        init_process_group(addr, port, self.rank, world_size)
        torch.manual_seed(seed)  # the same seed on every rank: replicated init, then ZeRO shards
        self.learner, self.ppo, self.world_size, self.seed = learner, ppo, world_size, seed
        # bf16: forwards under autocast, fp32 weights and AdamW states; auto decides for this node.
        self.mixed_precision = self._resolve_precision(mixed_precision).mode
        self.device = torch_device()
        self.reference = load_reference(policy_dir).to(self.device)
        ds = deepspeed_config(learner.zero_stage, learner.micro_batch_size, world_size, learner.grad_clip)
        self.policy = self._engine(load_policy(policy_dir), learner.actor_lr, ds)
        self.critic = self._engine(load_critic(critic_dir), learner.critic_lr, ds)
        self.updates = 0

    def _engine(self, model, lr: float, ds_config: dict):
        import deepspeed

        optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=self.learner.weight_decay)
        engine, *_ = deepspeed.initialize(model=model, optimizer=optimizer, config=ds_config)
        return engine

    @torch.no_grad()
    def experience(self, batch: dict[str, torch.Tensor], n_micro: int | None = None) -> dict[str, torch.Tensor]:
        """Log-probs of the current policy and the reference, and critic values, for this rank's rows.

        In micro-batches, each cut to its longest row; results are padded back to the batch's width.
        Under ZeRO-3 every forward is a collective: the driver passes n_micro = ceil(largest shard / micro_batch_size)
        and a rank with fewer micro-batches runs discarded one-token forwards to match.
        """
        self.policy.eval()
        self.critic.eval()
        width = batch["input_ids"].shape[1] - 1
        parts = {"old_logprobs": [], "ref_logprobs": [], "old_values": []}
        size = self.learner.micro_batch_size
        for start in range(0, batch["input_ids"].shape[0], size):
            mb = trim_padding({k: v[start : start + size] for k, v in batch.items()})
            ids, attn, act = (mb[k].to(self.device) for k in ("input_ids", "attention_mask", "action_mask"))
            with autocast(self.mixed_precision):
                out = {
                    "old_logprobs": sequence_logprobs(self.policy, ids, attn, action_mask=act),
                    "ref_logprobs": sequence_logprobs(self.reference, ids, attn, action_mask=act),
                    "old_values": token_values(self.critic, ids, attn)[:, :-1],
                }
            for key, value in out.items():
                parts[key].append(torch.nn.functional.pad(value.float().cpu(), (0, width - value.shape[1])))
        if self.learner.zero_stage == 3:
            done = math.ceil(batch["input_ids"].shape[0] / size)
            dummy = torch.ones(1, 2, dtype=torch.long, device=self.device)
            for _ in range(max(0, (n_micro or done) - done)):
                with autocast(self.mixed_precision):
                    sequence_logprobs(self.policy, dummy, dummy)
                    sequence_logprobs(self.reference, dummy, dummy)
                    token_values(self.critic, dummy, dummy)
        self.policy.train()
        self.critic.train()
        return {key: torch.cat(values) for key, values in parts.items()}

    def ppo_update(self, batch: dict[str, torch.Tensor], steps_per_epoch: int | None = None) -> dict[str, float]:
        """ppo_epochs passes over this rank's rows in micro-batches, one optimizer step each.

        Every rank must take the same number of steps (ZeRO collectives): the driver passes
        steps_per_epoch = ceil(largest shard / micro_batch_size); a smaller shard wraps around.
        """
        n = batch["input_ids"].shape[0]
        mb_size = self.learner.micro_batch_size
        steps = steps_per_epoch or math.ceil(n / mb_size)
        generator = torch.Generator().manual_seed(self.seed * 1000 + self.updates)
        sums, count = {}, 0
        for _ in range(self.learner.ppo_epochs):
            order = torch.randperm(n, generator=generator).repeat(math.ceil(steps * mb_size / n))
            for step in range(steps):
                rows = order[step * mb_size : (step + 1) * mb_size]
                mb = {k: v.to(self.device) for k, v in trim_padding({k: v[rows] for k, v in batch.items()}).items()}
                with autocast(self.mixed_precision):
                    loss, stats = actor_loss(self.policy, mb, self.ppo, self.learner)
                self.policy.backward(loss)
                self.policy.step()
                with autocast(self.mixed_precision):
                    vloss, vstats = critic_loss(self.critic, mb, self.ppo)
                self.critic.backward(vloss)
                self.critic.step()
                for k, v in (stats | vstats).items():
                    sums[k] = sums.get(k, 0.0) + float(v)
                count += 1
        self.updates += 1
        return {k: v / max(count, 1) for k, v in sums.items()} | {"ppo_steps": count}

    def save_checkpoint(self, ckpt_dir: str) -> None:
        """DeepSpeed states of policy and critic (every rank its ZeRO shards) + HF policy/critic on rank 0.

        A collective: every rank must call it. ckpt_dir must be on storage that all learner nodes share.
        """
        state = {"updates": self.updates, "torch_rng": torch.get_rng_state()}
        for name, engine in (("policy", self.policy), ("critic", self.critic)):
            engine.save_checkpoint(f"{ckpt_dir}/deepspeed/{name}", tag="state", client_state=state,
                                   save_latest=False)
            with self._full_state_dict(engine) as full:
                if self.rank == 0:
                    engine.module.save_pretrained(f"{ckpt_dir}/{name}", state_dict=full, safe_serialization=True)

    def load_checkpoint(self, ckpt_dir: str) -> int:
        """Restore weights, AdamW moments, update counter and RNG written by save_checkpoint; returns updates."""
        for name, engine in (("policy", self.policy), ("critic", self.critic)):
            path, client = engine.load_checkpoint(f"{ckpt_dir}/deepspeed/{name}", tag="state",
                                                  load_optimizer_states=True, load_lr_scheduler_states=True)
            if path is None:
                raise FileNotFoundError(f"no DeepSpeed {name} state under {ckpt_dir}/deepspeed/{name}")
        self.updates = int(client["updates"])
        torch.set_rng_state(client["torch_rng"])
        return self.updates

    @contextmanager
    def _full_state_dict(self, engine=None):
        """A model's full state dict (ZeRO-3 shards gathered on every rank, a collective); the policy by default."""
        module = (engine or self.policy).module
        with gathered(module, self.learner.zero_stage):
            yield module.state_dict()

    def weight_metadata(self) -> list:
        with self._full_state_dict() as state:
            return weight_metadata(state)

    def init_weight_group(self, addr: str, port: int, world_size: int) -> None:
        """Rank 0 hosts the weight-broadcast group that every rollout worker joins."""
        if self.rank == 0:
            self._weight_group = make_weight_group(addr, port, 0, world_size)

    def broadcast_weights(self, bucket_bytes: int) -> None:
        """All ranks gather (ZeRO-3); rank 0 broadcasts the buckets to every rollout worker."""
        with self._full_state_dict() as state:
            if self.rank == 0:
                broadcast_state_dict(self._weight_group, state, bucket_bytes)

    def export_weights(self) -> bytes | None:
        """Full policy weights as one safetensors blob on rank 0 (ZeRO-3 shards gathered first); None elsewhere."""
        with self._full_state_dict() as state:
            return pack_state_dict(state) if self.rank == 0 else None


def make_learner_group(learner: LearnerConfig, ppo: PPOConfig, policy_dir: str, critic_dir: str, seed: int = 0,
                       mixed_precision: str = "auto", **group_kwargs) -> ActorGroup:
    return start_deepspeed_group(LearnerActor, learner.world_size, learner.resources, str(policy_dir), str(critic_dir),
                                 learner, ppo, seed, mixed_precision, name="learner", **group_kwargs)
