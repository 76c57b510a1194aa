"""Weight sync from an RM learner group: to RewardActors (blob and broadcast) and into a PPO learner's critic."""

import json

import ray
import torch

from actors.group import ActorGroup
from actors.learner import make_learner_group
from actors.reward import RewardActor
from actors.rm_learner import make_rm_learner_group
from actors.weight_sync import Target, WeightSync
from launch.rm_jobs import RMJob, score_pairs, train_side_by_side
from rlhf_ray.config import LearnerConfig, PPOConfig, ResourceSpec, load_config
from rlhf_ray.models import load_reward_model
from rlhf_ray.training.rm_data import prepare_rm_data
from rlhf_ray.weight_codec import unpack_state_dict


def test_rm_weights_reach_reward_actors_and_the_critic(ray_local, tiny_model_dir, tiny_rm_dir, tmp_path):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"Say {i}", "chosen": f"yes {i} :)", "rejected": f"no {i} :("}) + "\n"
                            for i in range(48)))
    cfg = load_config(None, [f"model.policy={tiny_model_dir}", "model.max_len=64", "model.max_response_len=16",
                             "data.source=jsonl", f"data.paths=[{path}]", "data.eval_fraction=0.25", "rm.lr=3e-3",
                             "rm.batch_size=8", "rm.micro_batch_size=4", "rm.warmup_steps=0"])
    data = prepare_rm_data(cfg)
    rm = make_rm_learner_group(cfg.rm, 2, ResourceSpec(num_cpus=0.5), data.init_dir, data.from_lm, 4,
                               ray.put(data.pairs), zero_stage=2, mixed_precision="none")
    # The RewardActors start from another RM (tiny_rm_dir), as a PPO run's RewardActors hold the RM of the last round.
    reward = ActorGroup(RewardActor, 2, ResourceSpec(num_cpus=0.5), str(tiny_rm_dir), name="reward", batch_size=3,
                        mixed_precision="none")
    index = data.eval_index
    # A RewardActor scores prompt + response + EOS: the same token sequences as the learner's chosen_ids.
    pairs = [(data.pairs[i]["chosen_ids"][:-1], data.pairs[i]["chosen_ids"][-1:]) for i in index]

    def reward_scores():
        return torch.tensor([s for part in reward.run_sharded("score", pairs) for s in part])

    try:
        for seed, transport in enumerate(("object_store", "collective")):
            train_side_by_side([RMJob("rm", rm, data.train_index, cfg.rm, seed, steps=2)])  # new weights each time
            learner_scores, _ = score_pairs(rm, index, 4)
            assert not torch.allclose(reward_scores(), learner_scores, atol=1e-3)
            sync = WeightSync(transport, rm, [reward])
            sync.connect()
            sync.sync()
            assert torch.allclose(reward_scores(), learner_scores, atol=1e-5), transport

        # RM learner -> critic: the PPO learner's critic restarts from the RM (blob only), saved as its HF critic.
        ppo = make_learner_group(LearnerConfig(world_size=1, zero_stage=0), PPOConfig(), tiny_model_dir, tiny_rm_dir,
                                 mixed_precision="none")
        try:
            WeightSync("collective", rm, [Target(ppo, update="reinit_critic", collective=False)]).sync()
            ppo.run("save_checkpoint", str(tmp_path / "ckpt"))
            critic = load_reward_model(tmp_path / "ckpt" / "critic").state_dict()
            pushed = unpack_state_dict(rm.run("export_weights")[0])
            assert critic.keys() == pushed.keys() and all(torch.equal(critic[k], pushed[k]) for k in pushed)
        finally:
            ppo.kill()
    finally:
        rm.kill()
        reward.kill()
