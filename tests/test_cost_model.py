"""The cost model against hand-computed work and times, and its calibration against cells made by a known model."""

import dataclasses
import math

import pytest

from launch.scale import parse_sweeps, sweep_cells
from rlhf_ray.config import ConfigError
from rlhf_ray.cost_model import (
    GPUS,
    Calibration,
    GpuCluster,
    Workers,
    Workload,
    bound,
    cores_used,
    fit_calibration,
    learner_state_gib,
    leave_one_out,
    phase_work,
    predict_gpu,
)

W = Workload(policy_params=100.0, rm_params=10.0, sequences=4, prompt_tokens=3.0, response_tokens=2.0, ppo_epochs=2,
             micro_batch=2, weight_bytes=4)


def test_phase_work_by_hand():
    # 4 sequences x 5 tokens = 20 tokens
    assert phase_work(W) == {"rollout": 2 * 100 * 20, "score": 2 * 10 * 20, "experience": 20 * (400 + 20),
                             "learn": 2 * 20 * (600 + 60), "sync": 400}
    # Critic-free (GRPO, RLOO, REINFORCE++): the learner runs no critic forward or backward; the RM still scores.
    free = phase_work(dataclasses.replace(W, critic=False))
    assert free == {"rollout": 2 * 100 * 20, "score": 2 * 10 * 20, "experience": 20 * 400, "learn": 2 * 20 * 600,
                    "sync": 400}


def test_cores_used_is_capped_by_the_machine():
    k = Workers(rollout=4, reward=1, learner=2, threads={"rollout": 1, "score": 2, "experience": 3, "learn": 3})
    assert [cores_used(k, ph, 4) for ph in ("rollout", "score", "experience", "learn")] == [4, 2, 4, 4]
    assert cores_used(k, "rollout", 2) == 2


def test_the_fit_recovers_a_known_calibration_and_predicts_left_out_cells():
    truth = Calibration(cores=8, overhead_s={"rollout": 1.0, "score": 0.5, "experience": 2.0, "learn": 3.0, "sync": 0.2},
                        flops_per_core_s=dict.fromkeys(("rollout", "score", "experience", "learn"), 1e3),
                        sync_s_per_gb_per_actor=5e6)
    cells = []
    for seqs, actors, learners in [(4, 1, 1), (8, 2, 1), (8, 1, 2), (16, 4, 4), (12, 2, 2), (6, 1, 3)]:
        w = Workload(100.0, 10.0, seqs, 3.0, 2.0, 1, 2)
        k = Workers(actors, 1, learners)
        cells.append((w, k, truth.predict(w, k)))
    fit = fit_calibration(cells, cores=8)
    for ph in ("rollout", "experience", "learn"):
        assert fit.overhead_s[ph] == pytest.approx(truth.overhead_s[ph], rel=1e-6)
        assert fit.flops_per_core_s[ph] == pytest.approx(1e3, rel=1e-6)
    assert fit.sync_s_per_gb_per_actor == pytest.approx(5e6, rel=1e-6)
    for (_, _, measured), predicted in zip(cells, leave_one_out(cells, cores=8)):
        assert sum(predicted.values()) == pytest.approx(sum(measured.values()), rel=1e-6)


def test_a_negative_intercept_becomes_a_fit_through_the_origin():
    w1, w2 = Workload(100.0, 10.0, 4, 3.0, 2.0), Workload(100.0, 10.0, 8, 3.0, 2.0)
    k = Workers(1, 1, 1)
    # rollout work 4000 and 8000 FLOPs taking 1 s and 3 s: a line would cross zero at 2000 FLOPs
    cells = [(w1, k, dict.fromkeys(("rollout", "score", "experience", "learn", "sync"), 1.0)),
             (w2, k, dict.fromkeys(("rollout", "score", "experience", "learn", "sync"), 3.0))]
    fit = fit_calibration(cells, cores=2)
    assert fit.overhead_s["rollout"] == 0.0
    assert fit.flops_per_core_s["rollout"] == pytest.approx((4000**2 + 8000**2) / (4000 * 1 + 8000 * 3))


def test_gpu_prediction_by_hand():
    gpu = GPUS["h100"]
    w = Workload(policy_params=7e9, rm_params=7e9, sequences=64, prompt_tokens=256, response_tokens=512, ppo_epochs=1,
                 micro_batch=4)
    c = GpuCluster(gpu, rollout_gpus=2, reward_gpus=2, learner_gpus=4, zero_stage=2)
    s = predict_gpu(w, c)
    per_engine = 32
    decode = max(7e9 * 2 / gpu.hbm_bytes_s, 2 * 7e9 * per_engine / (gpu.peak_flops * 0.5))
    assert decode == 7e9 * 2 / gpu.hbm_bytes_s  # 32 sequences per engine: reading the weights bounds decode
    assert s["rollout"] == pytest.approx(2 * 7e9 * per_engine * 256 / (gpu.peak_flops * 0.5) + 512 * decode)
    tokens = 64 * 768
    assert s["score"] == pytest.approx(2 * 7e9 * tokens / (2 * gpu.peak_flops * 0.5))
    steps = math.ceil(64 / (4 * 4))
    allreduce = 14e9 * 2 * (2 * 3 / 4) / 450e9
    assert s["learn"] == pytest.approx(tokens * 12 * 7e9 / (4 * gpu.peak_flops * 0.4) + steps * allreduce)
    assert s["sync"] == pytest.approx(7e9 * 2 / 50e9)
    assert bound(s) == "learn"
    across = predict_gpu(w, GpuCluster(gpu, 2, 2, 4, learner_nodes=2))  # the learner split over two nodes
    assert across["learn"] > s["learn"] and across["rollout"] == s["rollout"]
    zero3 = predict_gpu(w, GpuCluster(gpu, 2, 2, 4, zero_stage=3))
    assert zero3["learn"] > s["learn"] and zero3["experience"] > s["experience"]
    alone = predict_gpu(w, GpuCluster(gpu, 2, 2, 1))
    assert alone["learn"] == pytest.approx(tokens * 12 * 7e9 / (gpu.peak_flops * 0.4))  # one GPU: no collectives


def test_learner_states_by_hand():
    w = Workload(7e9, 7e9, 64, 256, 512)
    assert learner_state_gib(w, GpuCluster(GPUS["h100"], 1, 1, 8, zero_stage=3)) == pytest.approx(
        (16 * 14e9 + 14e9) / 8 / 2**30)
    assert learner_state_gib(w, GpuCluster(GPUS["h100"], 1, 1, 8, zero_stage=2)) == pytest.approx(
        (2 * 14e9 + 14e9 + 14 * 14e9 / 8) / 2**30)


def test_sweeps_parse_into_products_or_zips():
    sweeps = parse_sweeps(["rollout.num_actors=1,2", "learner.world_size=1, 2"])
    assert sweep_cells(sweeps) == [{"rollout.num_actors": a, "learner.world_size": b}
                                   for a in ("1", "2") for b in ("1", "2")]
    assert sweep_cells(sweeps, zipped=True) == [{"rollout.num_actors": "1", "learner.world_size": "1"},
                                                {"rollout.num_actors": "2", "learner.world_size": "2"}]
    with pytest.raises(ConfigError, match="KEY=V1,V2"):
        parse_sweeps(["rollout.num_actors"])
    with pytest.raises(ConfigError, match="one length"):
        sweep_cells(parse_sweeps(["a.b=1,2", "c.d=1"]), zipped=True)
