"""A served reward model: deploy it on Ray Serve (`rlhf-ray serve rm`, or a run with reward.remote: serve), find a
running one, and load-test it over HTTP (`rlhf-ray serve load`)."""

import json
import logging
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from ray import serve

from actors.rm_server import rm_application
from rlhf_ray.config import Config, ConfigError

log = logging.getLogger("rlhf_ray.serve")


def rm_url(cfg: Config) -> str:
    s = cfg.reward.serve
    return f"http://{s.host}:{s.port}/{s.app}"


def deploy_rm(cfg: Config, model_dir: str | Path) -> str:
    """Deploy `model_dir` as the Serve app reward.serve.app and wait until every replica is up; its URL.

    Serve's HTTP proxy takes reward.serve.host/port when this starts Serve on the cluster; a Serve already running
    keeps its own (Serve warns)."""
    if not (Path(model_dir) / "config.json").exists():
        raise FileNotFoundError(f"no reward model to serve at {model_dir} (no config.json)")
    s = cfg.reward.serve
    serve.start(http_options={"host": s.host, "port": s.port})
    log.info("deploying %s as Serve app %r (%d replica(s), batches of up to %d), HTTP on %s:%d", model_dir, s.app,
             s.replicas, s.max_batch_size, s.host, s.port)
    serve.run(rm_application(cfg, str(model_dir)), name=s.app, route_prefix=f"/{s.app}")
    return rm_url(cfg)


def running_rm(app: str) -> str | None:
    """The model folder the running Serve app `app` serves; None if the cluster runs no such app."""
    status = serve.status().applications.get(app)
    if status is None or status.status != "RUNNING":
        return None
    return serve.get_app_handle(app).info.remote().result()["model"]


def ensure_rm_app(cfg: Config, model_dir: str | None) -> bool:
    """reward.remote=serve: use the running app reward.serve.app, or deploy `model_dir` as it. True if deployed here
    (the caller deletes it when done). A running app that serves another model than `model_dir` is an error."""
    app = cfg.reward.serve.app
    serving = running_rm(app)
    if serving is None:
        if model_dir is None:
            raise ConfigError(f"reward.remote=serve: no Serve app {app!r} runs on the cluster and there is no "
                              "model.reward to deploy")
        deploy_rm(cfg, model_dir)
        return True
    if model_dir is not None and Path(serving).resolve() != Path(model_dir).resolve():
        raise ConfigError(f"reward.remote=serve: the Serve app {app!r} serves {serving}, not model.reward={model_dir}; "
                          "set reward.serve.app to another name or model.reward to the served folder")
    log.info("reward.remote=serve: scoring with the running Serve app %r (%s)", app, serving)
    return False


def post_pairs(url: str, pairs: list[dict], timeout_s: float = 120.0) -> list[float]:
    """Scores of `pairs` from a served RM, in order; an HTTP error raises with the server's message."""
    body = json.dumps({"pairs": pairs}).encode()
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as r:
            return json.loads(r.read())["scores"]
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{url} answered {e.code}: {e.read().decode(errors='replace')[:500]}") from None


def load_test(url: str, requests: list[list[dict]], concurrency: int, expected: list[list[float]] | None = None,
              tol: float = 1e-5, timeout_s: float = 120.0) -> dict:
    """Send every request (a list of pairs) with at most `concurrency` in flight; report throughput, latency and
    whether every request came back (lost: an error or no answer) with its own scores in its own order (mismatched:
    scores that differ from `expected` by more than `tol`, or a wrong count)."""

    def one(i: int) -> tuple[int, float, list[float] | None, str | None]:
        start = time.perf_counter()
        try:
            scores = post_pairs(url, requests[i], timeout_s)
            return i, time.perf_counter() - start, scores, None
        except Exception as e:  # noqa: BLE001 - counted and reported, not raised: the load test goes on
            return i, time.perf_counter() - start, None, f"{type(e).__name__}: {e}"

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        results = list(pool.map(one, range(len(requests))))
    seconds = time.perf_counter() - start
    lost = [(i, err) for i, _, scores, err in results if scores is None]
    mismatched = []
    for i, _, scores, _ in results:
        if scores is None:
            continue
        want = expected[i] if expected is not None else None
        if len(scores) != len(requests[i]) or (want is not None and
                                                not np.allclose(scores, want, rtol=0, atol=tol)):
            mismatched.append(i)
    latency = np.array([lat for _, lat, scores, _ in results if scores is not None]) * 1000
    pairs = sum(len(r) for r in requests)
    return {"requests": len(requests), "pairs": pairs, "concurrency": concurrency, "seconds": round(seconds, 3),
            "requests_per_s": round(len(requests) / seconds, 2), "pairs_per_s": round(pairs / seconds, 2),
            "p50_ms": round(float(np.percentile(latency, 50)), 1) if len(latency) else None,
            "p99_ms": round(float(np.percentile(latency, 99)), 1) if len(latency) else None,
            "lost": len(lost), "mismatched": len(mismatched), "errors": [e for _, e in lost[:5]]}


def load_requests(cfg: Config, n: int, pairs_per_request: int) -> list[list[dict]]:
    """n requests of distinct (prompt, chosen answer) text pairs from the configured preference set, reused in turn
    when it has fewer rows."""
    from rlhf_ray.data import load_preferences

    rows = load_preferences(cfg.data).train
    if not len(rows):
        raise ConfigError("serve load: the configured data gave no pairs to send")
    take = [rows[(i * pairs_per_request + j) % len(rows)] for i in range(n) for j in range(pairs_per_request)]
    pairs = [{"prompt": r["prompt"], "response": r["chosen"], "format": r["format"]} for r in take]
    return [pairs[i * pairs_per_request:(i + 1) * pairs_per_request] for i in range(n)]


def run_load_test(url: str, requests: list[list[dict]], concurrency: int) -> dict:
    """First every request alone (one in flight: the reference, each pair scored without strangers in its batch),
    then all of them `concurrency` at a time; the second pass must return the reference's scores."""
    log.info("reference pass: %d requests one at a time", len(requests))
    reference = [post_pairs(url, r) for r in requests]
    log.info("load pass: %d requests, %d in flight", len(requests), concurrency)
    return load_test(url, requests, concurrency, expected=reference)
