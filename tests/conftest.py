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
