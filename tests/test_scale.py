"""`rlhf-ray scale`: a 2-cell sweep on the tiny model (measured, fitted, predicted, written), and --predict on the
GPU cluster configs."""

import csv
import json
import math

from launch.cli import main
from launch.scale import parse_sweeps, run_scale
from rlhf_ray.cost_model import PHASES


def test_a_sweep_measures_each_cell_and_predicts_it_from_the_others(ray_local, tiny_model_dir, tiny_rm_dir, tmp_path):
    overrides = [f"model.policy={tiny_model_dir}", f"model.reward={tiny_rm_dir}", "rollout.engine=hf",
                 "rollout.max_model_len=160", "rollout.max_new_tokens=16", "rollout.n_samples=2",
                 "rollout.resources.num_cpus=1", "reward.resources.num_cpus=0.5", "learner.resources.num_cpus=1",
                 "learner.micro_batch_size=8", "ppo.prompts_per_iteration=4", "data.max_pairs=32"]
    overrides.append("cluster.placement_timeout_s=5")
    sweep = parse_sweeps(["rollout.num_actors=1,2,9"])  # 9 actors cannot be placed on the test Ray: that cell fails
    rows = run_scale(None, overrides, sweep, tmp_path, iterations=2, cores=2)
    assert [r["cell"] for r in rows] == ["num_actors-1", "num_actors-2", "num_actors-9"]
    assert "could not place rollout" in rows[2]["error"]
    failed, rows = rows[2], rows[:2]
    for r in rows:
        assert r["iteration_s"] == sum(r["seconds"].values()) > 0 and r["sequences"] == 8
        assert 0 < r["response_tokens"] <= 16 and r["prompt_tokens"] > 0 and r["tokens_per_s"] > 0
        assert all(math.isfinite(v) and v >= 0 for v in r["predicted"].values())
        assert set(r["peak_host_gib"]) == {"rollout", "reward", "learner"}
        assert all(0.1 < v < 20 for v in r["peak_host_gib"].values())
    table = list(csv.DictReader(open(tmp_path / "scale.csv")))
    assert [t["rollout.num_actors"] for t in table] == ["1", "2"]
    assert {f"{ph}_s" for ph in PHASES} | {f"predicted_{ph}_s" for ph in PHASES} <= set(table[0])
    assert (tmp_path / "cells" / "num_actors-2" / "metrics.jsonl").exists()
    assert len(json.loads((tmp_path / "calibration.json").read_text())["flops_per_core_s"]) == 4
    md = (tmp_path / "scale.md").read_text()
    assert md.count("\n| ") == 2 and "leave-one-out" in md  # a row per cell under the header
    assert "Failed: num_actors-9" in md and json.loads((tmp_path / "scale.json").read_text())["failed"] == [failed]
    for png in ("scale_throughput.png", "scale_phases.png"):
        assert (tmp_path / png).stat().st_size > 5000
    again = run_scale(None, overrides, sweep, tmp_path, iterations=2, cores=2)  # measured cells are kept, not rerun
    assert [r.get("iteration_s") for r in again[:2]] == [r["iteration_s"] for r in rows] and "error" in again[2]


def test_predict_tables_for_the_gpu_cluster_configs(tmp_path, capsys):
    assert main(["scale", "configs/cluster_7b_16gpu.yaml", "--predict", "h100", "--policy-params", "7e9",
                 "--rm-params", "7e9", "--zip", "--sweep", "rollout.num_actors=2,4", "--sweep", "reward.num_actors=2,4",
                 "--sweep", "learner.world_size=4,8", f"run.output_dir={tmp_path}"]) == 0
    rows = json.loads((tmp_path / "ppo_7b" / "scale_predicted.json").read_text())
    assert [r["gpus"] for r in rows] == [8, 16]
    assert rows[1]["iteration_s"] < rows[0]["iteration_s"]  # twice the GPUs, a shorter iteration
    assert all(r["bound"] in PHASES for r in rows)
    assert "Assumptions: H100" in capsys.readouterr().out
    assert main(["scale", "configs/cluster_1b_8gpu.yaml", "--predict", "tpu", f"run.output_dir={tmp_path}"]) == 2
