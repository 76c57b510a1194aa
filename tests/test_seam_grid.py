"""`rlhf-ray seam grid` on tiny models: one policy x one RM (two x two under `long`), each cell a Ray Tune trial that
runs PPO measuring SEAM and a gold eval; the table, the heatmap and a rerun that resumes instead of redoing the cells. Run folders as
rungs (an `sft` run's checkpoint ladder, an `rm train` run's checkpoints and final RM) are checked on their own."""

import json
import math
import time
from pathlib import Path

import pytest
import torch
from PIL import Image

from launch.cli import main
from launch.seam_grid import expand_rungs
from rlhf_ray.models import load_tokenizer, reward_model_from_lm

pytest.importorskip("vllm")


def test_run_folders_expand_into_their_checkpoint_ladders(tmp_path):
    sft, rm = tmp_path / "sft", tmp_path / "rm"
    for run, final in ((sft, "policy"), (rm, "reward_model")):
        for step in ("step-000004", "step-000002"):
            (run / "checkpoints" / step).mkdir(parents=True)
        (run / final).mkdir()
    ladder = [str(sft / "checkpoints" / "step-000002"), str(sft / "checkpoints" / "step-000004")]
    assert expand_rungs([str(sft), "smollm2-135m-instruct"], "policy") == [*ladder, "smollm2-135m-instruct"]
    rm_ladder = [str(rm / "checkpoints" / "step-000002"), str(rm / "checkpoints" / "step-000004"), str(rm / "reward_model")]
    assert expand_rungs([str(rm)], "rm") == rm_ladder
    for step in ladder:
        Path(step).rmdir()
    assert expand_rungs([str(sft)], "policy") == [str(sft / "policy")]  # a run without a ladder: its final policy


# Each cell is a whole PPO run and eval (2-3 min on 2 AVX2 cores): the default run takes one, the long run four.
@pytest.mark.parametrize("rungs", [1, pytest.param(2, marks=pytest.mark.long)])
def test_a_grid_writes_every_cell_the_table_and_the_heatmap(ray_local, tiny_model_dir, other_policy_dir, tiny_rm_dir,
                                                            tmp_path, rungs):
    config = tmp_path / "c.yaml"
    config.write_text("run: {seed: 0}\n")
    # The rollout engine is HF's: the grid's machinery is under test here, vLLM in the engine and sync tests.
    tiny = [f"model.policy={tiny_model_dir}", f"run.output_dir={tmp_path}/runs", "data.max_pairs=32",
            "model.mixed_precision=none", "learner.world_size=1", "learner.zero_stage=0", "learner.resources.threads=1",
            "rollout.engine=hf"]
    tok = load_tokenizer(tiny_model_dir)
    other_policy = other_policy_dir  # a second policy rung: the tiny policy, perturbed
    other_rm = tmp_path / "rm_b"  # a second RM rung: another random head on the same backbone
    torch.manual_seed(1)
    reward_model_from_lm(tiny_model_dir, pad_token_id=tok.pad_token_id).save_pretrained(other_rm)
    tok.save_pretrained(other_rm)

    rm_rungs, policy_rungs = [tiny_rm_dir, other_rm][:rungs], [tiny_model_dir, other_policy][:rungs]
    grid = [*tiny, "run.name=grid", f"seam.grid.policies=[{','.join(map(str, policy_rungs))}]",
            f"seam.grid.rms=[{','.join(map(str, rm_rungs))}]",
            f"eval.judge={tiny_rm_dir}", "eval.prompts=4", "eval.bootstrap=200", "seam.variant=adv", "seam.k=2",
            f"seam.cache={tmp_path}/cache", "ppo.iterations=1", "ppo.prompts_per_iteration=4", "rollout.n_samples=2",
            "rollout.max_new_tokens=8", "rollout.max_model_len=320", "rollout.kv_cache_gib=0.5",
            "rollout.resources.num_cpus=1", "reward.resources.num_cpus=0.5", "learner.micro_batch_size=8"]
    assert main(["seam", "grid", str(config), *grid]) == 0
    out = tmp_path / "runs" / "grid"
    result = json.loads((out / "grid.json").read_text())
    cells = {c["cell"]: c for c in result["cells"]}
    assert result["policies"] == [str(p) for p in policy_rungs]
    assert sorted(cells) == [f"policy{p}_rm{r}" for p in range(rungs) for r in range(rungs)]
    for c in cells.values():
        assert "error" not in c and c["iterations"] == 1 and c["prompts"] == 4
        assert 0 <= c["seam"] <= 1 and c["seam_prompts"] == 4 and 0 <= c["win_rate"] <= 1
        assert c["win_rate_ci"][0] <= c["win_rate"] <= c["win_rate_ci"][1] and math.isfinite(c["gold_mean"])
        assert (out / "cells" / c["cell"] / "eval" / "eval.json").is_file()  # the cell's own run folder
    # Each cell ran its own policy and RM: the policy rungs answer differently under the same RM, and the RM rungs
    # score the same policy's prompts differently.
    assert cells["policy0_rm0"]["rm"] == str(tiny_rm_dir)
    if rungs == 2:
        assert cells["policy0_rm0"]["proxy_reward_first"] != cells["policy1_rm0"]["proxy_reward_first"]
        assert cells["policy1_rm0"]["rm"] == str(tiny_rm_dir)
        assert cells["policy0_rm0"]["proxy_reward_first"] != cells["policy0_rm1"]["proxy_reward_first"]
        assert cells["policy1_rm1"]["rm"] == str(other_rm)
    table = (out / "grid.md").read_text().splitlines()
    assert sum(line.startswith("| policy") and "SEAM" in line for line in table) == rungs
    with Image.open(out / "grid_heatmap.png") as image:
        assert image.size[0] > 100 and image.size[1] > 100
    trials = [p for p in (out / "tune").iterdir() if p.is_dir()]
    assert len(trials) == rungs * rungs, sorted(p.name for p in (out / "tune").iterdir())  # one Tune trial per cell

    # A rerun finds every cell complete: no PPO iteration and no eval again, the same grid.
    before = {c: (out / "cells" / c / "metrics.jsonl").stat().st_mtime for c in cells}
    t0 = time.monotonic()
    assert main(["seam", "grid", str(config), *grid]) == 0
    assert json.loads((out / "grid.json").read_text())["cells"] == result["cells"]
    assert {c: (out / "cells" / c / "metrics.jsonl").stat().st_mtime for c in cells} == before
    assert time.monotonic() - t0 < 300
