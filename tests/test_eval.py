"""`rlhf-ray eval`: the comparison statistics, and two policies judged end to end on held-out prompts."""

import json

import numpy as np
import pytest

from launch.cli import main
from rlhf_ray.win_rate import compare_scores


def test_compare_scores_by_hand():
    r = compare_scores([1.0, 2.0, 3.0, 4.0], [0.0, 2.0, 5.0, 1.0], n_boot=500)
    assert (r["prompts"], r["wins"], r["ties"], r["losses"]) == (4, 2, 1, 1)
    assert r["win_rate"] == 0.5 and r["tie_rate"] == 0.25 and r["score"] == pytest.approx(0.625)
    assert r["mean_gap"] == pytest.approx((1 + 0 - 2 + 3) / 4)
    assert r["mean_gap_ci"][0] <= r["mean_gap"] <= r["mean_gap_ci"][1]
    assert -2 <= r["mean_gap_ci"][0] and r["mean_gap_ci"][1] <= 3  # a mean of resampled gaps stays in their range
    margin = compare_scores([1.0, 2.0], [1.05, 2.5], tie_margin=0.1, n_boot=100)
    assert (margin["wins"], margin["ties"], margin["losses"]) == (0, 1, 1)
    same = compare_scores([0.7] * 5, [0.2] * 5, n_boot=100)
    assert same["mean_gap_ci"] == pytest.approx([0.5, 0.5]) and same["win_rate_ci"] == [1.0, 1.0]


def test_compare_scores_rejects_bad_input():
    with pytest.raises(ValueError, match="equally long"):
        compare_scores([1.0], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"non-finite judge scores at prompts \[1\]"):
        compare_scores([1.0, float("nan")], [0.0, 0.0])


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(1)
    hits = 0
    for trial in range(200):
        gaps = rng.normal(0.3, 1.0, size=60)
        lo, hi = compare_scores(gaps, np.zeros(60), n_boot=400, seed=trial)["mean_gap_ci"]
        hits += lo <= 0.3 <= hi
    assert 0.88 <= hits / 200 <= 0.99


def test_eval_command_judges_two_policies_on_held_out_prompts(tiny_model_dir, other_policy_dir, tiny_rm_dir, tmp_path,
                                                            ray_local, capsys):
    other = other_policy_dir  # the tiny policy with perturbed weights: it answers differently
    common = ["--judge", str(tiny_rm_dir), f"run.output_dir={tmp_path}/runs", "eval.prompts=6", "eval.bootstrap=200",
              "rollout.engine=hf", "rollout.num_actors=1", "rollout.max_new_tokens=12", "rollout.resources.num_cpus=1",
              "reward.resources.num_cpus=1"]

    assert main(["eval", str(tiny_model_dir), "--against", str(tiny_model_dir), "--out", str(tmp_path / "self"), *common]) == 0
    self_eval = json.loads((tmp_path / "self" / "eval.json").read_text())
    # The same policy, the same seeds: the same answers, so every prompt ties.
    assert (self_eval["prompts"], self_eval["ties"], self_eval["mean_gap"]) == (6, 6, 0.0)
    samples = [json.loads(line) for line in (tmp_path / "self" / "eval_samples.jsonl").open()]
    assert len(samples) == 6 and all(s["a"] == s["b"] for s in samples)

    assert main(["eval", str(other), "--against", str(tiny_model_dir), *common]) == 0
    out = capsys.readouterr().out
    assert "win rate" in out and "mean score gap A-B" in out and "6 held-out prompts" in out
    result = json.loads((tmp_path / "runs" / "eval" / f"other_vs_{tiny_model_dir.name}" / "eval.json").read_text())
    samples_b = [json.loads(line) for line in (tmp_path / "runs" / "eval" / f"other_vs_{tiny_model_dir.name}"
                                                / "eval_samples.jsonl").open()]
    assert result["ties"] < 6  # different answers, different scores
    assert result["wins"] + result["ties"] + result["losses"] == 6
    # B answered and was judged exactly as in the first eval: answers and scores are paired with their prompts.
    assert [s["b"] for s in samples_b] == [s["b"] for s in samples]
    assert [s["score_b"] for s in samples_b] == pytest.approx([s["score_b"] for s in samples], abs=1e-5)


def test_eval_without_a_judge_is_a_clear_error(tiny_model_dir, tmp_path, capsys):
    assert main(["eval", str(tiny_model_dir), "--against", str(tiny_model_dir), f"run.output_dir={tmp_path}"]) == 2
    assert "eval needs a judge" in capsys.readouterr().err


def test_a_gold_run_folder_in_relabel_with_is_the_default_judge(tmp_path):
    from launch.evaluate import gold_judge

    assert gold_judge(None) is None and gold_judge(str(tmp_path)) is None
    (tmp_path / "reward_model").mkdir()
    assert gold_judge(str(tmp_path)) == str(tmp_path / "reward_model")
