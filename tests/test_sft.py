"""`rlhf-ray sft`: the response-only loss against a plain loop, the encoding's mask, and an end-to-end run on a ZeRO-2
group of 2 that learns a rule, keeps its checkpoint ladder and saves a policy whose loss is the one it reported."""

import json
import math
import random

import pytest
import torch

from launch.sft import run_sft, sft_examples
from rlhf_ray.config import load_config
from rlhf_ray.data.tokenize import render_prompt
from rlhf_ray.metrics import read_metrics
from rlhf_ray.models import load_policy, load_tokenizer
from rlhf_ray.run_dir import prepare_run_dir
from rlhf_ray.training.sft import encode_sft, response_nll, sft_batch

WORDS = "the a river stone blue green quick slow house tree light dark".split()


def test_response_nll_against_a_plain_loop():
    torch.manual_seed(0)
    logits = torch.randn(2, 6, 11)
    ids = torch.randint(0, 11, (2, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]])
    nll, n = response_nll(logits, ids, mask)
    for b in range(2):
        expected = sum(-torch.log_softmax(logits[b, t - 1], -1)[ids[b, t]].item() for t in range(1, 6) if mask[b, t])
        assert nll[b].item() == pytest.approx(expected, rel=1e-5) and n[b].item() == mask[b, 1:].sum().item()


def test_encode_sft_marks_exactly_the_answer_and_eos(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    rows = [{"prompt": "Say something", "format": "plain", "gold": "blue house :)"},
            {"prompt": "word " * 200, "format": "plain", "gold": "green " * 100}]
    (short, long_), stats = encode_sft(tok, rows, max_len=64, max_response_len=16)
    answer = tok("blue house :)", add_special_tokens=False)["input_ids"]
    assert short["input_ids"][short["prompt_len"]:] == answer + [tok.eos_token_id]
    prompt = tok(render_prompt(tok, "Say something", "plain"), add_special_tokens=False)["input_ids"]
    assert short["input_ids"][: short["prompt_len"]] == prompt
    assert len(long_["input_ids"]) == 64 and len(long_["input_ids"]) - long_["prompt_len"] == 16
    assert stats.truncated == {"prompt": 1, "response": 1}
    ids, attn, loss_mask = sft_batch([short, long_], tok.pad_token_id)
    assert loss_mask.sum().item() == len(answer) + 1 + 16 and attn[0].sum().item() == len(short["input_ids"])


def test_sft_learns_the_gold_responses_and_keeps_a_ladder(tiny_model_dir, tmp_path, ray_local):
    rng = random.Random(0)
    data = tmp_path / "pairs.jsonl"
    with open(data, "w") as f:  # gold answers: the question's words echoed, then ':)'
        for _ in range(160):
            body = " ".join(rng.choice(WORDS) for _ in range(rng.randint(2, 6)))
            f.write(json.dumps({"question": f"Echo {body}", "good": f"{body} :)", "bad": f"{body} :("}) + "\n")
    cfg = load_config(None, [
        f"model.policy={tiny_model_dir}", "model.max_len=64", "model.max_response_len=24", "model.mixed_precision=none",
        "data.source=jsonl", f"data.paths=[{data}]", "data.fields.prompt=question", "data.fields.chosen=good",
        "data.fields.rejected=bad", "data.eval_fraction=0.2", "sft.lr=3e-3", "sft.batch_size=16",
        "sft.micro_batch_size=4", "sft.epochs=3", "sft.max_steps=18", "sft.eval_every=9", "sft.save_every=6",
        f"run.output_dir={tmp_path}/runs", "run.name=sft", "learner.world_size=2", "learner.zero_stage=2",
        "learner.resources.threads=1",
    ])
    run_dir = prepare_run_dir(cfg)
    summary = run_sft(cfg, run_dir, show_progress=False)
    rows = read_metrics(run_dir / "metrics.jsonl")
    evals = {r["step"]: r["eval/loss"] for r in rows if "eval/loss" in r}
    assert list(evals) == [0, 9, 18] and summary["steps"] == 18
    assert evals[18] < 0.5 * evals[0]  # the rule is learnt: the held-out gold answers became likely
    assert [p.name for p in sorted((run_dir / "checkpoints").iterdir())] == ["step-000006", "step-000012", "step-000018"]
    assert summary["checkpoints"][-1].endswith("step-000018") and all(r["train/loss"] > 0 for r in rows if r["step"])

    # The saved policy, outside the learner, has the held-out loss the run reported.
    _, held, _ = sft_examples(cfg)
    policy, tok = load_policy(summary["policy"]).eval(), load_tokenizer(summary["policy"])
    total, count = 0.0, 0.0
    with torch.no_grad():
        for e in held:
            ids, attn, mask = sft_batch([e], tok.pad_token_id)
            nll, n = response_nll(policy(input_ids=ids, attention_mask=attn).logits, ids, mask)
            total, count = total + nll.item(), count + n.item()
    assert summary["eval_examples"] == len(held) > 0
    assert total / count == pytest.approx(summary["eval/loss"], rel=1e-4)
    assert math.isfinite(summary["eval/perplexity"])
