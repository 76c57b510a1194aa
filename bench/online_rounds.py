"""Round-by-round table of online runs (MetaRM vs vanilla side by side): `python bench/online_rounds.py RUN [RUN ...]`.

Per round, from each run's metrics.jsonl: the diagnostics of its first row (round/*: within-prompt gap of the proxy on
fresh policy samples, held-out proxy accuracy, proxy-gold agreement, proxy and gold reward of those samples), the mean
gold reward and KL of its PPO iterations, and its wall time (the phases of its rows, RM update included).
"""

import json
import math
import sys
from pathlib import Path

COLUMNS = [("gap", "round/gap_mean"), ("gap_before", "round/gap_mean_before_update"),
           ("proxy_acc", "round/proxy_eval_accuracy"), ("agree", "round/proxy_gold_agreement"),
           ("proxy_r", "round/proxy_reward"), ("gold_r", "round/gold_reward")]


def rounds(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    out: list[dict] = []
    for row in rows:
        if "round/index" in row:
            out.append({"round": int(row["round/index"]), **{name: row.get(key, math.nan) for name, key in COLUMNS},
                        "iters": []})
        if out:
            out[-1]["iters"].append(row)
    summary = run / "rm" / "summary.json"
    if out and summary.exists() and math.isnan(out[0]["proxy_acc"]):  # round 1 runs on the RM trained first
        out[0]["proxy_acc"] = json.loads(summary.read_text()).get("eval/accuracy", math.nan)
    for r in out:
        iters = r.pop("iters")
        r["it_gold_r"] = mean([i.get("reward/gold_mean", math.nan) for i in iters])
        r["it_kl"] = mean([i["kl/mean"] for i in iters])
        # rm_update_s is a part of round_start_s
        r["wall_s"] = sum(v for i in iters for k, v in i.items() if k.startswith("time/") and k != "time/rm_update_s")
    return out


def mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def main(runs: list[str]) -> None:
    keys = ["round"] + [name for name, _ in COLUMNS] + ["it_gold_r", "it_kl", "wall_s"]
    print("| run | " + " | ".join(keys) + " |")
    print("|---" * (len(keys) + 1) + "|")
    for run in map(Path, runs):
        for r in rounds(run):
            print(f"| {run.name} | " + " | ".join(f"{r[k]:.4g}" if isinstance(r[k], float) else str(r[k]) for k in keys) + " |")


if __name__ == "__main__":
    main(sys.argv[1:])
