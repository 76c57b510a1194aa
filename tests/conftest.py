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
