"""The environment every rlhf_ray process runs with, set in one place: the CLI applies it to the driver, and
init_ray hands it to every Ray worker through the job's runtime environment (workers on other nodes included)."""

import os

DEFAULTS = {
    "HF_HUB_OFFLINE": "1",  # nothing is fetched from a hub at run time
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    # Ray's token authentication on: Ray's own default for a local cluster, set so Ray does not warn that it chose it,
    # and so a job connecting to a cluster sends its token (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token).
    "RAY_AUTH_MODE": "token",
    "TOKENIZERS_PARALLELISM": "false",  # tokenizers' threads deadlock after a fork
    # transformers' and the hub's bars (loading weights, writing shards): in a Ray actor each update is a log line;
    # the project reports its own progress.
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
}


def node_defaults() -> dict[str, str]:
    """Defaults that follow this node's hardware, so never handed from the driver to workers on other nodes."""
    if os.path.exists("/dev/nvidiactl") and os.environ.get("RLHF_RAY_DEVICE") != "cpu":
        return {}  # DeepSpeed finds the GPU itself
    return {"DS_ACCELERATOR": "cpu"}  # else DeepSpeed warns "unable to detect" a GPU in every process it starts in


def apply_node_defaults() -> None:
    for key, value in node_defaults().items():
        os.environ.setdefault(key, value)


def apply_defaults() -> None:
    """Set each default this process does not already set (a user's own value wins)."""
    for key, value in DEFAULTS.items():
        os.environ.setdefault(key, value)
    apply_node_defaults()


def worker_env() -> dict[str, str]:
    """The values workers get: this process's, after apply_defaults."""
    return {key: os.environ.get(key, value) for key, value in DEFAULTS.items()}
