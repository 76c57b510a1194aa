"""The DeepSpeed learner group over two Ray actors (gloo): experience, a PPO update that moves the right way, export."""

import pytest
import torch

from actors.group import ZeroShards
from actors.learner import make_learner_group
from rlhf_ray.config import LearnerConfig, PPOConfig
from rlhf_ray.models import load_policy
from rlhf_ray.ppo.advantages import compute_targets
from rlhf_ray.ppo.batch import make_sequences, sequence_logprobs
from rlhf_ray.weight_codec import unpack_state_dict

GOOD = 42


def run(group, method: str, batch: dict, shards: ZeroShards) -> list:
    return group.run_zero_shards(method, batch, shards, timeout_s=180)


def gather(parts: list[dict]) -> dict:
    return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}


@pytest.mark.parametrize("zero_stage", [pytest.param(2, marks=pytest.mark.long), 3])
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
    even = ZeroShards.split(16, 2, 4)
    exp = gather(even.unpad(run(group, "experience", batch, even)))
    # Uneven shards (8 and 7 rows of 15): the short rank cycles its own rows, so under ZeRO-3 both run 2 micro-batches
    # (no hang), and the padded rows' results are dropped.
    uneven = ZeroShards.split(15, 2, 4)
    assert uneven.padded(1) == [8, 9, 10, 11, 12, 13, 14, 8]
    part = {k: v[:15] for k, v in batch.items()}
    exp_uneven = gather(uneven.unpad(run(group, "experience", part, uneven)))
    assert torch.allclose(exp_uneven["old_logprobs"], exp["old_logprobs"][:15], atol=1e-5)
    scores = torch.tensor([1.0 if r == [GOOD] else -1.0 for r in responses])
    t = compute_targets(scores, exp["old_logprobs"], exp["ref_logprobs"], exp["old_values"], act, ppo, 0.0, None)
    full = batch | {"old_logprobs": exp["old_logprobs"], "old_values": exp["old_values"], "advantages": t.advantages,
                    "returns": t.returns}

    policy = load_policy(tiny_model_dir).eval()
    with torch.no_grad():
        before = sequence_logprobs(policy, ids[:1], attn[:1])[0, len(prompt) - 1].item()
    assert exp["old_logprobs"][0, len(prompt) - 1].item() == pytest.approx(before, abs=1e-4)

    stats = [r["stats"] for r in run(group, "ppo_update", full, even)]
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
        run(g, "ppo_update", full, even)
    a, b = (unpack_state_dict(g.run("export_weights")[0]) for g in (group, restored))
    assert all(torch.equal(a[k], b[k]) for k in a)
    group.kill()
    restored.kill()


# Long: padding_free is off by default (it did not pay on CPU); the row weights' math runs by default in
# test_ppo_batch.py, and the suite is at its time budget.
@pytest.mark.long
@pytest.mark.parametrize("world_size,zero_stage", [(1, 0), (2, 3)])
def test_padding_free_update_matches_the_padded_one(ray_local, tiny_model_dir, tiny_rm_dir, world_size, zero_stage):
    """learner.padding_free (one row per forward, DeepSpeed accumulating a step's rows) takes the padded update's
    steps: the same weights after two optimizer steps on rows of 3 to 14 tokens (stepping after every row fails it)."""
    ppo = PPOConfig(reward_norm="none", kl_coef=0.0)
    prompts = [list(range(10, 10 + k)) for k in (2, 9, 4, 12)] * 2
    responses = [[GOOD] * (1 + i % 3) for i in range(8)]
    ids, attn, act = make_sequences(prompts, responses, pad_id=0)
    batch = {"input_ids": ids, "attention_mask": attn, "action_mask": act}
    shards = ZeroShards.split(8, world_size, 4 // world_size)
    scores = torch.linspace(-1, 1, 8)
    full, weights, stats = None, {}, {}
    for padding_free in (False, True):
        learner = LearnerConfig(world_size=world_size, zero_stage=zero_stage, actor_lr=1e-3, critic_lr=1e-3,
                                micro_batch_size=4 // world_size, padding_free=padding_free)
        group = make_learner_group(learner, ppo, tiny_model_dir, tiny_rm_dir, seed=0, mixed_precision="none")
        if full is None:  # both updates start from the same experience
            exp = gather(shards.unpad(run(group, "experience", batch, shards)))
            t = compute_targets(scores, exp["old_logprobs"], exp["ref_logprobs"], exp["old_values"], act, ppo, 0.0, None)
            full = batch | {"old_logprobs": exp["old_logprobs"], "old_values": exp["old_values"],
                            "advantages": t.advantages, "returns": t.returns}
        stats[padding_free] = run(group, "ppo_update", full, shards)[0]["stats"]
        weights[padding_free] = unpack_state_dict(group.run("export_weights")[0])
        group.kill()
    assert stats[True]["ppo_steps"] == stats[False]["ppo_steps"] == 2  # 8 rows, 4 per step over the ranks
    for key in ("policy_loss", "value_loss", "clip_frac"):
        assert stats[True][key] == pytest.approx(stats[False][key], rel=1e-4, abs=1e-6), key
    before = load_policy(tiny_model_dir).state_dict()
    step = {free: torch.cat([(w[k] - before[k]).flatten() for k in before]) for free, w in weights.items()}
    assert step[False].abs().max() > 1e-3  # two AdamW steps at lr 1e-3
    # Rounding differs in the last bits; AdamW magnifies it only where a gradient is near 0 (g / sqrt(g^2)).
    assert (step[True] - step[False]).norm() < 1e-2 * step[False].norm()
    assert (step[True] - step[False]).abs().gt(1e-6).float().mean() < 1e-3
