"""End to end on tiny models: `rm strength` (M=3) finds the noisy labels, and `rm train` denoises with its file."""

import json
import random

import pytest

from launch.rm_strength import run_strength
from launch.rm_train import run_rm_train
from rlhf_ray.config import load_config
from rlhf_ray.metrics import read_metrics
from rlhf_ray.run_dir import prepare_run_dir

WORDS = "the a river stone blue green quick slow house tree light dark".split()


def noisy_pairs(path, n=320, noise=0.2, seed=0) -> set[str]:
    """The ':)' response is preferred, except for a `noise` share of rows whose labels are swapped; returns their prompts."""
    rng = random.Random(seed)
    noisy = set()
    with open(path, "w") as f:
        for i in range(n):
            body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8)))
            good, bad = body + " :)", body + " :("
            if rng.random() < noise:
                good, bad = bad, good
                noisy.add(f"Say something {i}")
            f.write(json.dumps({"question": f"Say something {i}", "good": good, "bad": bad}) + "\n")
    return noisy


def base_overrides(tiny_model_dir, data, tmp_path, name):
    return [
        f"model.policy={tiny_model_dir}", "model.max_len=64", "model.max_response_len=32",
        "data.source=jsonl", f"data.paths=[{data}]", "data.fields.prompt=question", "data.fields.chosen=good",
        "data.fields.rejected=bad", "data.eval_fraction=0.2",
        "rm.lr=3e-3", "rm.batch_size=16", "rm.micro_batch_size=8", "rm.epochs=2", "rm.max_steps=24", "rm.warmup_steps=2",
        "rm.eval_every=100", f"run.output_dir={tmp_path}/runs", f"run.name={name}", "learner.zero_stage=0",
        "learner.resources.threads=1",
    ]


@pytest.fixture(scope="module")
def strength_run(tiny_model_dir, tmp_path_factory, ray_local):
    tmp = tmp_path_factory.mktemp("strength")
    data = tmp / "pairs.jsonl"
    noisy = noisy_pairs(data)
    cfg = load_config(None, base_overrides(tiny_model_dir, data, tmp, "strength")
                      + ["strength.members=3", "strength.std_groups=8", "strength.retrain_groups=4"])
    run_dir = prepare_run_dir(cfg)
    return tmp, data, noisy, run_dir, run_strength(cfg, run_dir, show_progress=False)


def test_strength_writes_the_annotated_file_and_plot(strength_run):
    _, _, noisy, run_dir, summary = strength_run
    rows = [json.loads(line) for line in open(summary["annotated"])]
    assert {r["split"] for r in rows} == {"train", "eval"}
    assert len([r for r in rows if r["split"] == "train"]) == summary["train_pairs"] > 200
    for r in rows[:20]:
        diffs = [c - j for c, j in zip(r["chosen_scores"], r["rejected_scores"])]
        assert len(diffs) == 3
        mean = sum(diffs) / 3
        assert r["strength_mean"] == pytest.approx(mean, abs=1e-5)
        assert r["strength_std"] == pytest.approx((sum((d - mean) ** 2 for d in diffs) / 3) ** 0.5, abs=1e-5)
    assert max(r["strength_std"] for r in rows) > 1e-3  # members differ: each shuffled with its own seed
    # The ensemble learned the majority rule, so the swapped rows get the lowest strength.
    train = [r for r in rows if r["split"] == "train"]
    mu_noisy = [r["strength_mean"] for r in train if r["prompt"] in noisy]
    mu_clean = [r["strength_mean"] for r in train if r["prompt"] not in noisy]
    assert len(mu_noisy) > 20 and sum(mu_noisy) / len(mu_noisy) < 0 < sum(mu_clean) / len(mu_clean)
    bottom = sorted(train, key=lambda r: r["strength_mean"])[: len(train) // 5]  # what rm.flip would swap
    assert sum(r["prompt"] in noisy for r in bottom) / len(bottom) > 0.7
    assert 0.1 < summary["share_negative_train"] < 0.4
    assert open(summary["plot"], "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert len(summary["std_groups"]) == 8 and len(summary["retrain_groups"]) == 4
    assert len(summary["member_eval_accuracy"]) == 3
    # An RM trained on the lowest-strength group alone learns the swapped labels: below chance on held-out.
    acc = [g["eval_accuracy"] for g in summary["retrain_groups"]]
    assert acc[0] < 0.5 < acc[-1]
    assert (run_dir / "strength_summary.json").is_file()


def test_rm_train_denoises_with_the_strength_file(strength_run, tiny_model_dir):
    tmp, data, noisy, _, summary = strength_run
    cfg = load_config(None, base_overrides(tiny_model_dir, data, tmp, "denoised") + [
        f"rm.strength_file={summary['annotated']}", "rm.flip=true", "rm.soft_label=true", "rm.adaptive_margin=true"])
    run_dir = prepare_run_dir(cfg)
    result = run_rm_train(cfg, run_dir, show_progress=False)
    n_train = summary["train_pairs"]
    mus = sorted(json.loads(line)["strength_mean"] for line in open(summary["annotated"]) if '"split": "train"' in line)
    flipped = int(0.2 * n_train)
    still_negative = sum(m < 0 for m in mus[flipped:])  # after the flip only these get the soft label
    assert result["denoise"] == {"flipped": flipped, "soft_labelled": still_negative,
                                 "margin_mean": pytest.approx((-sum(mus[:flipped]) + sum(mus[flipped:])) / n_train, rel=1e-4)}
    assert result["eval/confident/pairs"] > 0 and "eval/confident/accuracy" in result
    # The held-out labels are noisy too: the confident subset (labels the ensemble agrees with) scores higher.
    assert result["eval/confident/accuracy"] > result["eval/accuracy"]
    assert read_metrics(run_dir / "metrics.jsonl")[-1]["eval/confident/pairs"] == result["eval/confident/pairs"]
