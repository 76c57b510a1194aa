"""Two vLLM RolloutActors follow the DeepSpeed learner group through weight sync, also after one is restarted."""

import pytest
import ray
import torch
from listeners import LOOPBACK, listening_ips, this_session

from actors.group import ActorGroup
from actors.learner import make_learner_group
from actors.rollout import RolloutActor
from actors.weight_sync import WeightSync
from rlhf_ray.config import LearnerConfig, PPOConfig, ResourceSpec
from rlhf_ray.models import load_policy, load_tokenizer
from rlhf_ray.ppo.batch import make_sequences
from rlhf_ray.rollout.types import SamplingParams
from rlhf_ray.weight_codec import unpack_state_dict

pytest.importorskip("vllm")
GREEDY = SamplingParams(n=1, max_tokens=12, temperature=0.0)


def hf_greedy(model, tok, prompts: list[list[int]], max_new: int) -> list[list[int]]:
    """Plain transformers greedy decoding, one prompt at a time (no padding), up to and including EOS."""
    out = []
    for p in prompts:
        with torch.no_grad():
            seq = model.generate(torch.tensor([p]), do_sample=False, max_new_tokens=max_new,
                                 eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
        out.append(seq[0, len(p):].tolist())
    return out


# object_store also drives the resume test and the RM push test; collective is the one with a restart to re-join.
@pytest.mark.parametrize("transport", [pytest.param("object_store", marks=pytest.mark.long), "collective"])
def test_rollout_actors_match_the_learner_after_each_sync(ray_local, tiny_model_dir, tiny_rm_dir, monkeypatch, transport):
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
    tok = load_tokenizer(tiny_model_dir)
    texts = [tok.apply_chat_template([{"role": "user", "content": q}], tokenize=False, add_generation_prompt=True)
             for q in ("Where is the river?", "Tell me about stones.", "Why is the sky blue?")]
    prompts = [tok(t, add_special_tokens=False).input_ids for t in texts]

    learner = make_learner_group(LearnerConfig(world_size=2, zero_stage=2, actor_lr=3e-3, critic_lr=1e-3,
                                               micro_batch_size=3), PPOConfig(), tiny_model_dir, tiny_rm_dir)
    rollout = ActorGroup(RolloutActor, 2, ResourceSpec(num_cpus=1), str(tiny_model_dir), name="rollout",
                         max_model_len=256)
    try:  # freed on failure too: the next test needs the CPUs
        weights = WeightSync(transport, learner, [rollout], bucket_mb=1)  # small buckets: several broadcasts
        weights.connect()
        # The learner group's store, the broadcast group's store and vLLM's, every actor: nothing beyond loopback.
        listening = listening_ips(this_session())
        assert listening and listening <= LOOPBACK, listening
        policy = load_policy(tiny_model_dir).eval()

        def check_in_sync():
            want = hf_greedy(policy, tok, prompts, GREEDY.max_tokens)
            for rollouts in rollout.run("generate", prompts, GREEDY):
                assert rollouts.response_ids == want
            return want

        before = check_in_sync()

        # One PPO update that rewards the first greedy token of each prompt's response... negatively.
        ids, attn, act = make_sequences(prompts * 4, [b[:3] or [1] for b in before] * 4, pad_id=tok.pad_token_id)
        n = ids.shape[0]
        batch = {"input_ids": ids, "attention_mask": attn, "action_mask": act}
        shards = [{k: v[i::2] for k, v in batch.items()} for i in range(2)]
        exps = learner.gather([a.experience.remote(s) for a, s in zip(learner.actors, shards)])
        for s, e in zip(shards, exps):
            s.update(old_logprobs=e["old_logprobs"], old_values=e["old_values"],
                     advantages=-torch.ones_like(e["old_values"]) * s["action_mask"],
                     returns=torch.zeros_like(e["old_values"]))
        learner.gather([a.ppo_update.remote(s) for a, s in zip(learner.actors, shards)])
        assert n == 12

        weights.sync()
        policy.load_state_dict(unpack_state_dict(learner.run("export_weights")[0]))
        after = check_in_sync()
        assert after != before

        if transport == "collective":
            # A RolloutActor killed with ray.kill comes back on its bundle with the initial weights; re-joined (a new
            # broadcast group), it follows.
            ray.kill(rollout.actors[1])
            rollout.restart(1)
            assert rollout.gather([rollout.actors[1].generate.remote(prompts, GREEDY)])[0].response_ids == before
            weights.connect()
            weights.sync()
            assert check_in_sync() == after
    finally:
        learner.kill()
        rollout.kill()
