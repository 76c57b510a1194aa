"""Kill-anywhere resume: SIGKILL the whole job (driver, Ray, every actor) at seeded points of conftest's online run
(2 rounds x 2 PPO iterations: RM update, rollout, scoring, the gold judge, experience, the SEAM filter, learning,
weight sync, the metrics rows, checkpoint writing), resume, and end with the straight run's metrics, samples and
weights, bit for bit.

The kills form one chain: the run is started, killed at the first point, resumed, killed at the next, ..., then
resumed to its end. Each point is where the driver is made to hang (launch/testing.py), so the kill lands in the
phase drawn; what a kill can lose is what was on disk then: a half-written checkpoint, metric and sample rows newer
than the last checkpoint, a SEAM cache being appended to. After every kill the rows on disk are checked against the
straight run's.
"""

import os
import random
import signal
import time

import pytest
import torch
from safetensors.torch import load_file
from subprocess_runs import numeric, samples, tail, train

from rlhf_ray.metrics import read_metrics

pytest.importorskip("vllm")

ITERATIONS, PER_ROUND = 4, 2  # conftest's online_run
# Where a kill can land, in the order a run meets them within an iteration. rm_update: inside round 2's RM update
# (before iteration 3's rollout); rows: after the iteration's rows are written; checkpoint: its learner shards written.
PHASES = ["rm_update", "rollout", "score", "hooks", "experience", "filter", "learn", "sync", "rows", "checkpoint"]
TIMED = {"rollout", "score", "hooks", "experience", "filter", "learn", "sync"}  # each with a start and an end point
# Counts of work done by one process, not results: a resumed run finds the worse answers its killed run cached.
PROCESS_COUNTERS = {"fault/actor_restarts", "seam/worse_built"}


def kill_points(seed: int, n: int) -> list[tuple[int, str, str]]:
    """n distinct points (iteration, phase, hang point): every phase once (in a seeded order) before any twice,
    iterations and start/end drawn; sorted in the order the run meets them. rm_update has one point (round 2)."""
    rng = random.Random(seed)
    phases = rng.sample(PHASES, len(PHASES))
    repeatable = [p for p in PHASES if p != "rm_update"]
    phases = phases[:n] + [rng.choice(repeatable) for _ in range(n - len(phases))]
    points: set[tuple[int, str, str]] = set()
    for phase in phases:
        while (point := draw_point(rng, phase)) in points:
            pass
        points.add(point)
    return sorted(points, key=run_order)


def draw_point(rng: random.Random, phase: str) -> tuple[int, str, str]:
    if phase == "rm_update":
        return PER_ROUND + 1, phase, "rm_update:2"
    it = rng.randint(1, ITERATIONS)
    if phase == "rows":
        return it, phase, str(it)
    return it, phase, f"{phase}:{it}" + (rng.choice(["", ":end"]) if phase in TIMED else "")


def run_order(point: tuple[int, str, str]):
    it, phase, name = point
    return it, PHASES.index(phase), name.endswith(":end")


def test_kill_points_cover_the_phases_in_run_order():
    points = kill_points(1, 12)
    assert {p[1] for p in points} == set(PHASES) and len(points) == 12
    assert points == sorted(points, key=run_order) and len({p[2] for p in points}) == 12
    assert len({p[1] for p in kill_points(0, 4)}) == 4


def assert_rows_match(straight, rows, where):
    for a, b in zip(straight, rows):
        a, b = numeric(a), numeric(b)
        assert a.keys() == b.keys(), where
        for key in a.keys() - PROCESS_COUNTERS:
            assert a[key] == b[key], (where, a["step"], key, a[key], b[key])


def checkpoint_tensors(ckpt):
    """Every weight a checkpoint holds: the HF folders' safetensors (policy, critic) and the module weights of each
    DeepSpeed state (policy, critic, the online rounds' RM learner)."""
    weights = {str(f.relative_to(ckpt)): load_file(f) for f in sorted(ckpt.rglob("*.safetensors"))}
    for f in sorted(ckpt.rglob("*model_states.pt")):  # our own files: DeepSpeed pickles more than tensors
        weights[str(f.relative_to(ckpt))] = torch.load(f, map_location="cpu", weights_only=False)["module"]
    return weights


# Each kill costs a start-up of the job (about a minute on 2 cores): above the suite's per-test timeout. By default
# the two kills that leave the most behind (seed 10: a checkpoint half-written at iteration 2, then inside round 2's
# RM update); every phase under `long`.
@pytest.mark.parametrize("seed,n", [pytest.param(10, 2, marks=pytest.mark.timeout(1800)),
                                    pytest.param(1, 12, marks=[pytest.mark.long, pytest.mark.timeout(3600)])],
                         ids=["2_kills", "12_kills"])
def test_a_run_killed_anywhere_resumes_to_the_straight_run(online_config, request, seed, n):
    config, runs = online_config
    name = f"killed_{seed}"
    cache = f"seam.cache={runs.parent / f'seam_cache_{name}'}"  # its own worse-answer cache, built and cut by kills
    points = kill_points(seed, n)
    print("kill points:", [p[2] for p in points])
    straight = None
    for i, (_, phase, point) in enumerate(points):
        marker = runs.parent / f"{name}_{i}.hanging"
        proc = train(config, name, cache, *(["--resume"] if i else []), wait=False,
                     env={"RLHF_RAY_TEST_HANG_AFTER": point, "RLHF_RAY_TEST_HANG_FILE": str(marker)})
        if straight is None:  # the straight run (once per session) starts beside the first: their start-ups overlap
            try:
                request.getfixturevalue("online_run")
            except BaseException:
                os.killpg(proc.pid, signal.SIGKILL)
                raise
            straight = read_metrics(runs / "straight" / "metrics.jsonl")
        deadline = time.monotonic() + 600
        while not marker.exists():  # a point the run never reaches fails here, not by a timeout of the suite
            assert proc.poll() is None and time.monotonic() < deadline, (point, tail(proc))
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        rows = read_metrics(runs / name / "metrics.jsonl") if (runs / name / "metrics.jsonl").exists() else []
        assert_rows_match(straight, rows, f"rows on disk after the kill at {point}")
        if phase == "checkpoint":  # killed while writing it: a staging folder, never a complete-looking one
            assert (runs / name / "checkpoints" / f"iter_{int(point.split(':')[1]):06d}.tmp").is_dir()
    train(config, name, cache, "--resume")

    rows = read_metrics(runs / name / "metrics.jsonl")
    assert [r["step"] for r in rows] == list(range(1, ITERATIONS + 1))
    assert_rows_match(straight, rows, "the resumed run")
    assert samples(runs / "straight") == samples(runs / name)  # same prompts, order, responses: none lost or doubled
    ckpts = sorted(p.name for p in (runs / name / "checkpoints").iterdir())
    assert ckpts == [f"iter_{i:06d}" for i in range(1, ITERATIONS + 1)]  # no staging folder left behind
    # The weights at the end: policy, critic, and the RM the online rounds trained, bit for bit.
    ours = checkpoint_tensors(runs / name / "checkpoints" / ckpts[-1])
    theirs = checkpoint_tensors(runs / "straight" / "checkpoints" / ckpts[-1])
    assert ours.keys() == theirs.keys() and any(k.startswith("rm_learner/") for k in ours), sorted(ours)
    for f in theirs:
        assert theirs[f].keys() == ours[f].keys(), f
        for k in theirs[f]:
            assert torch.equal(theirs[f][k], ours[f][k]), (f, k)
