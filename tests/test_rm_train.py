"""End to end: the RM trainer on a tiny model learns a synthetic rule and writes a complete run folder."""

import json
import random

import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rlhf_ray.config import load_config
from rlhf_ray.metrics import read_metrics
from rlhf_ray.run_dir import prepare_run_dir
from rlhf_ray.training.rm_trainer import train_reward_model

WORDS = "the a river stone blue green quick slow house tree light dark".split()


def synthetic_pairs(path, n=320, seed=0):
    """Learnable rule: the preferred response ends with ':)' and the other with ':(' after the same words."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 8)))
            f.write(json.dumps({"question": f"Say something {i}", "good": body + " :)", "bad": body + " :("}) + "\n")


def test_rm_learns_a_rule_and_writes_the_run_folder(tiny_model_dir, tmp_path):
    data = tmp_path / "pairs.jsonl"
    synthetic_pairs(data)
    cfg = load_config(None, [
        f"model.policy={tiny_model_dir}", "model.max_len=64", "model.max_response_len=32",
        "data.source=jsonl", f"data.paths=[{data}]", "data.fields.prompt=question", "data.fields.chosen=good",
        "data.fields.rejected=bad", "data.eval_fraction=0.2",
        "rm.lr=3e-3", "rm.batch_size=16", "rm.micro_batch_size=16", "rm.epochs=2", "rm.max_steps=30", "rm.warmup_steps=3",
        "rm.eval_every=15", f"run.output_dir={tmp_path}/runs", "run.name=tiny",
    ])
    run_dir = prepare_run_dir(cfg)
    summary = train_reward_model(cfg, run_dir, show_progress=False)

    rows = read_metrics(run_dir / "metrics.jsonl")
    evals = [r for r in rows if "eval/accuracy" in r]
    assert [r["step"] for r in evals] == [0, 15, 30]
    assert evals[0]["eval/accuracy"] < 0.8  # the untrained head cannot know the rule
    assert summary["eval/accuracy"] >= 0.9 and summary["eval_pairs"] > 30
    assert all("train/loss" in r and "perf/tokens_per_s" in r for r in rows if r["step"] > 0)
    assert (run_dir / "config.yaml").is_file() and (run_dir / "data_report.json").is_file()
    assert any((run_dir / "tensorboard").iterdir())

    # The saved RM is a plain transformers model that still knows the rule.
    reloaded = AutoModelForSequenceClassification.from_pretrained(summary["reward_model"]).eval()
    tok = AutoTokenizer.from_pretrained(summary["reward_model"])
    texts = [tok.apply_chat_template([{"role": "user", "content": "Say something"}], tokenize=False,
                                     add_generation_prompt=True) + "blue house" + end + tok.eos_token for end in (" :)", " :(")]
    batch = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
    with torch.no_grad():
        good, bad = reloaded(**batch).logits.squeeze(-1).tolist()
    assert good > bad
