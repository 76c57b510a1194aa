"""The DeepSpeed learner group over two Ray actors (gloo): experience, a PPO update that moves the right way, export."""

import pytest
import torch

from actors.learner import make_learner_group
from rlhf_ray.config import LearnerConfig, PPOConfig
from rlhf_ray.models import load_policy
from rlhf_ray.ppo.advantages import compute_targets
from rlhf_ray.ppo.batch import make_sequences, sequence_logprobs
from rlhf_ray.weight_sync import unpack_state_dict

GOOD = 42


def shard(batch: dict, parts: int) -> list[dict]:
    n = batch["input_ids"].shape[0]
    bounds = [round(i * n / parts) for i in range(parts + 1)]
    return [{k: v[bounds[i] : bounds[i + 1]] for k, v in batch.items()} for i in range(parts)]


def gather(shards: list[dict]) -> dict:
    return {k: torch.cat([s[k] for s in shards]) for k in shards[0]}


@pytest.mark.parametrize("zero_stage", [2, 3])
def test_learner_group_ppo_update_raises_the_rewarded_token(ray_local, tiny_model_dir, tiny_rm_dir, zero_stage, tmp_path):
    learner = LearnerConfig(world_size=2, zero_stage=zero_stage, actor_lr=1e-3, critic_lr=1e-3, micro_batch_size=4,
                            ppo_epochs=2)
    ppo = PPOConfig(reward_norm="none", kl_coef=0.0)
    # fp32 (not auto): the learner's log-probs are compared with a local fp32 forward to 1e-4.
    group = make_learner_group(learner, ppo, tiny_model_dir, tiny_rm_dir, seed=0, mixed_precision="none")

    # 16 one-token responses to the same prompt: the rewarded token GOOD and others.
    prompt = [10, 11, 12, 13]
    responses = [[GOOD] if i % 2 == 0 else [50 + i] for i in range(16)]
    ids, attn, act = make_sequences([prompt] * 16, responses, pad_id=0)
    batch = {"input_ids": ids, "attention_mask": attn, "action_mask": act}
    exp = gather(group.gather([a.experience.remote(s) for a, s in zip(group.actors, shard(batch, 2))]))
    # Uneven shards (5 and 11 rows: 2 and 3 micro-batches): under ZeRO-3 the short rank pads its forwards, no hang.
    uneven = [{k: v[:5] for k, v in batch.items()}, {k: v[5:] for k, v in batch.items()}]
    exp_uneven = gather(group.gather([a.experience.remote(s, 3) for a, s in zip(group.actors, uneven)], timeout_s=120))
    assert torch.allclose(exp_uneven["old_logprobs"], exp["old_logprobs"], atol=1e-5)
    scores = torch.tensor([1.0 if r == [GOOD] else -1.0 for r in responses])
    t = compute_targets(scores, exp["old_logprobs"], exp["ref_logprobs"], exp["old_values"], act, ppo, 0.0, None)
    full = batch | {"old_logprobs": exp["old_logprobs"], "old_values": exp["old_values"], "advantages": t.advantages,
                    "returns": t.returns}

    policy = load_policy(tiny_model_dir).eval()
    with torch.no_grad():
        before = sequence_logprobs(policy, ids[:1], attn[:1])[0, len(prompt) - 1].item()
    assert exp["old_logprobs"][0, len(prompt) - 1].item() == pytest.approx(before, abs=1e-4)

    stats = group.gather([a.ppo_update.remote(s) for a, s in zip(group.actors, shard(full, 2))])
    assert stats[0]["ppo_steps"] == stats[1]["ppo_steps"] == 4  # 8 rows per rank / 4 per step * 2 epochs
    blobs = group.run("export_weights")
    assert blobs[1] is None
    policy.load_state_dict(unpack_state_dict(blobs[0]))
    with torch.no_grad():
        after = sequence_logprobs(policy, ids[:1], attn[:1])[0, len(prompt) - 1].item()
    assert after > before + 0.1

    # Checkpoint, restore into a fresh group, take the same update on both: equal weights iff AdamW states came back.
    group.run("save_checkpoint", str(tmp_path))
    restored = make_learner_group(learner, ppo, tiny_model_dir, tiny_rm_dir, seed=0, mixed_precision="none")
    assert restored.run("load_checkpoint", str(tmp_path)) == [1, 1]
    hf = load_policy(tmp_path / "policy").state_dict()  # the HF folder: ZeRO-3 shards gathered before writing
    assert all(torch.equal(hf[k], v) for k, v in unpack_state_dict(blobs[0]).items())
    for g in (group, restored):
        g.gather([a.ppo_update.remote(s) for a, s in zip(g.actors, shard(full, 2))])
    a, b = (unpack_state_dict(g.run("export_weights")[0]) for g in (group, restored))
    assert all(torch.equal(a[k], b[k]) for k in a)
    group.kill()
    restored.kill()
