"""`rlhf-ray seam score|filter|augment` end to end on tiny models: the Ray Data pipeline's numbers checked against
the models themselves, the filter's counts, a PPO prompt set restricted to the kept prompts, and augmented RM pairs."""

import json
import math

import pytest
import torch

from launch.cli import main
from launch.seam import seam_prompt_ids
from launch.trainer import prompt_token_ids
from rlhf_ray.config import load_config
from rlhf_ray.data import load_preferences, prompt_dataset
from rlhf_ray.models import load_policy, load_reward_model, load_tokenizer, rm_sequence, score_sequences
from rlhf_ray.training.rm_data import prepare_rm_data


@pytest.fixture(scope="module")
def scored(tiny_model_dir, tiny_rm_dir, tmp_path_factory, ray_local):
    tmp = tmp_path_factory.mktemp("seam")
    overrides = [f"model.policy={tiny_model_dir}", f"model.reward={tiny_rm_dir}", f"run.output_dir={tmp}/runs",
                 "run.name=gpt", "seam.variant=gpt", "seam.k=2", "seam.degrader_max_tokens=12", "data.max_pairs=8",
                 f"seam.cache={tmp}/cache", "seam.batch_prompts=3", "rollout.max_model_len=512",
                 "rollout.kv_cache_gib=0.5", "rollout.resources.num_cpus=1", "reward.resources.num_cpus=1",
                 "model.mixed_precision=none", "rollout.dtype=float32"]
    (tmp / "c.yaml").write_text("run: {name: gpt}\n")
    assert main(["seam", "score", str(tmp / "c.yaml"), *overrides]) == 0
    run = tmp / "runs" / "gpt"
    return tmp, overrides, run, [json.loads(line) for line in open(run / "seam_scores.jsonl")]


def test_scores_match_the_models_and_the_formula(scored, tiny_model_dir, tiny_rm_dir):
    tmp, overrides, run, rows = scored
    summary = json.loads((run / "seam_summary.json").read_text())
    assert summary["prompts"] == len(rows) > 0 and summary["worse_answers"]["built"] == len(rows)
    assert summary["unscored"] == 0 and summary["nan_answers"] == 0
    cache = [json.loads(line) for line in open(tmp / "cache" / "gpt.jsonl")]
    assert len(cache) == len(rows)
    tok = load_tokenizer(tiny_model_dir)
    policy, rm = load_policy(tiny_model_dir).eval(), load_reward_model(tiny_rm_dir).eval()
    cfg = load_config(None, overrides)
    prompts = seam_prompt_ids(cfg, tok, prompt_dataset(load_preferences(cfg.data).train))
    for row, prompt in zip(rows[:3], prompts):
        assert row["gold"] not in row["worse_answers"] and row["worse"] == len(row["worse_answers"]) <= 2
        # The policy's teacher-forced log-prob of gold + EOS, and the RM's reward of gold, from the models here.
        gold = tok(row["gold"], add_special_tokens=False)["input_ids"][:128]
        ids = torch.tensor([prompt + gold + [tok.eos_token_id]])
        with torch.no_grad():
            lp = policy(ids).logits[0, len(prompt) - 1:-1].float().log_softmax(-1)
        lp = lp.gather(-1, ids[0, len(prompt):, None]).sum().item()
        assert row["gold_logprob"] == pytest.approx(lp, abs=5e-3) and row["gold_tokens"] == len(gold) + 1
        reward = score_sequences(rm, [rm_sequence(prompt, gold, tok.eos_token_id)], tok.pad_token_id, 4, "none")
        assert row["gold_reward"] == pytest.approx(float(reward[0]), abs=1e-4)
    for row in rows:  # the default estimator by a plain loop over the raw numbers
        ll = [row["gold_logprob"] / row["gold_tokens"]] + [a / n for a, n in zip(row["worse_logprob"], row["worse_tokens"])]
        z = sum(math.exp(x) for x in ll)
        mass = sum(math.exp(x) / z for x, r in zip(ll[1:], row["worse_reward"]) if r > row["gold_reward"])
        assert row["seam"] == pytest.approx(1 - mass, abs=1e-9)
        assert row["misjudged"] == sum(r > row["gold_reward"] for r in row["worse_reward"])


