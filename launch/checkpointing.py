"""Save and restore a whole PPO run: learner states (all ranks), HF policy/critic, and the driver's own state."""

import logging
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import yaml

from actors.group import ActorDiedError, ActorGroup
from rlhf_ray.algorithms import RunningMoments
from rlhf_ray.config import Config, dump_config
from rlhf_ray.ppo.replay_buffer import ReplayBuffer
from rlhf_ray.rollout.types import Rollouts
from rlhf_ray.run_dir import load_state, rng_state, set_rng_state
from rlhf_ray.training.checkpoint import (
    DRIVER_STATE,
    checkpoint_iteration,
    commit_checkpoint,
    latest_checkpoint,
    staging_dir,
)

from .testing import hang_if_asked

log = logging.getLogger("rlhf_ray.checkpoint")

# Fields a resumed run may change without breaking "continues where it stopped".
RESUMABLE_CHANGES = {"ppo.iterations", "online.rounds", "run.output_dir", "run.name", "run.checkpoint_every", "run.keep_checkpoints", "cluster.address",
                     "cluster.num_cpus", "cluster.placement_timeout_s"}


@dataclass
class DriverState:
    """Everything the driver carries from one iteration to the next."""

    kl_ctl: object
    iteration: int = 0  # iterations completed
    cursor: int = 0  # prompts consumed from the seeded prompt order
    moments: RunningMoments = field(default_factory=RunningMoments)
    buffer: ReplayBuffer = field(default_factory=ReplayBuffer)
    # rollout.one_step_off_policy: the next iteration's prompts and responses, sampled by a policy no longer held.
    ahead: tuple[list[int], Rollouts] | None = None


def save_ppo_checkpoint(run_dir: Path, cfg: Config, state: DriverState, learner: ActorGroup, tokenizer,
                        parts=()) -> Path:
    """parts: callables that write more state into the staging folder (committed with the rest, atomically). A write
    that fails (a full disk, a dead rank) removes the staging folder and says that the last checkpoint is intact."""
    staging = staging_dir(run_dir, state.iteration)
    try:
        learner.run("save_checkpoint", str(staging))  # every rank writes its ZeRO shards; rank 0 the HF folders
        hang_if_asked(f"checkpoint:{state.iteration}")  # a test kills the run here: a half-written checkpoint
        for name in ("policy", "critic"):
            if (staging / name).is_dir():  # no critic folder with a critic-free estimator
                tokenizer.save_pretrained(staging / name)  # a self-contained HF folder that vLLM and transformers load
        (staging / "config.yaml").write_text(dump_config(cfg))
        torch.save({"iteration": state.iteration, "cursor": state.cursor, "kl_ctl": state.kl_ctl.state_dict(),
                    "moments": state.moments.state_dict(), "buffer": state.buffer.state_dict(), "rng": rng_state(),
                    "ahead": state.ahead and (state.ahead[0], asdict(state.ahead[1]))},
                   staging / DRIVER_STATE)
        for part in parts:
            part(staging)
    except Exception as e:
        shutil.rmtree(staging, ignore_errors=True)  # its partial files would hold the space a retry needs
        if isinstance(e, ActorDiedError):  # a lost rank, not the disk: the run's fault handling takes it
            raise
        raise CheckpointWriteFailed(staging, e) from e
    final = commit_checkpoint(staging, cfg.run.keep_checkpoints)
    log.info("checkpoint %s", final)
    return final


class CheckpointWriteFailed(RuntimeError):
    """Writing a checkpoint failed; the message names the folder, the free space there and the last good checkpoint."""

    def __init__(self, staging: Path, cause: Exception):
        free = shutil.disk_usage(staging.parent).free / 2**30
        last = latest_checkpoint(staging.parent.parent)
        reason = (str(cause).strip().splitlines() or [""])[-1]  # a remote error's last line is its own message
        super().__init__(
            f"writing checkpoint {staging.name.removesuffix('.tmp')} into {staging.parent} failed "
            f"({type(cause).__name__}: {reason}); "
            f"{free:.1f} GiB free there. The partial folder is removed; the last complete checkpoint "
            + (f"{last.name} is intact: free space or fix the cause, then run again with --resume" if last
               else "does not exist (this was the first)"))


def restore_ppo_checkpoint(ckpt: Path, cfg: Config, state: DriverState, learner: ActorGroup) -> None:
    """Load a committed checkpoint into the learner group and `state`; warn about config changes that matter."""
    warn_config_changes(ckpt, cfg)
    saved = load_state(ckpt / DRIVER_STATE)
    if saved["iteration"] != checkpoint_iteration(ckpt):
        raise RuntimeError(f"{ckpt}: driver state says iteration {saved['iteration']}, the folder name disagrees")
    updates = learner.run("load_checkpoint", str(ckpt))
    if len(set(updates)) != 1:
        raise RuntimeError(f"{ckpt}: learner ranks restored different update counts {updates}")
    state.iteration, state.cursor = saved["iteration"], saved["cursor"]
    state.kl_ctl.load_state_dict(saved["kl_ctl"])
    state.moments.load_state_dict(saved["moments"])
    state.buffer.load_state_dict(saved["buffer"])
    ahead = saved.get("ahead")
    state.ahead = ahead and (ahead[0], Rollouts(**ahead[1]))
    set_rng_state(saved["rng"])
    log.info("resumed from %s: %d iterations done, %d prompts consumed, KL coef %.4g", ckpt, state.iteration,
             state.cursor, state.kl_ctl.value)


def warn_config_changes(ckpt: Path, cfg: Config) -> None:
    old = _flatten(yaml.safe_load((ckpt / "config.yaml").read_text()))
    new = _flatten(cfg.model_dump(mode="json"))
    changed = sorted(k for k in old.keys() | new.keys() if old.get(k) != new.get(k) and k not in RESUMABLE_CHANGES)
    for key in changed:
        log.warning("resuming with %s = %r, but the checkpoint was written with %r", key, new.get(key), old.get(key))


def _flatten(tree: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out |= _flatten(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out
