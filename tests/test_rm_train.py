"""End to end: `rm train` on a DeepSpeed RM learner group learns a synthetic rule and writes a complete run folder."""

import json
import random

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from launch.rm_train import run_rm_train
from rlhf_ray.config import load_config
from rlhf_ray.metrics import read_metrics
from rlhf_ray.run_dir import prepare_run_dir

WORDS = "the a river stone blue green quick slow house tree light dark".split()


def synthetic_pairs(path, n=320, seed=0):
    """Learnable rule: the preferred response ends with ':)' and the other with ':(' after the same words."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8)))
            f.write(json.dumps({"question": f"Say something {i}", "good": body + " :)", "bad": body + " :("}) + "\n")


@pytest.mark.parametrize("world_size, zero_stage", [pytest.param(1, 0, marks=pytest.mark.long), (2, 2)])
def test_rm_learns_a_rule_and_writes_the_run_folder(tiny_model_dir, tmp_path, ray_local, world_size, zero_stage):
    data = tmp_path / "pairs.jsonl"
    synthetic_pairs(data)
    cfg = load_config(None, [
        f"model.policy={tiny_model_dir}", "model.max_len=64", "model.max_response_len=32",
        "data.source=jsonl", f"data.paths=[{data}]", "data.fields.prompt=question", "data.fields.chosen=good",
        "data.fields.rejected=bad", "data.eval_fraction=0.2",
        "rm.lr=3e-3", "rm.batch_size=16", "rm.micro_batch_size=8", "rm.epochs=2", "rm.max_steps=30", "rm.warmup_steps=3",
        "rm.eval_every=15", "rm.save_every=10", "run.keep_checkpoints=1", f"run.output_dir={tmp_path}/runs", "run.name=tiny",
        f"learner.world_size={world_size}", f"learner.zero_stage={zero_stage}", "learner.resources.threads=1",
    ])
    run_dir = prepare_run_dir(cfg)
    summary = run_rm_train(cfg, run_dir, show_progress=False)

    rows = read_metrics(run_dir / "metrics.jsonl")
    evals = [r for r in rows if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 15, 30]
    assert evals[0]["eval/accuracy"] < 0.8  # the untrained head cannot know the rule
    assert summary["eval/accuracy"] >= 0.9 and summary["eval_pairs"] > 30
    assert all("train/loss" in r and "perf/tokens_per_s" in r for r in rows if r["step"] > 0)
    assert all(r["train/grad_norm"] > 0 for r in rows if r["step"] > 0)  # the real norm, ZeRO-0 included
    assert [p.name for p in (run_dir / "checkpoints").iterdir()] == ["step-000020"]  # step 10 pruned, 30 is final
    assert (run_dir / "config.yaml").is_file() and (run_dir / "data_report.json").is_file()
    assert any((run_dir / "tensorboard").iterdir())
    page = (run_dir / "report.html").read_text()  # the run's report: its curves embedded, its summary
    assert "<figcaption>RM training</figcaption>" in page and "<figcaption>RM held-out</figcaption>" in page
    assert "summary.json" in page and (run_dir / "report" / "rm_eval.png").is_file()

    # The saved RM is a plain transformers model that still knows the rule.
    reloaded = AutoModelForSequenceClassification.from_pretrained(summary["reward_model"]).eval()
    tok = AutoTokenizer.from_pretrained(summary["reward_model"])
    texts = [tok.apply_chat_template([{"role": "user", "content": "Say something"}], tokenize=False,
                                     add_generation_prompt=True) + "blue house" + end + tok.eos_token for end in (" :)", " :(")]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        good, bad = reloaded(**batch).logits.squeeze(-1).tolist()
    assert good > bad


# simcse's loss and views are unit-tested (test_rm_methods.py, test_rm_training_parts.py); one group run by default.
@pytest.mark.parametrize("method, world_size, zero_stage", [pytest.param("simcse", 1, 0, marks=pytest.mark.long),
                                                            ("swav_diff", 2, 3)])
def test_contrastive_rm_learns_the_rule(tiny_model_dir, tmp_path, ray_local, method, world_size, zero_stage):
    data = tmp_path / "pairs.jsonl"
    synthetic_pairs(data)
    cfg = load_config(None, [
        f"model.policy={tiny_model_dir}", "model.max_len=64", "model.max_response_len=32",
        "data.source=jsonl", f"data.paths=[{data}]", "data.fields.prompt=question", "data.fields.chosen=good",
        "data.fields.rejected=bad", "data.eval_fraction=0.2", f"rm.contrastive.method={method}",
        "rm.lr=3e-3", "rm.batch_size=16", "rm.micro_batch_size=8", "rm.max_steps=24", "rm.warmup_steps=3",
        "rm.eval_every=100", f"run.output_dir={tmp_path}/runs", "run.name=cl",
        f"learner.world_size={world_size}", f"learner.zero_stage={zero_stage}", "learner.resources.threads=1",
    ])
    summary = run_rm_train(cfg, prepare_run_dir(cfg), show_progress=False)
    rows = read_metrics(tmp_path / "runs" / "cl" / "metrics.jsonl")
    assert all(r["train/contrastive_loss"] > 0 for r in rows if r["step"] > 0)
    assert summary["eval/accuracy"] >= 0.9
    # The saved RM is a plain classifier: the SwAV prototypes stay out of it.
    reloaded = AutoModelForSequenceClassification.from_pretrained(summary["reward_model"])
    assert not any("prototypes" in k for k in reloaded.state_dict())


def test_zero3_accumulation_matches_one_rank(tiny_model_dir, tmp_path, ray_local):
    """Two ranks x two accumulated micro-batches under ZeRO-3 take the same steps as one rank with one big batch
    (a micro-batch that overwrote instead of adding its gradient would change every later loss)."""
    data = tmp_path / "pairs.jsonl"
    synthetic_pairs(data)
    losses = {}
    for world_size, zero_stage, micro in ((1, 0, 16), (2, 3, 4)):
        name = f"w{world_size}"
        cfg = load_config(None, [
            f"model.policy={tiny_model_dir}", "model.max_len=64", "model.max_response_len=32",
            "data.source=jsonl", f"data.paths=[{data}]", "data.fields.prompt=question", "data.fields.chosen=good",
            "data.fields.rejected=bad", "data.eval_fraction=0.2", "rm.lr=3e-3", "rm.batch_size=16",
            f"rm.micro_batch_size={micro}", "rm.max_steps=6", "rm.warmup_steps=0", "rm.lr_schedule=constant_with_warmup",
            "model.mixed_precision=none",  # fp32: losses compared to 2e-3 across different micro-batch splits
            "rm.eval_every=100", f"run.output_dir={tmp_path}/runs", f"run.name={name}",
            f"learner.world_size={world_size}", f"learner.zero_stage={zero_stage}", "learner.resources.threads=1",
        ])
        run_rm_train(cfg, prepare_run_dir(cfg), show_progress=False)
        rows = read_metrics(tmp_path / "runs" / name / "metrics.jsonl")
        losses[name] = [r["train/loss"] for r in rows if r["step"] > 0]
    assert len(losses["w1"]) == 6
    assert losses["w2"] == pytest.approx(losses["w1"], abs=2e-3)
    assert abs(losses["w1"][-1] - losses["w1"][0]) > 0.02  # the steps moved the loss: the comparison has teeth
