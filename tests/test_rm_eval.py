"""`rlhf-ray rm eval`: a saved RM scored on every pair of files it never saw, overall and per file."""

import json

import pytest
import torch
from datasets import Dataset

from launch.cli import main
from rlhf_ray.data.tokenize import encode_sequence, render_prompt
from rlhf_ray.models import load_reward_model, load_tokenizer, score_sequences


def test_rm_eval_scores_every_pair_of_every_format_and_file(tiny_rm_dir, ray_local, tmp_path, capsys):
    strings = [{"prompt": f"Question {i}?", "chosen": f"Answer {i} " * (i + 1), "rejected": "No."} for i in range(5)]
    strings.append({"prompt": "Question 9?", "chosen": "same", "rejected": "same"})  # a bad row: counted, not scored
    (tmp_path / "strings.jsonl").write_text("".join(json.dumps(r) + "\n" for r in strings))
    conversational = [{"prompt": [{"role": "user", "content": f"Colour {i}?"}],
                       "chosen": [{"role": "assistant", "content": "Blue " * i + "!"}],
                       "rejected": [{"role": "assistant", "content": f"{i}"}]} for i in range(1, 4)]
    Dataset.from_list(conversational).to_parquet(str(tmp_path / "conv.parquet"))
    config = tmp_path / "held_out.yaml"
    config.write_text(f"data:\n  source: files\n  paths: [{tmp_path / 'strings.jsonl'}, {tmp_path / 'conv.parquet'}]\n"
                      "model:\n  mixed_precision: none\n")
    out = tmp_path / "out"
    assert main(["rm", "eval", str(tiny_rm_dir), str(config), "--out", str(out), "--no-progress",
                 "reward.num_actors=2", "reward.resources.num_cpus=1", "reward.batch_size=2"]) == 0
    printed = capsys.readouterr().out
    result = json.loads((out / "rm_eval.json").read_text())
    assert result["overall"]["pairs"] == 8 and "all files" in printed and "conv.parquet" in printed
    assert [m["pairs"] for m in result["per_file"].values()] == [5, 3]
    assert result["data"][0]["skipped"] == {"chosen and rejected are identical": 1}

    # The same rewards computed here, without Ray: the RM's forward on each rendered, encoded pair.
    tok, model = load_tokenizer(tiny_rm_dir), load_reward_model(tiny_rm_dir)
    rows = [(r["prompt"], "plain", r["chosen"], r["rejected"]) for r in strings[:5]]
    rows += [(r["prompt"][0]["content"], "plain", r["chosen"][0]["content"], r["rejected"][0]["content"])
             for r in conversational]
    seqs = [encode_sequence(tok, render_prompt(tok, p, fmt), resp, 512, 128)[0]
            for p, fmt, c, r in rows for resp in (c, r)]
    ref = score_sequences(model, seqs, tok.pad_token_id, batch_size=4)
    ref_chosen, ref_rejected = ref[0::2], ref[1::2]
    scores = [json.loads(line) for line in (out / "rm_eval_scores.jsonl").open()]
    assert [s["line"] for s in scores] == [1, 2, 3, 4, 5, 0, 1, 2]  # JSONL lines, then the parquet's indices
    assert [s["chosen_reward"] for s in scores] == pytest.approx(ref_chosen.tolist(), abs=1e-5)
    assert [s["rejected_reward"] for s in scores] == pytest.approx(ref_rejected.tolist(), abs=1e-5)
    assert result["overall"]["accuracy"] == pytest.approx((ref_chosen > ref_rejected).float().mean().item())
    gap = (ref_chosen - ref_rejected)[5:].mean().item()
    assert result["per_file"][str(tmp_path / "conv.parquet")]["reward_gap"] == pytest.approx(gap, abs=1e-5)
    assert result["overall"]["loss"] == pytest.approx(
        -torch.nn.functional.logsigmoid(ref_chosen - ref_rejected).mean().item(), abs=1e-5)


def test_rm_eval_of_a_folder_without_a_model_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text("data:\n  source: tldr\n")
    assert main(["rm", "eval", str(tmp_path), str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "neither a reward model folder" in capsys.readouterr().err
