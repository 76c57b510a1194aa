"""The reward-rise test and the reward/KL plot of a run folder (rlhf_ray/learning_curve.py)."""

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from rlhf_ray.learning_curve import describe_rise, prompt_means, reward_rise, write_learning_report

REPO = Path(__file__).resolve().parent.parent


def test_prompt_means_average_each_prompts_samples_per_iteration():
    rows = [{"step": 1, "prompt_index": 7, "score": 1.0}, {"step": 1, "prompt_index": 7, "score": 3.0},
            {"step": 1, "prompt_index": 2, "score": -1.0}, {"step": 2, "prompt_index": 7, "score": 5.0}]
    assert prompt_means(rows) == {1: {2: -1.0, 7: 2.0}, 2: {7: 5.0}}


def units_of(means: dict[int, list[float]]) -> dict[int, dict[int, float]]:
    """Prompt means with a new prompt in every slot (no prompt seen twice: the Welch comparison)."""
    return {step: {100 * step + i: m for i, m in enumerate(values)} for step, values in means.items()}


def test_reward_rise_by_hand():
    # 4 iterations: quarter = 1. First [0, 1]: mean 0.5, var 0.5; last [2, 3]: mean 2.5, var 0.5.
    rise = reward_rise(units_of({1: [0.0, 1.0], 2: [9.0, 9.0], 3: [-9.0, -9.0], 4: [2.0, 3.0]}))
    assert rise["test"] == "welch" and rise["quarter"] == 1 and rise["first_mean"] == 0.5 and rise["last_mean"] == 2.5
    assert rise["standard_error"] == pytest.approx(math.sqrt(0.5 / 2 + 0.5 / 2))
    assert rise["z"] == pytest.approx(2 / math.sqrt(0.5)) and rise["rises"]  # 2.83 standard errors
    assert "rises beyond noise" in describe_rise(rise)


def test_a_rise_within_two_standard_errors_is_not_called_a_rise():
    # 8 iterations: quarters of 2; first [0, 1, 0, 1] mean 0.5, last [0.5, 1.5, 0.5, 1.5] mean 1.0, se 0.41.
    units = {1: [0.0, 1.0], 2: [0.0, 1.0], **{i: [5.0, 5.0] for i in range(3, 7)}, 7: [0.5, 1.5], 8: [0.5, 1.5]}
    rise = reward_rise(units_of(units))
    assert rise["quarter"] == 2 and rise["difference"] == pytest.approx(0.5)
    assert rise["standard_error"] == pytest.approx(math.sqrt(1 / 3 / 4 + 1 / 3 / 4))
    assert not rise["rises"] and "does not rise" in describe_rise(rise)


def test_the_same_prompts_in_both_quarters_are_paired():
    # Prompts 1-3 in iterations 1 and 4 (quarter = 1). Their difficulty differs by far more than the change (+0.1,
    # +0.2, +0.3): paired, the mean change 0.2 has standard error 0.1 / sqrt(3); Welch's would be about 10.
    units = {1: {1: 0.0, 2: 10.0, 3: -10.0}, 2: {4: 0.0}, 3: {5: 0.0}, 4: {1: 0.1, 2: 10.2, 3: -9.7}}
    rise = reward_rise(units)
    assert rise["test"] == "paired" and rise["first_n"] == rise["last_n"] == 3
    assert rise["difference"] == pytest.approx(0.2)
    assert rise["standard_error"] == pytest.approx(0.1 / math.sqrt(3))
    assert rise["rises"] and "the same 3 prompts, paired" in describe_rise(rise)
    # One prompt differs: no pairing, and the prompts' spread swamps the change.
    units[4] = {1: 0.1, 2: 10.2, 6: -9.7}
    assert reward_rise(units)["test"] == "welch" and not reward_rise(units)["rises"]


def test_reward_rise_needs_two_iterations():
    with pytest.raises(ValueError, match="at least 2 iterations"):
        reward_rise(units_of({1: [0.0, 1.0]}))


def test_write_learning_report_writes_the_plot_and_the_test(tmp_path):
    rows, samples = [], []
    for step in range(1, 5):
        rows.append({"step": step, "reward/mean": step / 10, "kl/mean": step / 100})
        samples += [{"step": step, "prompt_index": p, "score": step + p / 10} for p in range(3) for _ in range(2)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "samples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in samples))
    rise = write_learning_report(tmp_path)
    assert rise["rises"] and rise["first_mean"] == pytest.approx(1.1) and rise["last_mean"] == pytest.approx(4.1)
    assert json.loads((tmp_path / "learning.json").read_text())["difference"] == pytest.approx(3.0)
    assert (tmp_path / "reward_kl.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_without_samples_only_the_plot_is_written(tmp_path):
    (tmp_path / "metrics.jsonl").write_text("".join(
        json.dumps({"step": s, "reward/mean": 0.1 * s, "kl/mean": 0.0}) + "\n" for s in (1, 2, 3)))
    assert write_learning_report(tmp_path) is None
    assert (tmp_path / "reward_kl.png").exists() and not (tmp_path / "learning.json").exists()


def test_gpu_learner_benchmark_runs_its_tiny_shape_on_cpu(tmp_path):
    """bench/gpu_learner.py is for a GPU; its tiny shape checks on a CPU that it runs and reports every figure."""
    subprocess.run([sys.executable, str(REPO / "bench" / "gpu_learner.py"), "--models", "tiny", "--batch", "2",
                    "--prompt-len", "12", "--response-len", "6", "--steps", "1", "--out", str(tmp_path)],
                   check=True, capture_output=True, timeout=300)
    result = json.loads((tmp_path / "gpu_learner.json").read_text())
    (row,) = result["models"]
    assert row["model"] == "tiny" and row["tokens_per_step"] == 2 * 18
    for phase in ("experience", "learn", "step"):
        assert row[phase]["tokens_per_s"] > 0 and 0 < row[phase]["mfu"] < 1
    assert "| tiny |" in (tmp_path / "gpu_learner.md").read_text()
