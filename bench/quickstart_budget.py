"""The compute budget of a finished `rlhf-ray train` run: its model FLOPs per phase (from the run's metrics and the
model's config), the rate each phase reached against this machine's measured matmul peak, and the time the FLOPs
alone take at another machine's fp32 matmul rate.

    .venv/bin/python bench/quickstart_budget.py runs/quickstart [--fp32-gflops 52.7]

FLOPs count real tokens only (padding is waste, not work): per token a forward costs 2 x the linear weights, plus
2 x hidden x vocab for an LM head, plus causal attention 2 x layers x heads x head_dim x (sequence length); a
backward costs twice the forward. vLLM computes a prompt once for its n samples (prefix sharing); log-probs need
the LM head on response positions only (the learner runs it from a micro-batch's first response position: a little
more than counted).
"""

import argparse
import json
import re
from datetime import datetime, timedelta
from pathlib import Path

import torch
import yaml
from flops import ModelFlops, learner_flops, matmul_gflops


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def wall_seconds(log_path: Path) -> float:
    """First to last timestamp of the run's log.txt (HH:MM:SS; a day boundary is allowed)."""
    stamps = [datetime.strptime(m, "%Y-%m-%d %H:%M:%S") for m in
              re.findall(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", log_path.read_text(), re.M)]
    return (stamps[-1] - stamps[0]) / timedelta(seconds=1) if len(stamps) > 1 else float("nan")


def phases(run_dir: Path, policy: ModelFlops, rm: ModelFlops) -> list[dict]:
    """(phase, measured seconds, FLOPs) of the RM training and of every PPO phase, summed over the run."""
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    out = {}

    def add(name, seconds, flops):
        row = out.setdefault(name, {"phase": name, "seconds": 0.0, "flops": 0.0})
        row["seconds"] += seconds
        row["flops"] += flops

    for r in read_jsonl(run_dir / "rm" / "metrics.jsonl"):
        if "perf/step_s" in r:
            tokens = r.get("perf/tokens", r["perf/tokens_per_s"] * r["perf/step_s"])
            add("rm train", r["perf/step_s"], 3 * rm.forward(tokens, tokens / (2 * cfg["rm"]["batch_size"])))
        if "eval/seconds" in r:
            pairs = r["eval/pairs"]
            add("rm eval", r["eval/seconds"], rm.forward(r["eval/tokens"], r["eval/tokens"] / (2 * pairs)))
    n, epochs = cfg["rollout"]["n_samples"], cfg["learner"]["ppo_epochs"]
    for r in read_jsonl(run_dir / "metrics.jsonl"):
        tokens = r["perf/learn_tokens_per_s"] * r["time/learn_s"]
        generated = r["perf/rollout_tokens_per_s"] * r["time/rollout_s"]
        seqs = cfg["ppo"]["prompts_per_iteration"] * n
        length = tokens / seqs
        prefill = (tokens - generated) / n
        learner = learner_flops(policy, tokens, generated, seqs, epochs)  # the RM and critic share the policy's shape
        add("rollout", r["time/rollout_s"], policy.forward(prefill + generated, length, head_tokens=generated))
        add("score", r["time/score_s"], rm.forward(tokens, length))
        add("experience", r["time/experience_s"], learner["experience"])
        add("learn", r["time/learn_s"], learner["learn"])
        add("sync", r["time/sync_s"], 0.0)
    return list(out.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--fp32-gflops", type=float, default=52.7,
                        help="another machine's fp32 matmul rate, for the FLOP floor there (default: the AVX2-only "
                             "AMD EPYC of issue 9, 52.7 GFLOP/s measured in one process)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    run_dir = args.run_dir
    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    policy_cfg = Path(cfg["model"]["policy"]) / "config.json"
    if not policy_cfg.exists():
        from rlhf_ray.models.assets import resolve_model

        policy_cfg = Path(resolve_model(cfg["model"]["policy"])) / "config.json"
    policy = ModelFlops(policy_cfg)  # the RM and critic share the policy's backbone

    picked = re.findall(r"model\.mixed_precision=\w+ -> (\w+)", (run_dir / "log.txt").read_text())
    precision = picked[0] if picked else {"bf16": "bf16", "none": "fp32"}.get(cfg["model"]["mixed_precision"], "?")
    peak = {"fp32": matmul_gflops(torch.float32, args.threads), "bf16": matmul_gflops(torch.bfloat16, args.threads)}
    wall = wall_seconds(run_dir / "log.txt")
    rows = phases(run_dir, policy, policy)
    flops = sum(r["flops"] for r in rows)

    print(f"{run_dir}: ran in {precision}; matmul peak here on {args.threads} threads (measure on an idle machine): "
          f"fp32 {peak['fp32']:.1f} GFLOP/s, bf16 {peak['bf16']:.1f} GFLOP/s")
    ref = peak.get(precision, peak["fp32"])
    print(f"\n| phase | seconds | TFLOP | GFLOP/s | % of the {precision} peak |")
    print("|---|---:|---:|---:|---:|")
    for r in rows:
        rate = r["flops"] / r["seconds"] / 1e9 if r["seconds"] else 0.0
        print(f"| {r['phase']} | {r['seconds']:.0f} | {r['flops'] / 1e12:.1f} | {rate:.1f} | {100 * rate / ref:.0f} |")
    other = wall - sum(r["seconds"] for r in rows)
    print(f"| other (start-up, loading, checkpoints) | {other:.0f} | | | |")
    print(f"| **total** | **{wall:.0f}** | **{flops / 1e12:.1f}** | | |")
    print(f"\nthe model FLOPs alone, at 100 % of a matmul rate: {flops / peak['fp32'] / 60e9:.1f} min at this machine's "
          f"fp32 peak, {flops / args.fp32_gflops / 60e9:.1f} min at {args.fp32_gflops:g} GFLOP/s, "
          f"{flops / (2 * args.fp32_gflops) / 60e9:.1f} min at twice that (2 threads)")


if __name__ == "__main__":
    main()
