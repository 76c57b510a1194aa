"""The served reward model (Ray Serve): HTTP on loopback, batching across callers, a load test that loses and
reorders nothing, RewardActors scoring through it in a PPO run as local RewardActors would, and `rlhf-ray serve rm`."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest
import torch

from launch.serve_rm import deploy_rm, ensure_rm_app, load_requests, load_test, post_pairs, run_load_test
from rlhf_ray.config import ConfigError, load_config
from rlhf_ray.data.tokenize import encode_sequence, render_prompt
from rlhf_ray.models import load_reward_model, load_tokenizer, rm_sequence, score_sequences

TOL = 1e-5


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_config(*extra: str):
    # fp32: the served scores are compared with a one-at-a-time fp32 reference (bf16 moves them by ~2e-3).
    return load_config(None, ["model.max_len=64", "model.max_response_len=32", "reward.serve.app=tiny_rm",
                              "model.mixed_precision=none",
                              "reward.serve.replicas=2", "reward.serve.resources.num_cpus=0.5",
                              "reward.serve.max_batch_size=8", "reward.serve.batch_wait_s=0.02", *extra])


@pytest.fixture(scope="module")
def served(ray_local, tiny_rm_dir):
    from ray import serve

    cfg = serve_config(f"reward.serve.port={free_port()}")
    url = deploy_rm(cfg, tiny_rm_dir)
    yield cfg, url
    serve.shutdown()


@pytest.fixture(scope="module")
def local_scores(tiny_rm_dir):
    """Scores computed in this process, as a local RewardActor computes them: the reference."""
    model, tok = load_reward_model(tiny_rm_dir), load_tokenizer(tiny_rm_dir)

    def score(sequences):
        return score_sequences(model, sequences, tok.pad_token_id, 16).tolist()

    return score, tok


def text_pairs(n: int, offset: int = 0) -> list[dict]:
    return [{"prompt": f"question {i}: how do I water a plant?", "response": "water it " * (1 + (i + offset) % 7)}
            for i in range(offset, offset + n)]


def text_sequences(tok, pairs) -> list[list[int]]:
    return [encode_sequence(tok, render_prompt(tok, p["prompt"], "plain"), p["response"], 64, 32)[0] for p in pairs]


def test_http_scores_are_the_local_scores_in_request_order(served, local_scores):
    cfg, url = served
    score, tok = local_scores
    assert url.startswith("http://127.0.0.1:")  # loopback unless reward.serve.host says otherwise
    pairs = text_pairs(5)
    ids = [{"prompt_ids": [5, 6, 7, 8], "response_ids": [9] * k} for k in (1, 3, 11)]
    got = post_pairs(url, pairs + ids)
    want = score(text_sequences(tok, pairs) + [rm_sequence(p["prompt_ids"], p["response_ids"], tok.eos_token_id)
                                               for p in ids])
    assert len(got) == 8 and max(abs(a - b) for a, b in zip(got, want)) < TOL
    assert len(set(round(g, 6) for g in got)) > 4  # distinct pairs, distinct scores: an order swap would show


def test_bad_requests_get_a_400_that_names_the_pair(served, tiny_rm_dir):
    _, url = served

    def post(body: bytes) -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, body, {"Content-Type": "application/json"})) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read())

    assert post(b"not json")[0] == 400
    code, body = post(json.dumps({"pairs": []}).encode())
    assert code == 400 and "at least one pair" in body["error"]
    code, body = post(json.dumps({"pairs": [{"prompt": "a", "response": "b"}, {"prompt": "a"}]}).encode())
    assert code == 400 and "pairs[1]" in body["error"]
    code, body = post(json.dumps({"pairs": [{"prompt_ids": [1], "response_ids": [10**9]}]}).encode())
    assert code == 400 and "pairs[0]" in body["error"] and "vocabulary" in body["error"]
    with urllib.request.urlopen(url) as r:  # GET: what is served
        assert json.loads(r.read())["model"] == str(tiny_rm_dir)


def test_the_load_test_loses_and_reorders_nothing_and_requests_share_batches(served, local_scores):
    _, url = served
    score, tok = local_scores
    requests = [text_pairs(2, offset=2 * i) for i in range(40)]
    expected = [score(text_sequences(tok, r)) for r in requests]
    report = load_test(url, requests, concurrency=8, expected=expected, tol=TOL)
    assert report["requests"] == 40 and report["pairs"] == 80
    assert report["lost"] == 0 and report["mismatched"] == 0, report
    assert report["p50_ms"] > 0 and report["p99_ms"] >= report["p50_ms"]
    with urllib.request.urlopen(url) as r:  # either replica: 8 in flight made batches of several requests' pairs
        assert json.loads(r.read())["largest_batch"] > 2
    broken = [[{"prompt": "x"}]] + requests[:3]  # a request the server refuses counts as lost, the rest come back
    report = load_test(url, broken, concurrency=2)
    assert report["lost"] == 1 and report["mismatched"] == 0 and "pairs[0]" in report["errors"][0]


def test_serve_load_command_reports_and_passes(served):
    from launch.cli import main

    _, url = served
    assert main(["serve", "load", url, "--requests", "12", "--concurrency", "4", "--pairs-per-request", "2",
                 "data.max_pairs=16"]) == 0
    cfg = load_config(None, ["data.max_pairs=16"])
    requests = load_requests(cfg, 3, 2)
    assert [len(r) for r in requests] == [2, 2, 2] and all(p["prompt"] and p["response"] for r in requests for p in r)
    assert run_load_test(url, requests, 2)["mismatched"] == 0


def test_a_run_must_not_silently_score_with_another_served_model(served, tiny_model_dir):
    cfg, _ = served
    with pytest.raises(ConfigError, match="serves .*not model.reward"):
        ensure_rm_app(cfg, str(tiny_model_dir))
    assert ensure_rm_app(cfg, None) is False  # no model.reward: the running app is used
    with pytest.raises(ConfigError, match="reward.remote=serve"):
        load_config(None, ["reward.remote=serve", "reward.function=rlhf_ray.rewards:target_token_fraction"])
    with pytest.raises(ConfigError, match="rm_update"):
        load_config(None, ["reward.remote=serve", "online.rounds=2", "online.rm_update=metarm"])


def test_ppo_with_reward_remote_serve_scores_as_local_reward_actors(served, ppo_config, tiny_rm_dir):
    """One PPO iteration whose RewardActors forward to the served RM; the same pairs then go to a local RewardActor."""
    from actors.group import ActorGroup
    from actors.reward import RewardActor
    from launch.trainer import PPOTrainer
    from rlhf_ray.run_dir import prepare_run_dir

    cfg, _ = served
    run = ppo_config("served", f"model.reward={tiny_rm_dir}", "reward.remote=serve", "reward.serve.app=tiny_rm",
                     "rollout.engine=hf", "rollout.num_actors=1", "learner.world_size=1", "ppo.iterations=1",
                     "ppo.prompts_per_iteration=4", "rollout.n_samples=2")
    trainer = PPOTrainer(run, prepare_run_dir(run), show_progress=False)
    seen = {}
    score = trainer.score

    def keep(rollouts):
        seen["pairs"] = list(zip(rollouts.prompt_ids, rollouts.response_ids))
        seen["scores"] = score(rollouts)
        return seen["scores"]

    trainer.score = keep
    try:
        trainer.start()
        assert trainer.served_app is None  # the running app was used, not a second deployment
        row = trainer.step(1)
    finally:
        trainer.close()
    assert len(seen["pairs"]) == 8 and row["reward/mean"] == pytest.approx(seen["scores"].mean().item(), abs=1e-4)
    # fp32 as the served app (model.mixed_precision=none): bf16 on a native-bf16 CPU differs by ~1e-3
    local = ActorGroup(RewardActor, 1, run.reward.resources, str(tiny_rm_dir), mixed_precision="none", name="local_rm")
    try:
        want = torch.tensor(local.run("score", seen["pairs"])[0])
    finally:
        local.kill()
    assert (seen["scores"] - want).abs().max().item() < TOL
    assert post_pairs(served[1], [{"prompt_ids": list(seen["pairs"][0][0]), "response_ids": list(seen["pairs"][0][1])}])


@pytest.mark.long  # ~50 s; the module's fixture deploys and serves the same app through deploy_rm, as the command does
def test_serve_rm_command_serves_until_interrupted(tiny_rm_dir, tmp_path):
    """`rlhf-ray serve rm` in its own process (its own local Ray): up, answers on loopback, Ctrl-C ends it."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/rm"
    log = open(tmp_path / "serve.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "launch.cli", "serve", "rm", str(tiny_rm_dir),
                             f"reward.serve.port={port}", "cluster.num_cpus=2", "reward.serve.resources.num_cpus=1"],
                            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 240
        scores = None
        while scores is None and proc.poll() is None and time.monotonic() < deadline:
            try:
                scores = post_pairs(url, text_pairs(3), timeout_s=30)
            except (urllib.error.URLError, ConnectionError, RuntimeError):
                time.sleep(2)
        assert scores is not None and len(scores) == 3, (tmp_path / "serve.log").read_text()[-3000:]
        while "Ctrl-C stops it" not in (tmp_path / "serve.log").read_text() and time.monotonic() < deadline:
            time.sleep(1)  # the app answers a little before serve.run sees every replica up
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        out = (tmp_path / "serve.log").read_text()
        assert f"at {url}" in out and "stopped the Serve app 'rm'" in out
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
