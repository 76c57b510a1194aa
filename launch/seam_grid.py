"""`rlhf-ray seam grid`: SEAM's saturation study (ALGORITHMS.md §3.3-3.4). Policy rungs (SFT checkpoints) x RM
rungs (RMs of growing data), each cell a short RLHF run (the ppo section) as one Ray Tune trial:

    cell (policy P, RM R): PPO from P scored by R, with the SEAM filter measuring and dropping nothing
                           (seam.drop_fraction 0), so iteration 1's seam/mean is SEAM(P, R) on that iteration's prompts;
                           then `eval` of the final policy against seam.grid.against, judged by the gold RM.

The trial itself holds 0.01 CPU (it only drives its cell): each cell's actors take their own placement groups;
at most seam.grid.max_concurrent cells run at once. A cell already complete in the grid folder is not
run again (its PPO run resumes), so a grid that stopped goes on. Writes grid.json, grid.md and grid_heatmap.png.
"""

import copy
import json
import logging
import math
from pathlib import Path

from rlhf_ray.config import Config, ConfigError
from rlhf_ray.metrics import read_metrics
from rlhf_ray.run_dir import prepare_run_dir

from .cluster import init_ray
from .evaluate import gold_judge, run_eval

log = logging.getLogger("rlhf_ray.seam")

FINAL = {"policy": "policy", "rm": "reward_model"}  # a run folder's final model, beside its checkpoints/step-*


def expand_rungs(specs: list[str], kind: str) -> list[str]:
    """Model folders or assets as given; a run folder becomes its checkpoints in step order (an `rm train` run also
    its final RM, which no checkpoint holds; an `sft` run's last checkpoint is its final policy)."""
    out = []
    for spec in specs:
        path = Path(spec)
        final = path / FINAL[kind]
        if not final.is_dir():
            out.append(spec)
            continue
        ladder = [str(p) for p in sorted((path / "checkpoints").glob("step-*"))]
        out += ladder + [str(final)] if kind == "rm" or not ladder else ladder
    return out


def cell_name(i: int, j: int) -> str:
    return f"policy{i}_rm{j}"


def run_cell(base: dict, grid_dir: str, policy: str, rm: str, name: str, against: str) -> dict:
    """One cell, in whichever process Tune runs it: the PPO run (resumed if it was begun), then its gold eval."""
    from .driver import run_ppo

    tree = copy.deepcopy(base)
    tree["model"] |= {"policy": policy, "reward": rm}
    tree["run"] |= {"name": name, "output_dir": str(Path(grid_dir) / "cells")}
    tree["seam"] |= {"filter": "seam", "drop_fraction": 0.0}  # measure SEAM, drop nothing
    cfg = Config.model_validate(tree)
    run_dir = prepare_run_dir(cfg)
    run_ppo(cfg, run_dir, show_progress=False, resume=True)
    rows = read_metrics(run_dir / "metrics.jsonl")
    eval_dir = run_dir / "eval"
    eval_dir.mkdir(exist_ok=True)
    if (eval_dir / "eval.json").exists():
        result = json.loads((eval_dir / "eval.json").read_text())
    else:
        result = run_eval(cfg, eval_dir, str(run_dir), against)
    samples = [json.loads(line) for line in open(eval_dir / "eval_samples.jsonl", encoding="utf-8")]
    return {"cell": name, "policy": policy, "rm": rm, "seam": rows[0].get("seam/mean", math.nan),
            "seam_prompts": rows[0].get("seam/scored", math.nan),
            "misjudgement_rate": rows[0].get("seam/misjudgement_rate", math.nan), "proxy_reward_first": rows[0]["reward/mean"],
            "proxy_reward_last": rows[-1]["reward/mean"], "gold_mean": sum(s["score_a"] for s in samples) / len(samples),
            "win_rate": result["win_rate"], "win_rate_ci": result["win_rate_ci"], "mean_gap": result["mean_gap"],
            "mean_gap_ci": result["mean_gap_ci"], "prompts": result["prompts"], "iterations": len(rows)}


def _trial(params: dict, base: dict, grid_dir: str, against: str) -> None:
    from ray import tune

    c = params["cell"]
    tune.report(run_cell(base, grid_dir, c["policy"], c["rm"], c["name"], against))


