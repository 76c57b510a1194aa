import os

import pytest

# Nothing may come from a hub; keep caches and sockets inside the test session.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A random-weight tiny Llama with a locally trained tokenizer, built once per test session."""
    from rlhf_ray.models import build_tiny_llama

    return build_tiny_llama(tmp_path_factory.mktemp("tiny") / "policy")


@pytest.fixture(scope="module")
def ray_local():
    """A local Ray for one test module (logical CPUs above the 2 real ones so several actors fit)."""
    import ray

    ray.init(num_cpus=6, include_dashboard=False, log_to_driver=False)
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
