"""Checkpoint folders, the replay buffer and run-folder helpers (no Ray)."""

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from rlhf_ray.ppo.replay_buffer import ReplayBuffer
from rlhf_ray.run_dir import load_state, rng_state, set_rng_state, truncate_jsonl
from rlhf_ray.training.checkpoint import (
    DRIVER_STATE,
    checkpoint_iteration,
    commit_checkpoint,
    latest_checkpoint,
    staging_dir,
)


def fake_checkpoint(run_dir, iteration, keep=2):
    staging = staging_dir(run_dir, iteration)
    (staging / DRIVER_STATE).write_bytes(b"state")
    return commit_checkpoint(staging, keep)


def test_only_committed_checkpoints_count_and_old_ones_are_pruned(tmp_path):
    assert latest_checkpoint(tmp_path) is None
    for it in (2, 4, 6):
        fake_checkpoint(tmp_path, it)
    staging_dir(tmp_path, 8)  # a crash while writing iteration 8: never renamed
    latest = latest_checkpoint(tmp_path)
    assert latest.name == "iter_000006" and checkpoint_iteration(latest) == 6
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["iter_000004", "iter_000006", "iter_000008.tmp"]


def test_commit_refuses_a_checkpoint_without_driver_state(tmp_path):
    with pytest.raises(RuntimeError, match="incomplete checkpoint"):
        commit_checkpoint(staging_dir(tmp_path, 1), keep=2)
    assert latest_checkpoint(tmp_path) is None


def test_rng_state_round_trip():
    state = rng_state()
    first = (random.random(), np.random.rand(), torch.rand(1).item())
    set_rng_state(state)
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == first


def test_truncate_jsonl_drops_rows_after_the_checkpoint(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text("".join(json.dumps({"step": s, "x": s * 1.5}) + "\n" for s in (1, 2, 3, 3)))
    assert truncate_jsonl(path, 2) == 2
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2]
    assert truncate_jsonl(tmp_path / "absent.jsonl", 2) == 0


def test_replay_buffer_add_filter_and_state():
    buf = ReplayBuffer()
    buf.add({"input_ids": torch.tensor([[1, 2, 3]]), "scores": torch.tensor([0.5])})
    buf.add({"input_ids": torch.tensor([[4, 5], [6, 7]]), "scores": torch.tensor([1.0, 2.0])})
    assert len(buf) == 3
    assert buf.data["input_ids"].tolist() == [[1, 2, 3], [4, 5, 0], [6, 7, 0]]  # right-padded to the widest row
    buf.filter([2, 0])
    assert buf.data["scores"].tolist() == [2.0, 0.5]
    copy = ReplayBuffer()
    copy.load_state_dict(buf.state_dict())
    assert copy.data["input_ids"].tolist() == [[6, 7, 0], [1, 2, 3]]
    with pytest.raises(ValueError, match="disagree on the number of rows"):
        buf.add({"input_ids": torch.zeros(2, 3), "scores": torch.zeros(1)})
    with pytest.raises(ValueError, match="differ from the buffer"):
        buf.add({"input_ids": torch.zeros(1, 3)})



def test_rng_states_round_trip_through_a_weights_only_load(tmp_path):
    """A checkpoint's RNG states are tensors and plain data: load_state reads them back without unpickling objects,
    and every generator continues where it was saved."""
    random.seed(3), np.random.seed(3), torch.manual_seed(3)
    np.random.normal()  # numpy's cached Gaussian is part of its state
    torch.save(rng_state(), tmp_path / "rng.pt")
    want = (random.random(), np.random.normal(), torch.rand(2))
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    set_rng_state(load_state(tmp_path / "rng.pt"))
    got = (random.random(), np.random.normal(), torch.rand(2))
    assert want[:2] == got[:2] and torch.equal(want[2], got[2])


class RunsCode:
    """Unpickling this calls a function: what a planted checkpoint file would do."""

    def __reduce__(self):
        return print, ("unpickled: code ran",)


def test_a_state_file_that_would_run_code_is_refused_naming_it(tmp_path, capsys):
    torch.save({"iteration": 1, "payload": RunsCode()}, tmp_path / "driver_state.pt")
    with pytest.raises(RuntimeError, match="driver_state.pt: holds more than tensors and plain data"):
        load_state(tmp_path / "driver_state.pt")
    assert "code ran" not in capsys.readouterr().out


class _Learner:
    """Stands in for the learner group: writes a shard, then fails the way torch.save does on a full disk if asked."""

    def __init__(self, fail: bool):
        self.fail = fail

    def run(self, method, path):
        (Path(path) / "deepspeed").mkdir()
        (Path(path) / "deepspeed" / "shard.pt").write_bytes(b"x" * 1000)
        if self.fail:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 4096 vs 4000")
        return [None]


def test_a_checkpoint_write_that_fails_leaves_the_last_one_and_says_so(tmp_path):
    from launch.checkpointing import CheckpointWriteFailed, DriverState, save_ppo_checkpoint
    from rlhf_ray.algorithms import make_kl_controller
    from rlhf_ray.config import Config

    state = DriverState(make_kl_controller("fixed", 0.05))
    state.iteration = 2
    first = save_ppo_checkpoint(tmp_path, Config(), state, _Learner(fail=False), tokenizer=None)
    state.iteration = 4
    with pytest.raises(CheckpointWriteFailed, match=r"writing checkpoint iter_000004 into .*checkpoints failed "
                       r"\(RuntimeError: .*unexpected pos 4096 vs 4000\); [0-9.]+ GiB free there. The partial folder "
                       r"is removed; the last complete checkpoint iter_000002 is intact: .* --resume"):
        save_ppo_checkpoint(tmp_path, Config(), state, _Learner(fail=True), tokenizer=None)
    assert latest_checkpoint(tmp_path) == first and load_state(first / DRIVER_STATE)["iteration"] == 2
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["iter_000002"]


def test_a_metrics_file_cut_short_by_a_kill_resumes_without_its_last_line(tmp_path, caplog):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "r": 0.5}\n{"step": 2, "r": 0.6}\n{"step": 3, "r"')  # killed mid-write
    assert truncate_jsonl(path, 2) == 1
    assert path.read_text() == '{"step": 1, "r": 0.5}\n{"step": 2, "r": 0.6}\n'
    assert "dropping its last line, cut short" in caplog.text
    path.write_text('{"step": 1}\n{"st\n{"step": 2}\n')  # damage inside the file is not a kill's: named, not dropped
    with pytest.raises(ValueError, match=r"metrics.jsonl:2: not a JSON row"):
        truncate_jsonl(path, 2)
