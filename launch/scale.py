"""`rlhf-ray scale`: a sweep of short PPO runs, one per cell of the swept values, on the Ray the config names; each
cell measured phase by phase (seconds, tokens/s, peak memory per role); the cost model (rlhf_ray/cost_model.py)
fitted to the cells and its leave-one-out prediction beside each measurement. Written to <run>/scale.csv, scale.md,
scale.json, calibration.json, scale_throughput.png and scale_phases.png.

With --predict GPU nothing runs: the cost model's table for each cell on the stated GPU cluster (scale_predicted.md).
"""

import csv
import itertools
import json
import logging
import math
from pathlib import Path

from rlhf_ray.config import Config, ConfigError, dump_config, load_config
from rlhf_ray.cost_model import (
    GPUS,
    PHASES,
    GpuCluster,
    Workers,
    Workload,
    bound,
    fit_calibration,
    learner_state_gib,
    leave_one_out,
    predict_gpu,
)
from rlhf_ray.models.assets import resolve_model
from rlhf_ray.ppo.advantages import uses_critic
from rlhf_ray.run_dir import prepare_run_dir

log = logging.getLogger("rlhf_ray.scale")


def parse_sweeps(specs: list[str]) -> list[tuple[str, list[str]]]:
    """['rollout.num_actors=1,2', ...] -> [('rollout.num_actors', ['1', '2']), ...]"""
    out = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        vals = [v.strip() for v in values.split(",") if v.strip()]
        if not sep or not key or not vals:
            raise ConfigError(f"--sweep {spec!r}: expected KEY=V1,V2,... (e.g. rollout.num_actors=1,2)")
        out.append((key.strip(), vals))
    return out


def sweep_cells(sweeps: list[tuple[str, list[str]]], zipped: bool = False) -> list[dict[str, str]]:
    """Every combination of the swept values (the product), or with zipped the i-th value of every sweep together."""
    if not sweeps:
        return [{}]
    keys = [k for k, _ in sweeps]
    if zipped:
        lengths = {len(v) for _, v in sweeps}
        if len(lengths) != 1:
            raise ConfigError(f"--zip needs sweeps of one length; got {dict((k, len(v)) for k, v in sweeps)}")
        rows = zip(*(v for _, v in sweeps))
    else:
        rows = itertools.product(*(v for _, v in sweeps))
    return [dict(zip(keys, row)) for row in rows]


def cell_name(cell: dict[str, str]) -> str:
    return "_".join(f"{k.split('.')[-1]}-{v}" for k, v in cell.items()) or "base"