def run_seam_grid(cfg: Config, grid_dir: Path) -> list[dict]:
    """Every cell as a Tune trial; returns the cells' rows (policy-major) and writes the table and the heatmap."""
    from ray import tune

    g = cfg.seam.grid
    policies, rms = expand_rungs(g.policies, "policy"), expand_rungs(g.rms, "rm")
    if not policies or not rms:
        raise ConfigError("seam grid needs seam.grid.policies and seam.grid.rms (model folders, or sft / rm train "
                          "run folders whose checkpoints are the rungs)")
    if not (cfg.eval.judge or gold_judge(cfg.data.relabel_with)):
        raise ConfigError("seam grid judges every cell with the gold RM: set eval.judge or data.relabel_with=<gold run>")
    against = g.against or cfg.model.policy
    cells = [{"policy": p, "rm": r, "name": cell_name(i, j)} for i, p in enumerate(policies) for j, r in enumerate(rms)]
    log.info("seam grid: %d policies x %d RMs = %d cells, %d at a time, in %s", len(policies), len(rms), len(cells),
             g.max_concurrent, grid_dir)
    init_ray(cfg.cluster, grid_dir)
    trainable = tune.with_parameters(_trial, base=cfg.model_dump(mode="json"), grid_dir=str(grid_dir.resolve()),
                                     against=against)
    tuner = tune.Tuner(
        # The trial only drives its cell (Tune needs a non-empty bundle); the cell's actors reserve their own.
        tune.with_resources(trainable, {"cpu": 0.01}),
        param_space={"cell": tune.grid_search(cells)},
        tune_config=tune.TuneConfig(max_concurrent_trials=g.max_concurrent),
        run_config=tune.RunConfig(name="tune", storage_path=str(grid_dir.resolve()), verbose=0),
    )
    results = tuner.fit()
    done = {r.config["cell"]["name"]: r for r in results}
    rows, failed = [], []
    for c in cells:
        r = done.get(c["name"])
        if r is None or r.error or "win_rate" not in (r.metrics or {}):
            failed.append(f"{c['name']}: {r.error if r is not None else 'did not run'}")
            rows.append({"cell": c["name"], "policy": c["policy"], "rm": c["rm"], "error": failed[-1]})
        else:
            rows.append({k: r.metrics[k] for k in CELL_FIELDS})
    write_grid(grid_dir, rows, policies, rms, against)
    if failed:
        raise RuntimeError(f"seam grid: {len(failed)} of {len(cells)} cells failed (the rest are in {grid_dir / 'grid.md'}; "
                           "a rerun resumes): " + "; ".join(failed))
    return rows


CELL_FIELDS = ("cell", "policy", "rm", "seam", "seam_prompts", "misjudgement_rate", "proxy_reward_first",
               "proxy_reward_last", "gold_mean", "win_rate", "win_rate_ci", "mean_gap", "mean_gap_ci", "prompts",
               "iterations")


def write_grid(grid_dir: Path, rows: list[dict], policies: list[str], rms: list[str], against: str) -> None:
    """grid.json (every cell), grid.md (win rate against the reference with its interval, SEAM beside it) and
    grid_heatmap.png (the same, policies as rows, RMs as columns)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    (grid_dir / "grid.json").write_text(json.dumps({"against": against, "policies": policies, "rms": rms,
                                                    "cells": rows}, indent=1))
    by = {r["cell"]: r for r in rows}
    head = "| policy \\ RM | " + " | ".join(f"rm{j}: {Path(r).name}" for j, r in enumerate(rms)) + " |"
    lines = [f"# SEAM grid: gold win rate against {against} [95 % interval], SEAM at iteration 1", "", head,
             "|---" * (len(rms) + 1) + "|"]
    win = np.full((len(policies), len(rms)), np.nan)
    for i, p in enumerate(policies):
        cells = []
        for j in range(len(rms)):
            c = by[cell_name(i, j)]
            if "error" in c:
                cells.append("failed")
                continue
            win[i, j] = c["win_rate"]
            lo, hi = c["win_rate_ci"]
            cells.append(f"{c['win_rate']:.0%} [{lo:.0%}, {hi:.0%}], SEAM {c['seam']:.3f}")
        lines.append(f"| policy{i}: {Path(p).name} | " + " | ".join(cells) + " |")
    (grid_dir / "grid.md").write_text("\n".join(lines) + "\n")

    fig, ax = plt.subplots(figsize=(1.8 + 1.9 * len(rms), 1.2 + 1.1 * len(policies)))
    image = ax.imshow(win, vmin=0, vmax=1, cmap="viridis")
    for i in range(len(policies)):
        for j in range(len(rms)):
            c = by[cell_name(i, j)]
            text = "failed" if "error" in c else f"{c['win_rate']:.0%}\nSEAM {c['seam']:.2f}"
            ax.text(j, i, text, ha="center", va="center", color="white" if win[i, j] < 0.6 else "black", fontsize=8)
    ax.set_xticks(range(len(rms)), [f"rm{j}: {Path(r).name}" for j, r in enumerate(rms)], rotation=30, ha="right")
    ax.set_yticks(range(len(policies)), [f"policy{i}: {Path(p).name}" for i, p in enumerate(policies)])
    ax.set_title(f"gold win rate against {Path(against).name}")
    fig.colorbar(image, ax=ax, label="win rate")
    fig.tight_layout()
    fig.savefig(grid_dir / "grid_heatmap.png", dpi=120)
    plt.close(fig)
