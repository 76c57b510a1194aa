import os

import pytest

from rlhf_ray.environment import apply_defaults

os.environ["RAY_AUTH_MODE"] = "token"  # the suite tests the default, whatever the caller's environment says
apply_defaults()  # nothing may come from a hub


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random-weight tiny Llama with a locally trained tokenizer, built once per test session."""
    from rlhf_ray.models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "policy")


@pytest.fixture(scope="session")
def other_policy_dir(tiny_model_dir, tmp_path_factory):
    """The tiny policy with perturbed weights (a folder named `other`): a second policy that answers differently."""
    import torch

    from rlhf_ray.models import load_policy, load_tokenizer

    out = tmp_path_factory.mktemp("other_policy") / "other"
    policy = load_policy(tiny_model_dir)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn(p.shape, generator=torch.Generator().manual_seed(0)) * 0.05)
    policy.save_pretrained(out)
    load_tokenizer(tiny_model_dir).save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def ray_local():
    """One local Ray for the whole session (logical CPUs above the 2 real ones so several actors fit); each test
    frees its actors and placement groups, so the next finds the cluster empty. On loopback, with token auth, as a run's."""
    import ray

    from launch.cluster import start_local_ray

    start_local_ray(num_cpus=6, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def tiny_rm_dir(tiny_model_dir, tmp_path_factory):
    """A reward model (fresh scalar head) on the tiny backbone in HF format; also the critic's starting point."""
    from rlhf_ray.models import load_tokenizer, reward_model_from_lm

    tok = load_tokenizer(tiny_model_dir)
    out = tmp_path_factory.mktemp("tiny_rm") / "rm"
    reward_model_from_lm(tiny_model_dir, pad_token_id=tok.pad_token_id).save_pretrained(out)
    tok.save_pretrained(out)
    return out


@pytest.fixture
def ppo_config(tiny_model_dir, tmp_path):
    """A PPO config on the tiny model for this test's tmp folder: ppo_config(run_name, *overrides). 2 vLLM
    RolloutActors, a ZeRO-2 learner group of 2, 8 prompts x 4 samples per iteration."""
    from rlhf_ray.config import load_config

    def build(name: str, *extra: str):
        return load_config(None, [
            f"model.policy={tiny_model_dir}", f"run.output_dir={tmp_path}/runs", f"run.name={name}",
            "rollout.num_actors=2", "rollout.max_model_len=160", "rollout.max_new_tokens=16", "rollout.n_samples=4",
            "rollout.kv_cache_gib=0.5", "rollout.resources.num_cpus=1", "reward.resources.num_cpus=0.5",
            "learner.world_size=2", "learner.zero_stage=2", "learner.micro_batch_size=8", "learner.resources.num_cpus=1",
            "ppo.prompts_per_iteration=8", "data.max_pairs=64", *extra,
        ])

    return build


@pytest.fixture(scope="session")
def online_config(tiny_model_dir, tiny_rm_dir, tmp_path_factory):
    """The config of an online run of tiny models: 2 rounds of 2 PPO iterations with a MetaRM update, a gold judge
    and the SEAM filter, checkpointed every iteration. Returns (config path, runs folder)."""
    import yaml

    tmp = tmp_path_factory.mktemp("online")
    cfg = {
        "run": {"output_dir": str(tmp / "runs"), "checkpoint_every": 1, "keep_checkpoints": 5},
        "data": {"max_pairs": 64, "max_eval_pairs": 16},
        # fp32: the push check compares the RewardActor's scores with the RM learner's own, batched differently.
        "model": {"policy": str(tiny_model_dir), "reward": str(tiny_rm_dir), "mixed_precision": "none"},
        "cluster": {"num_cpus": 8},
        "rollout": {"num_actors": 1, "max_model_len": 160, "max_new_tokens": 16, "n_samples": 4, "kv_cache_gib": 0.5,
                    "temperature": 1.0, "top_p": 1.0},
        "reward": {"resources": {"num_cpus": 0.5}},
        "learner": {"world_size": 2, "zero_stage": 2, "micro_batch_size": 8, "actor_lr": 1e-2, "critic_lr": 2e-3},
        # Large steps, so that a lost RM or ascent state, or a missed push, shows in the metrics.
        "rm": {"lr": 1e-3, "batch_size": 8, "micro_batch_size": 4, "warmup_steps": 0},
        "metarm": {"k": 3, "meta_batch_prompts": 4, "meta_lr": 1e-3},
        "online": {"rounds": 2, "rm_steps": 2, "gold": str(tiny_rm_dir)},  # the initial RM stands in for a gold RM
        # Each iteration's lowest-SEAM quarter of the prompts leaves the buffer (worse answers cached in the run's tmp).
        "seam": {"filter": "seam", "variant": "adv", "k": 3, "drop_fraction": 0.25, "max_answer_tokens": 64,
                 "cache": str(tmp / "seam_cache")},
        "ppo": {"iterations": 2, "prompts_per_iteration": 8, "kl_coef": 0.05},
    }
    path = tmp / "online.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path, tmp / "runs"


@pytest.fixture(scope="session")
def online_run(online_config):
    """online_config's run straight through (`rlhf-ray train` as a subprocess), in runs/straight. test_online checks
    its rounds, test_kill_anywhere kills and resumes the same config."""
    from subprocess_runs import train

    train(online_config[0], "straight")
    return online_config


@pytest.fixture(scope="session")
def straight_run(tiny_model_dir, tmp_path_factory):
    """(config, runs folder) after `rlhf-ray train` of write_fault_config straight through, in runs/straight (its
    console in straight.log beside the config)."""
    from subprocess_runs import train, write_fault_config

    tmp_path = tmp_path_factory.mktemp("fault")
    config = write_fault_config(tmp_path, tiny_model_dir)
    train(config, "straight")
    return config, tmp_path / "runs"