def count_params(model_dir: str | Path) -> float:
    """Parameters of a model folder, from its safetensors headers (nothing loaded)."""
    from safetensors import safe_open

    files = sorted(Path(model_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no *.safetensors in {model_dir}: pass the parameter count (--policy-params, --rm-params)")
    total = 0
    for f in files:
        with safe_open(f, "pt") as st:
            total += sum(math.prod(st.get_slice(k).get_shape()) for k in st.keys())
    return float(total)


def workers_of(cfg: Config) -> Workers:
    def threads(res) -> int:
        return res.threads or max(1, int(res.num_cpus))

    learner = threads(cfg.learner.resources)
    return Workers(cfg.rollout.num_actors, cfg.reward.num_actors, cfg.learner.world_size,
                   {"rollout": threads(cfg.rollout.resources), "score": threads(cfg.reward.resources),
                    "experience": learner, "learn": learner})


def workload_of(cfg: Config, policy_params: float, rm_params: float, prompt_tokens: float,
                response_tokens: float) -> Workload:
    return Workload(policy_params, rm_params, cfg.ppo.prompts_per_iteration * cfg.rollout.n_samples, prompt_tokens,
                    response_tokens, cfg.learner.ppo_epochs, cfg.learner.micro_batch_size,
                    critic=uses_critic(cfg.ppo))


# ------------------------------------------------------------------------------------------------ measuring
def measure_cell(cfg: Config, iterations: int) -> dict:
    """Run `iterations` PPO iterations of cfg; seconds per phase averaged over the iterations after the first (it
    carries warm-up), token counts, throughput and each role's peak memory."""
    from launch.trainer import PPOTrainer

    trainer = PPOTrainer(cfg, prepare_run_dir(cfg), show_progress=False)
    lengths = []
    generate = trainer.generate

    def counted(batch_index, iteration):
        rollouts = generate(batch_index, iteration)
        lengths.append((sum(map(len, rollouts.prompt_ids)), sum(map(len, rollouts.response_ids)), len(rollouts)))
        return rollouts

    trainer.generate = counted
    try:
        trainer.start()
        rows = [trainer.step(i) for i in range(1, iterations + 1)]
        peak = {role: max(m["host_gib"] for m in group.run("peak_memory"))
                for role, group in (("rollout", trainer.rollout), ("reward", trainer.reward),
                                    ("learner", trainer.learner))}
    finally:
        trainer.close()
    steady = slice(1, None) if iterations > 1 else slice(None)
    seconds = {ph: sum(r[f"time/{ph}_s"] for r in rows[steady]) / len(rows[steady]) for ph in PHASES}
    prompt_tok, response_tok, seqs = (sum(x[i] for x in lengths[steady]) for i in range(3))
    iteration_s = sum(seconds.values())
    return {"seconds": seconds, "iteration_s": iteration_s, "prompt_tokens": prompt_tok / seqs,
            "response_tokens": response_tok / seqs, "sequences": seqs / len(lengths[steady]),
            "tokens_per_s": (response_tok / len(lengths[steady])) / iteration_s,
            "peak_host_gib": peak, "iterations": iterations}


def run_scale(cfg_path: str, overrides: list[str], sweeps: list[tuple[str, list[str]]], run_dir: Path,
              iterations: int = 2, zipped: bool = False, cores: int | None = None) -> list[dict]:
    """Measure every cell, fit the cost model, write the table and plots; returns the rows."""
    import os

    from launch.trainer import train_or_reuse_reward_model

    base = load_config(cfg_path, overrides)
    cells = sweep_cells(sweeps, zipped)
    for cell in cells:  # every cell's config must load before anything runs
        load_config(cfg_path, overrides + [f"{k}={v}" for k, v in cell.items()])
    extra = []
    if not base.model.reward and not base.reward.function:  # one RM for every cell, trained once
        extra.append(f"model.reward={train_or_reuse_reward_model(base, run_dir)}")
    cores = cores or len(os.sched_getaffinity(0))  # the machine's cores, not Ray's logical CPUs (cluster.num_cpus)
    rows, failed = [], []
    for i, cell in enumerate(cells, 1):
        name = cell_name(cell)
        log.info("scale: cell %d/%d %s", i, len(cells), name)
        cfg = load_config(cfg_path, overrides + extra + [f"{k}={v}" for k, v in cell.items()] + [
            f"run.output_dir={run_dir / 'cells'}", f"run.name={name}", f"ppo.iterations={iterations}"])
        done = run_dir / "cells" / name / "scale_cell.json"
        if done.exists() and json.loads(done.read_text())["config"] == dump_config(cfg):
            m = json.loads(done.read_text())["measured"]  # a rerun keeps the cells already measured
            log.info("scale: %s measured before (%s)", name, done)
        else:
            try:
                m = measure_cell(cfg, iterations)
            except Exception as e:  # noqa: BLE001 - one cell that cannot run (too few CPUs, OOM) must not sink the sweep
                log.error("scale: cell %s failed: %s", name, e)
                failed.append({"cell": name, **cell, "error": f"{type(e).__name__}: {str(e)[:300]}"})
                continue
            done.write_text(json.dumps({"config": dump_config(cfg), "measured": m}, indent=1))
        policy = count_params(resolve_model(cfg.model.policy))
        rm = count_params(cfg.model.reward) if cfg.model.reward else policy
        rows.append({"cell": name, **cell, **m,
                     "workload": workload_of(cfg, policy, rm, m["prompt_tokens"], m["response_tokens"]),
                     "workers": workers_of(cfg)})
        log.info("scale: %s: %.1f s per iteration, %.1f generated tokens/s", name, m["iteration_s"], m["tokens_per_s"])
    if not rows:
        raise RuntimeError("scale: no cell ran: " + "; ".join(f"{f['cell']}: {f['error']}" for f in failed))
    measured = [(r["workload"], r["workers"], r["seconds"]) for r in rows]
    calibration = fit_calibration(measured, cores)
    for row, predicted in zip(rows, leave_one_out(measured, cores)):
        row["predicted"] = predicted
        row["predicted_iteration_s"] = sum(predicted.values())
        row["error_pct"] = 100 * (row["predicted_iteration_s"] - row["iteration_s"]) / row["iteration_s"]
        row["bound"], row["predicted_bound"] = bound(row["seconds"]), bound(predicted)
    write_scale(run_dir, rows, [k for k, _ in sweeps], calibration.to_dict(), failed)
    return rows + failed


# ------------------------------------------------------------------------------------------------ writing
def write_scale(run_dir: Path, rows: list[dict], keys: list[str], calibration: dict, failed: list[dict] = ()) -> None:
    flat = []
    for r in rows:
        f = {"cell": r["cell"], **{k: r[k] for k in keys}, "iteration_s": r["iteration_s"],
             "predicted_iteration_s": r["predicted_iteration_s"], "error_pct": r["error_pct"],
             "tokens_per_s": r["tokens_per_s"], "bound": r["bound"], "predicted_bound": r["predicted_bound"],
             "prompt_tokens": r["prompt_tokens"], "response_tokens": r["response_tokens"]}
        f |= {f"{ph}_s": r["seconds"][ph] for ph in PHASES} | {f"predicted_{ph}_s": r["predicted"][ph] for ph in PHASES}
        f |= {f"peak_{role}_gib": v for role, v in r["peak_host_gib"].items()}
        flat.append(f)
    with open(run_dir / "scale.csv", "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    (run_dir / "scale.json").write_text(json.dumps({"cells": flat, "failed": list(failed)}, indent=1))
    (run_dir / "calibration.json").write_text(json.dumps(calibration, indent=1))
    head = [*keys, "iteration s (pred.)", *(f"{ph} s (pred.)" for ph in PHASES), "tokens/s", "bound (pred.)",
            "peak GiB rollout/reward/learner"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, f in zip(rows, flat):
        cells = [str(f[k]) for k in keys]
        cells.append(f"{f['iteration_s']:.1f} ({f['predicted_iteration_s']:.1f}, {f['error_pct']:+.0f} %)")
        cells += [f"{f[f'{ph}_s']:.1f} ({f[f'predicted_{ph}_s']:.1f})" for ph in PHASES]
        cells += [f"{f['tokens_per_s']:.1f}", f"{f['bound']} ({f['predicted_bound']})",
                  "/".join(f"{r['peak_host_gib'][role]:.2f}" for role in ("rollout", "reward", "learner"))]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [f"\nFailed: {f['cell']}: {f['error']}" for f in failed]
    (run_dir / "scale.md").write_text("\n".join(lines) + "\n\nPredictions: the cost model fitted to the other cells "
                                      "(leave-one-out); seconds are the mean of the iterations after the first.\n")
    plot_scale(run_dir, flat, keys)


def plot_scale(run_dir: Path, flat: list[dict], keys: list[str]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [", ".join(f"{k.split('.')[-1]}={f[k]}" for k in keys) or f["cell"] for f in flat]
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(flat)), 3.5))
    ax.bar(range(len(flat)), [f["tokens_per_s"] for f in flat], color="tab:blue")
    ax.set_xticks(range(len(flat)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("generated tokens / s")
    ax.set_title("throughput per cell")
    fig.tight_layout()
    fig.savefig(run_dir / "scale_throughput.png", dpi=120)
    plt.close(fig)
    fig, ax = plt.subplots(figsize=(max(5, 1.6 * len(flat)), 3.8))
    width = 0.38
    for j, prefix in enumerate(("", "predicted_")):
        bottom = [0.0] * len(flat)
        for k, ph in enumerate(PHASES):
            vals = [f[f"{prefix}{ph}_s"] for f in flat]
            ax.bar([i + (j - 0.5) * width for i in range(len(flat))], vals, width, bottom=bottom,
                   color=f"C{k}", alpha=1.0 if j == 0 else 0.5, label=ph if j == 0 else None,
                   edgecolor="black" if j else None)
            bottom = [b + v for b, v in zip(bottom, vals)]
    ax.set_xticks(range(len(flat)), labels, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("seconds per iteration")
    ax.set_title("per phase: measured (left) and predicted (right, outlined)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "scale_phases.png", dpi=120)
    plt.close(fig)


# ------------------------------------------------------------------------------------------------ a GPU cluster
def predict_scale(cfg_path: str, overrides: list[str], sweeps: list[tuple[str, list[str]]], run_dir: Path, gpu: str,
                  policy_params: float | None = None, rm_params: float | None = None, prompt_tokens: float = 256,
                  response_tokens: float | None = None, gpus_per_node: int = 8, rollout_tp: int = 1,
                  zipped: bool = False) -> list[dict]:
    """The cost model for every cell on `gpu` GPUs (one per rollout, reward and learner actor, as the configs ask):
    written to <run>/scale_predicted.md and .json."""
    if gpu not in GPUS:
        raise ConfigError(f"--predict {gpu!r}: known GPUs are {sorted(GPUS)}")
    rows = []
    for cell in sweep_cells(sweeps, zipped):
        cfg = load_config(cfg_path, overrides + [f"{k}={v}" for k, v in cell.items()])
        policy = policy_params or count_params(cfg.model.policy)
        rm = rm_params or (count_params(cfg.model.reward) if cfg.model.reward else policy)
        w = workload_of(cfg, policy, rm, prompt_tokens, response_tokens or cfg.rollout.max_new_tokens)
        per_actor = {role: max(1, int(getattr(cfg, role).resources.num_gpus))
                     for role in ("rollout", "reward", "learner")}
        c = GpuCluster(GPUS[gpu], cfg.rollout.num_actors * per_actor["rollout"] * rollout_tp,
                       cfg.reward.num_actors * per_actor["reward"], cfg.learner.world_size * per_actor["learner"],
                       rollout_tp=rollout_tp, learner_nodes=math.ceil(cfg.learner.world_size / gpus_per_node),
                       zero_stage=cfg.learner.zero_stage)
        seconds = predict_gpu(w, c)
        rows.append({"cell": cell_name(cell), **cell, "gpus": c.gpus, "rollout_gpus": c.rollout_gpus,
                     "reward_gpus": c.reward_gpus, "learner_gpus": c.learner_gpus, "seconds": seconds,
                     "iteration_s": sum(seconds.values()), "bound": bound(seconds),
                     "learner_state_gib": learner_state_gib(w, c), "sequences": w.sequences,
                     "policy_params": policy, "rm_params": rm, "response_tokens": w.response_tokens,
                     "tokens_per_s": w.sequences * w.response_tokens / sum(seconds.values())})
    head = ["GPUs (rollout+reward+learner)", *(f"{ph} s" for ph in PHASES), "iteration s", "bound",
            "generated tokens/s", "learner states GiB/GPU"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        lines.append("| " + " | ".join([f"{r['gpus']} ({r['rollout_gpus']}+{r['reward_gpus']}+{r['learner_gpus']})",
                                        *(f"{r['seconds'][ph]:.2f}" for ph in PHASES), f"{r['iteration_s']:.1f}",
                                        r["bound"], f"{r['tokens_per_s']:.0f}",
                                        f"{r['learner_state_gib']:.1f}"]) + " |")
    g = GPUS[gpu]
    assumptions = (f"\nAssumptions: {g.name} ({g.peak_flops / 1e12:.0f} TFLOP/s dense bf16, {g.hbm_bytes_s / 1e12:.2f} "
                   f"TB/s HBM); MFU 0.5 forward, 0.4 training; decode reads the bf16 weights once per step (KV cache "
                   f"left out); NVLink 450 GB/s inside a node of {gpus_per_node} GPUs, 50 GB/s per GPU across nodes; "
                   f"policy {rows[0]['policy_params']:.3g} and RM/critic {rows[0]['rm_params']:.3g} parameters; "
                   f"{prompt_tokens:.0f} prompt and {rows[0]['response_tokens']:.0f} response tokens per sequence; "
                   "no fixed overheads (a lower bound).\n")
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "scale_predicted.md").write_text("\n".join(lines) + "\n" + assumptions)
    (run_dir / "scale_predicted.json").write_text(json.dumps(rows, indent=1))
    return rows