def test_filter_drops_the_lowest_and_ppo_uses_the_kept_prompts(scored, tiny_model_dir, capsys):
    tmp, overrides, run, rows = scored
    n = len(rows)
    assert main(["seam", "filter", str(run), "seam.filter=seam", "seam.drop_fraction=0.25"]) == 0
    kept = [json.loads(line) for line in open(run / "seam_prompts_seam_0.25.jsonl")]
    assert len(kept) == n - math.floor(0.25 * n)
    lowest = sorted(rows, key=lambda r: (r["seam"], r["prompt_index"]))[: n - len(kept)]
    assert {r["prompt"] for r in lowest}.isdisjoint(k["prompt"] for k in kept)
    assert main(["seam", "filter", str(run), "seam.filter=random", "seam.drop_fraction=0.25"]) == 0
    assert len(list(open(run / "seam_prompts_random_0.25.jsonl"))) == len(kept)
    assert main(["seam", "filter", str(run)]) == 2  # seam.filter defaults to none: nothing to do, said clearly
    assert "seam.filter=seam" in capsys.readouterr().err
    # A PPO run with data.rl_prompts sees exactly the kept prompts.
    tok = load_tokenizer(tiny_model_dir)
    every = prompt_token_ids(load_config(None, overrides), tok)
    only = prompt_token_ids(load_config(None, [*overrides, f"data.rl_prompts={run / 'seam_prompts_seam_0.25.jsonl'}"]),
                            tok)
    assert len(every) == n and len(only) == len(kept)
    dropped_index = {r["prompt_index"] for r in lowest}
    assert only == [p for i, p in enumerate(every) if i not in dropped_index]


def test_augment_pairs_join_the_rm_train_split_rendered_like_their_source(scored, tmp_path):
    tmp, overrides, run, rows = scored
    assert main(["seam", "augment", str(run), "seam.augment_fraction=0.5"]) == 0
    out = run / "seam_augment_seam_0.5.jsonl"
    pairs = [json.loads(line) for line in open(out)]
    lowest = sorted(rows, key=lambda r: (r["seam"], r["prompt_index"]))[: math.floor(0.5 * len(rows))]
    expected = [(r["prompt"], w) for r in sorted(lowest, key=lambda r: r["prompt_index"])
                for w, reward in zip(r["worse_answers"], r["worse_reward"]) if reward > r["gold_reward"]]
    assert [(p["prompt"], p["rejected"]) for p in pairs] == expected and expected
    assert main(["seam", "augment", str(run), "seam.augment_fraction=0.5", "seam.augment=random"]) == 0
    assert len(list(open(run / "seam_augment_random_0.5.jsonl"))) == len(pairs)

    bad = tmp_path / "bad.jsonl"
    bad.write_text(open(out).readline() + '{"prompt": "x", "chosen": "a", "rejected": "b", "format": "html"}\n')
    cfg = load_config(None, overrides)
    plain = prepare_rm_data(cfg)
    augmented = prepare_rm_data(load_config(None, [*overrides, f"data.augment_pairs=[{out},{bad}]"]))
    n = len(plain.train_rows)
    assert len(augmented.train_rows) == n + len(pairs) + 1 and len(augmented.eval_rows) == len(plain.eval_rows)
    assert sum(augmented.reports[-1]["skipped"].values()) == 1 and "format" in json.dumps(augmented.reports[-1])
    # An added pair's chosen side (its gold answer) encodes exactly as the source's first pair of that prompt: the
    # prompt rendered in its own format (hh_dialogue), the same answer.
    first = next(i for i, r in enumerate(plain.train_rows) if r["prompt"] == pairs[0]["prompt"])
    assert augmented.train_rows[n]["rejected"] == pairs[0]["rejected"]
    assert augmented.pairs[n]["chosen_ids"] == plain.pairs[first]["chosen_ids"]
