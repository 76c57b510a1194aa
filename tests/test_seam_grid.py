"""`rlhf-ray seam grid` on tiny models: an `sft` run's two checkpoints x two RMs, each cell a Ray Tune trial that runs
PPO measuring SEAM and a gold eval; the table, the heatmap and a rerun that resumes instead of redoing the cells."""

import json
import math
import time

import pytest
import torch
from PIL import Image

from launch.cli import main
from rlhf_ray.models import load_tokenizer, reward_model_from_lm

pytest.importorskip("vllm")


def test_a_2x2_grid_writes_every_cell_the_table_and_the_heatmap(ray_local, tiny_model_dir, tiny_rm_dir, tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("run: {seed: 0}\n")
    tiny = [f"model.policy={tiny_model_dir}", f"run.output_dir={tmp_path}/runs", "data.max_pairs=32",
            "model.mixed_precision=none", "learner.world_size=1", "learner.zero_stage=0", "learner.resources.threads=1"]
    # The policy ladder: an sft run with a checkpoint every 2 of its 4 steps.
    assert main(["sft", str(config), *tiny, "run.name=sft", "sft.batch_size=8", "sft.micro_batch_size=4", "sft.max_steps=4",
                 "sft.save_every=2", "sft.lr=1e-3", "--no-progress"]) == 0
    other_rm = tmp_path / "rm_b"  # a second RM rung: another random head on the same backbone
    torch.manual_seed(1)
    tok = load_tokenizer(tiny_model_dir)
    reward_model_from_lm(tiny_model_dir, pad_token_id=tok.pad_token_id).save_pretrained(other_rm)
    tok.save_pretrained(other_rm)

    grid = [*tiny, "run.name=grid", f"seam.grid.policies=[{tmp_path}/runs/sft]", f"seam.grid.rms=[{tiny_rm_dir},{other_rm}]",
            f"eval.judge={tiny_rm_dir}", "eval.prompts=4", "eval.bootstrap=200", "seam.variant=adv", "seam.k=2",
            f"seam.cache={tmp_path}/cache", "ppo.iterations=1", "ppo.prompts_per_iteration=4", "rollout.n_samples=2",
            "rollout.max_new_tokens=8", "rollout.max_model_len=320", "rollout.kv_cache_gib=0.5",
            "rollout.resources.num_cpus=1", "reward.resources.num_cpus=0.5", "learner.micro_batch_size=8"]
    assert main(["seam", "grid", str(config), *grid]) == 0
    out = tmp_path / "runs" / "grid"
    result = json.loads((out / "grid.json").read_text())
    cells = {c["cell"]: c for c in result["cells"]}
    assert [p.rsplit("/", 1)[-1] for p in result["policies"]] == ["step-000002", "step-000004"]
    assert sorted(cells) == ["policy0_rm0", "policy0_rm1", "policy1_rm0", "policy1_rm1"]
    for c in cells.values():
        assert "error" not in c and c["iterations"] == 1 and c["prompts"] == 4
        assert 0 <= c["seam"] <= 1 and c["seam_prompts"] == 4 and 0 <= c["win_rate"] <= 1
        assert c["win_rate_ci"][0] <= c["win_rate"] <= c["win_rate_ci"][1] and math.isfinite(c["gold_mean"])
        assert (out / "cells" / c["cell"] / "eval" / "eval.json").is_file()  # the cell's own run folder
    # Each cell ran its own policy and RM: the RM rungs score the same policy's prompts differently.
    assert cells["policy0_rm0"]["proxy_reward_first"] != cells["policy0_rm1"]["proxy_reward_first"]
    assert cells["policy0_rm0"]["rm"] == str(tiny_rm_dir) and cells["policy1_rm1"]["rm"] == str(other_rm)
    table = (out / "grid.md").read_text().splitlines()
    assert sum(line.startswith("| policy") and "SEAM" in line for line in table) == 2
    with Image.open(out / "grid_heatmap.png") as image:
        assert image.size[0] > 100 and image.size[1] > 100
    trials = [p for p in (out / "tune").iterdir() if p.is_dir()]
    assert len(trials) == 4, sorted(p.name for p in (out / "tune").iterdir())  # one Tune trial per cell

    # A rerun finds every cell complete: no PPO iteration and no eval again, the same grid.
    before = {c: (out / "cells" / c / "metrics.jsonl").stat().st_mtime for c in cells}
    t0 = time.monotonic()
    assert main(["seam", "grid", str(config), *grid]) == 0
    assert json.loads((out / "grid.json").read_text())["cells"] == result["cells"]
    assert {c: (out / "cells" / c / "metrics.jsonl").stat().st_mtime for c in cells} == before
    assert time.monotonic() - t0 < 300
