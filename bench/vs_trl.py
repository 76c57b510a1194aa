"""rlhf_ray against TRL's PPO trainer on the same workload, one after the other in one invocation.

    .venv/bin/python bench/vs_trl.py [--reps 3] [--iterations 4] [--out bench/results] [--variants grpo,...]
    .venv/bin/python bench/vs_trl.py --update rollout|trl|variants   # rerun one part into the saved results

The workload is the quickstart's (configs/quickstart.yaml): SmolLM2-135M-Instruct, 4 shipped HH-RLHF prompts x 4
samples = 16 sequences per iteration, its rollout.max_new_tokens (96), 1 PPO epoch in optimizer steps of 4 sequences, a reward
model and a critic on the policy's backbone (a fresh head, the same folder for both systems), KL coefficient 0.05.
Both sample at temperature 1, top-p 1, no repetition penalty, and get the same prompt tokens: TRL's PPO draws one
response per prompt, so its dataset holds each of the iteration's prompts 4 times.

Per repetition it runs `rlhf-ray train` and then TRL's PPOTrainer (`bench/trl_ppo.py`, trl 1.12.0, the last release
that has one, in its own virtual environment made on first use with pip, so the project's pins stay untouched), each a
fresh process; the first iteration of each is warm-up
and left out. Then rlhf_ray alone in variants (each critic-free estimator; one-step off-policy rollout overlapping
learning; padding-free updates; each speed-up undone: the learner's own old log-probs, object-store sync), and
first of all a standalone vLLM engine against a RolloutActor
on the same requests (bench/vllm_standalone.py). Measured, per system: seconds per iteration, samples/s, per-phase seconds (rlhf_ray), peak memory (PSS
summed over the process tree, sampled every second); the ratio TRL/rlhf_ray per repetition (min/median/max); the
RolloutActor's generated tokens/s over the standalone engine's; weight sync's share of the iteration; the learn and
experience phases' model FLOP/s against this machine's matmul peak measured here first. Writes vs_trl.json and
vs_trl.md into --out.
"""

import argparse
import json
import logging
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import torch
from flops import ModelFlops, learner_flops, matmul_gflops

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from rlhf_ray.device import resolve_precision  # noqa: E402  (the repository root on the path first)
from rlhf_ray.environment import apply_defaults  # noqa: E402
from rlhf_ray.progress import Progress  # noqa: E402

TRL_VERSION = "1.12.0"  # the last TRL with a PPOTrainer (trl.experimental.ppo); 1.13-1.16 ship none
PHASES = ("rollout", "score", "experience", "learn", "sync")
# rlhf_ray alone, each beside the default (the quickstart's settings with gae: the engine's log-probs, collective
# sync): the critic-free estimators, the overlapped rollout, padding-free updates, and each speed-up undone.
VARIANTS = {"grpo": ["ppo.advantage_estimator=grpo"], "rloo": ["ppo.advantage_estimator=rloo"],
            "reinforce_pp": ["ppo.advantage_estimator=reinforce_pp"],
            "one_step_off_policy": ["rollout.one_step_off_policy=true"],
            "padding_free": ["learner.padding_free=true"], "old_logprobs_learner": ["ppo.old_logprobs=learner"],
            "object_store_sync": ["sync.transport=object_store"]}


class TreeMemory:
    """Peak of the summed PSS (shared pages split between their users) of a process and all its descendants."""

    def __init__(self, pid: int, every_s: float = 1.0):
        self.root, self.every_s, self.peak, self._stop = psutil.Process(pid), every_s, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            total = 0
            try:
                procs = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            for proc in procs:
                try:
                    total += proc.memory_full_info().pss
                except (psutil.NoSuchProcess, psutil.AccessDenied):
                    pass
            self.peak = max(self.peak, total)
            self._stop.wait(self.every_s)

    def stop(self) -> float:
        self._stop.set()
        self._thread.join()
        return self.peak / 2**30


def run_measured(cmd: list[str], log: Path, env: dict | None = None, timeout_s: float = 3600) -> float:
    """Run cmd (output to log), return the peak GiB of its process tree; a failure raises with the log's tail."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
        memory = TreeMemory(proc.pid)
        try:
            code = proc.wait(timeout=timeout_s)
        finally:
            peak = memory.stop()
    if code:
        raise RuntimeError(f"{' '.join(cmd[:3])} ... exited {code}; the end of {log}:\n{log.read_text()[-3000:]}")
    return peak


def trl_python(venv: Path, version: str) -> Path:
    """A virtual environment with TRL `version` and this project's torch version (CPU wheels through pip's own
    configuration), made once and reused."""
    python = venv / "bin" / "python"
    marker = venv / f"trl-{version}.ok"
    if marker.exists():
        return python
    print(f"bench: making {venv} with trl=={version} (once)", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    # This project's exact torch build (its +cpu wheel comes through pip's configured find-links on a CPU machine).
    with open(venv / "pip.log", "w") as log:
        subprocess.run([str(python), "-m", "pip", "install", f"trl=={version}", f"torch=={torch.__version__}"],
                       check=True, stdout=log, stderr=subprocess.STDOUT)
    marker.write_text(subprocess.run([str(python), "-m", "pip", "freeze"], check=True, capture_output=True,
                                     text=True).stdout)
    return python


# ------------------------------------------------------------------------------------------------ the workload
def workload(args, work: Path) -> dict:
    """The quickstart config with the benchmark's sampling, the shared RM folder, and the exact prompt tokens that
    rlhf_ray's iterations will take (its seeded prompt order), for TRL's dataset."""
    from launch.trainer import prompt_order, prompt_token_ids
    from rlhf_ray.config import load_config
    from rlhf_ray.models import load_tokenizer, reward_model_from_lm
    from rlhf_ray.models.assets import resolve_model

    # gae: TRL's PPO trains a critic, so the equal setting has one too, whatever estimator the quickstart picks.
    overrides = ["ppo.advantage_estimator=gae", "rollout.temperature=1.0", "rollout.top_p=1.0",
                 "rollout.repetition_penalty=1.0",
                 f"ppo.iterations={args.iterations}", "run.checkpoint_every=1000", f"run.output_dir={work}/runs"]
    cfg = load_config(REPO / "configs" / "quickstart.yaml", overrides)
    policy = resolve_model(cfg.model.policy)
    tokenizer = load_tokenizer(policy)
    rm = work / "rm"
    if not (rm / "config.json").exists():  # one fresh-head RM for both systems: speed, not quality, is measured
        torch.manual_seed(0)
        reward_model_from_lm(policy, pad_token_id=tokenizer.pad_token_id).save_pretrained(rm)
        tokenizer.save_pretrained(rm)
    prompts = prompt_token_ids(cfg, tokenizer)
    order = prompt_order(cfg, len(prompts))
    per_iter, n = cfg.ppo.prompts_per_iteration, cfg.rollout.n_samples
    used = [prompts[order[i % len(order)]] for i in range(per_iter * args.iterations)]
    trl_rows = work / "trl_prompts.jsonl"  # TRL: one response per prompt, so each prompt n times, iteration by iteration
    trl_rows.write_text("".join(json.dumps({"input_ids": ids}) + "\n" for ids in used for _ in range(n)))
    vllm_rows = work / "vllm_prompts.jsonl"
    vllm_rows.write_text("".join(json.dumps({"input_ids": ids}) + "\n" for ids in used))
    return {"cfg": cfg, "overrides": overrides + [f"model.reward={rm}"], "policy": str(policy), "rm": str(rm),
            "trl_prompts": trl_rows, "vllm_prompts": vllm_rows, "sequences": per_iter * n, "prompts": per_iter,
            "n_samples": n, "max_new_tokens": cfg.rollout.max_new_tokens, "ppo_epochs": cfg.learner.ppo_epochs,
            "mini_batch": cfg.learner.micro_batch_size, "iterations": args.iterations,
            "precision": learner_precision(cfg)}  # decided once: the report's and TRL's


def learner_precision(cfg) -> str:
    """rlhf_ray's learner precision on this machine, as the report names it (fp32, bf16, or per GPU)."""
    mode = resolve_precision(cfg.model.mixed_precision).mode
    return "fp32" if mode == "none" else mode


# ------------------------------------------------------------------------------------------------ the runs
def run_rlhf_ray(w: dict, work: Path, name: str, extra: list[str] = ()) -> dict:
    cmd = [str(REPO / ".venv" / "bin" / "rlhf-ray"), "train", str(REPO / "configs" / "quickstart.yaml"),
           *w["overrides"], f"run.name={name}", *extra, "--no-progress"]
    peak = run_measured(cmd, work / f"{name}.log")
    rows = [json.loads(line) for line in (work / "runs" / name / "metrics.jsonl").read_text().splitlines() if line]
    steady = rows[1:]  # the first iteration carries warm-up (vLLM's first batch, allocator growth)
    med = lambda key: statistics.median(r[key] for r in steady)  # noqa: E731
    return {"name": name, "iteration_s": [r["perf/iteration_s"] for r in steady], "median_iteration_s":
            med("perf/iteration_s"), "samples_per_s": w["sequences"] / med("perf/iteration_s"),
            "phase_s": {ph: med(f"time/{ph}_s") for ph in PHASES}
            | ({"rollout_wait": statistics.median(r["time/rollout_wait_s"] for r in steady if "time/rollout_wait_s" in r)}
               if any("time/rollout_wait_s" in r for r in steady) else {}),
            "sync_share": med_ratio(steady, "time/sync_s", "perf/iteration_s"),
            "rollout_tokens_per_s": med("perf/rollout_tokens_per_s"),
            "learn_tokens": med_product(steady, "perf/learn_tokens_per_s", "time/learn_s"),
            "generated_tokens": med_product(steady, "perf/rollout_tokens_per_s", "time/rollout_s"),
            "response_length": med("response/length"), "peak_gib": peak}


def med_ratio(rows, a, b):
    return statistics.median(r[a] / r[b] for r in rows)


def med_product(rows, a, b):
    return statistics.median(r[a] * r[b] for r in rows)


def run_trl(w: dict, work: Path, name: str, python: Path, threads: int) -> dict:
    out = work / f"{name}.json"
    cmd = [str(python), str(REPO / "bench" / "trl_ppo.py"), "--policy", w["policy"], "--reward", w["rm"],
           "--prompts", str(w["trl_prompts"]), "--batch", str(w["sequences"]), "--response-length",
           str(w["max_new_tokens"]), "--ppo-epochs", str(w["ppo_epochs"]), "--mini-batch", str(w["mini_batch"]),
           "--updates", str(w["iterations"]), "--temperature", "1.0", "--kl-coef", str(w["cfg"].ppo.kl_coef),
           "--lr", str(w["cfg"].learner.actor_lr), "--seed", "0", "--out", str(out)]
    if w["precision"] == "bf16":
        cmd.append("--bf16")  # equal settings: TRL's bf16 mixed precision where rlhf_ray's learner runs bf16
    env = {"OMP_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    peak = run_measured(cmd, work / f"{name}.log", env)
    result = json.loads(out.read_text())
    steady = result["update_s"][1:]
    median = statistics.median(steady)
    return {"name": name, "iteration_s": steady, "median_iteration_s": median,
            "samples_per_s": w["sequences"] / median, "phase_s": result.get("phase_s", {}),
            "response_length": result.get("response_length"), "peak_gib": peak, "trl": result.get("versions", {}),
            "precision": result.get("precision")}


def run_vllm(w: dict, work: Path, dtype: str, threads: int) -> dict:
    """The standalone engine, then a RolloutActor, on the same requests (bench/vllm_standalone.py): equal outputs,
    so equal work; the ratio is of their median generated tokens/s."""
    runs = {}
    for engine in ("vllm", "actor"):
        out = work / f"rollout_{engine}.json"
        cmd = [sys.executable, str(REPO / "bench" / "vllm_standalone.py"), "--engine", engine, "--policy",
               w["policy"], "--prompts", str(w["vllm_prompts"]), "--n", str(w["n_samples"]), "--batch",
               str(w["prompts"]), "--max-tokens", str(w["max_new_tokens"]), "--temperature", "1.0", "--top-p", "1.0",
               "--dtype", dtype, "--max-model-len", str(w["cfg"].rollout.max_model_len), "--kv-cache-gib",
               str(w["cfg"].rollout.kv_cache_gib), "--threads", str(threads), "--calls", str(max(3, w["iterations"])),
               "--out", str(out)]
        run_measured(cmd, work / f"rollout_{engine}.log", {"OMP_NUM_THREADS": str(threads)})
        runs[engine] = json.loads(out.read_text())
    v, a = runs["vllm"], runs["actor"]
    return {"tokens_per_s": v["tokens_per_s"], "rollout_actor_tokens_per_s": a["tokens_per_s"],
            "ratio": a["tokens_per_s"] / v["tokens_per_s"], "same_tokens": v["tokens_sha"] == a["tokens_sha"],
            "dtype": dtype, "vllm": v.get("vllm"), "runs": runs}


# ------------------------------------------------------------------------------------------------ the report
def spread(values: list[float]) -> dict:
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def learner_rates(run: dict, w: dict, critic: bool = True) -> dict:
    """Model GFLOP/s of the learn and experience phases (bench/flops.py: real tokens only)."""
    flops = learner_flops(ModelFlops(Path(w["policy"]) / "config.json"), run["learn_tokens"], run["generated_tokens"],
                          w["sequences"], w["ppo_epochs"], critic)
    return {phase: flops[phase] / run["phase_s"][phase] / 1e9 for phase in ("learn", "experience")}


def machine() -> dict:
    from rlhf_ray.device import cpu_flags, native_bf16

    model = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
                 platform.processor())
    bf16, why = native_bf16("cpu", cpu_flags()) if not torch.cuda.is_available() else (True, "cuda")
    return {"cpu": model, "cores": os.cpu_count(), "native_bf16": bf16, "why": why, "python": platform.python_version(),
            "torch": torch.__version__}


def write_report(result: dict, out: Path) -> str:
    r, t = result["rlhf_ray"], result["trl"]
    ratio, w, m = result["ratio"], result["workload"], result["machine"]
    lines = [f"# rlhf_ray vs TRL PPO ({result['date']})", "",
             f"Machine: {m['cpu']}, {m['cores']} cores, native bf16: {m['native_bf16']}; matmul peak on "
             f"{result['threads']} threads: fp32 {result['peak_gflops']['fp32']:.1f} GFLOP/s, bf16 "
             f"{result['peak_gflops']['bf16']:.1f} GFLOP/s.",
             f"Workload: SmolLM2-135M-Instruct, {w['prompts']} prompts x {w['n_samples']} samples = {w['sequences']} "
             f"sequences per iteration, up to {w['max_new_tokens']} new tokens, {w['ppo_epochs']} PPO epoch(s), "
             f"optimizer steps of {w['mini_batch']} sequences; {w['iterations']} iterations per run, the first left "
             f"out; {len(r)} repetitions. TRL {t[0]['trl'].get('trl', '?') if t else '-'}"
             f"{' in ' + t[0]['precision'] if t and t[0].get('precision') else ''}.", "",
             *([f"Parts rerun into these results later, on the same machine: {'; '.join(result['updated'])}.", ""]
               if result.get("updated") else []),
             "| system | s / iteration (median of runs) | min | max | samples/s | peak memory GiB |",
             "|---|---:|---:|---:|---:|---:|"]
    for label, runs in (("rlhf_ray", r), ("TRL PPOTrainer", t)):
        if runs:
            its = [x["median_iteration_s"] for x in runs]
            lines.append(f"| {label} | {statistics.median(its):.1f} | {min(its):.1f} | {max(its):.1f} | "
                         f"{statistics.median(x['samples_per_s'] for x in runs):.2f} | "
                         f"{max(x['peak_gib'] for x in runs):.1f} |")
    if ratio:
        lines += ["", f"**TRL time / rlhf_ray time per iteration: median {ratio['median']:.2f}x** (min "
                      f"{ratio['min']:.2f}x, max {ratio['max']:.2f}x over the repetitions)."]
    lines += ["", "rlhf_ray per phase (s, median):", "",
              "| " + " | ".join(PHASES) + " | sync share | rollout tokens/s |", "|" + "---:|" * (len(PHASES) + 2)]
    for x in r:
        lines.append("| " + " | ".join(f"{x['phase_s'][ph]:.2f}" for ph in PHASES)
                     + f" | {100 * x['sync_share']:.1f} % | {x['rollout_tokens_per_s']:.0f} |")
    if t and t[0]["phase_s"]:
        lines += ["", "TRL per phase (s, median): " + ", ".join(
            f"{k} {statistics.median(x['phase_s'][k] for x in t):.2f}" for k in t[0]["phase_s"])]
    v = result.get("vllm")
    if v:
        same = "the same tokens" if v["same_tokens"] else "DIFFERENT tokens (unequal work)"
        lines += ["", f"Rollout: RolloutActor {v['rollout_actor_tokens_per_s']:.0f} generated tokens/s vs a standalone "
                      f"vLLM engine {v['tokens_per_s']:.0f} ({v['dtype']}, the same requests: prompts, seeds, sampling "
                      f"and batch; both generated {same}): **{v['ratio']:.2f}x**. Inside the PPO runs (other weights, "
                      f"so other lengths) the rollout phase ran at the tokens/s in the phase table."]
    f = result["learner_gflops"]
    bf16 = (f"{100 * f['learn_fraction_bf16']:.0f} % of the bf16 peak" if m["native_bf16"]
            else "bf16 is emulated here, so fp32's peak is the reference")
    lines += ["", f"Learner: learn {f['learn']:.1f} GFLOP/s = {100 * f['learn_fraction_fp32']:.0f} % of the fp32 "
                  f"matmul peak ({bf16}); experience {f['experience']:.1f} GFLOP/s; the learner ran in "
                  f"{result['precision']}."]
    variants = result.get("variants") or result.get("estimators")
    if variants:
        lines += ["", "rlhf_ray variants (s, median; critic-free estimators train no critic; one_step_off_policy generates "
                      "the next iteration during learn, its rollout hidden but for the wait):", "",
                  "| variant | s / iteration | rollout | wait | experience | learn | peak GiB |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for name, x in variants.items():
            ph = x["phase_s"]
            wait = f"{ph['rollout_wait']:.2f}" if "rollout_wait" in ph else "-"
            lines.append(f"| {name} | {x['median_iteration_s']:.1f} | {ph['rollout']:.2f} | {wait} | "
                         f"{ph['experience']:.2f} | {ph['learn']:.2f} | {x['peak_gib']:.1f} |")
    text = "\n".join(lines) + "\n"
    (out / "vs_trl.md").write_text(text)
    (out / "vs_trl.json").write_text(json.dumps(result, indent=1, default=str))
    return text


def run_variants(w: dict, work: Path, stamp: str, names: list[str], progress: Progress) -> dict:
    out = {}
    for name in names:
        print(f"bench: rlhf_ray variant {name}: {' '.join(VARIANTS[name])}", flush=True)
        out[name] = run_rlhf_ray(w, work, f"rlhf_ray_{stamp}_{name}", VARIANTS[name])
        progress.update(last=f"{name} {out[name]['median_iteration_s']:.1f} s/iteration")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=3, help="repetitions of each system")
    p.add_argument("--iterations", type=int, default=4, help="PPO iterations per run (the first is warm-up)")
    p.add_argument("--out", type=Path, default=REPO / "bench" / "results")
    p.add_argument("--work", type=Path, default=REPO / ".cache" / "bench", help="run folders, logs, the TRL venv")
    p.add_argument("--trl-version", default=TRL_VERSION)
    p.add_argument("--threads", type=int, default=2, help="torch threads of each system's compute processes")
    p.add_argument("--no-trl", action="store_true", help="rlhf_ray only (no ratio)")
    p.add_argument("--variants", default=",".join(VARIANTS),
                   help=f"comma-separated rlhf_ray variants to run after the comparison, of {', '.join(VARIANTS)} "
                        "('' for none)")
    p.add_argument("--update", choices=("rollout", "trl", "variants"),
                   help="rerun only this part and merge it into the saved vs_trl.json in --out (same workload)")
    args = p.parse_args()
    if args.iterations < 2:
        p.error("--iterations must be >= 2: the first iteration is warm-up and left out")
    variants = [v for v in args.variants.split(",") if v]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        p.error(f"unknown variant(s) {unknown}; choose from {list(VARIANTS)}")
    apply_defaults()  # rlhf_ray's environment: offline hub, no per-update bars of transformers in this console
    work = args.work.resolve()
    (work / "runs").mkdir(parents=True, exist_ok=True)
    args.out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S")
    w = workload(args, work)
    dtype = resolve_precision(w["cfg"].rollout.dtype, knob="rollout.dtype").engine_dtype
    runs = {"rollout": 1, "trl": args.reps, "variants": len(variants), None: 1 + args.reps * (1 + (not args.no_trl))
            + len(variants)}[args.update]
    progress = Progress(runs, "bench", unit="run", every_s=0.0)  # each run a line: with its ETA
    if args.update:
        result = json.loads((args.out / "vs_trl.json").read_text())
        if args.update == "rollout":
            result["vllm"] = run_vllm(w, work, dtype, args.threads)
            progress.update()
        elif args.update == "trl":
            python = trl_python(work / "trl-venv", args.trl_version)
            result["trl"] = []
            for rep in range(args.reps):
                result["trl"].append(run_trl(w, work, f"trl_{stamp}_{rep}", python, args.threads))
                progress.update(last=f"TRL {result['trl'][-1]['median_iteration_s']:.1f} s/iteration")
            ratio = [b["median_iteration_s"] / a["median_iteration_s"] for a, b in zip(result["rlhf_ray"], result["trl"])]
            result["ratio"] = spread(ratio)
        else:
            result["variants"] = (result.pop("variants", None) or result.pop("estimators", {})) \
                | run_variants(w, work, stamp, variants, progress)
        result.setdefault("updated", []).append(f"{args.update} {time.strftime('%Y-%m-%d %H:%M')}")
        print(write_report(result, args.out))
        return

    peak = {"fp32": matmul_gflops(torch.float32, args.threads), "bf16": matmul_gflops(torch.bfloat16, args.threads)}
    print(f"bench: matmul peak on {args.threads} threads: fp32 {peak['fp32']:.1f}, bf16 {peak['bf16']:.1f} GFLOP/s",
          flush=True)
    python = None if args.no_trl else trl_python(work / "trl-venv", args.trl_version)
    print("bench: a standalone vLLM engine and a RolloutActor on the same requests", flush=True)
    vllm = run_vllm(w, work, dtype, args.threads)
    progress.update(last=f"RolloutActor {vllm['ratio']:.2f}x a standalone engine "
                         f"({vllm['rollout_actor_tokens_per_s']:.0f} vs {vllm['tokens_per_s']:.0f} tokens/s)")
    ours, theirs = [], []
    for rep in range(args.reps):
        print(f"bench: repetition {rep + 1}/{args.reps}: rlhf_ray", flush=True)
        ours.append(run_rlhf_ray(w, work, f"rlhf_ray_{stamp}_{rep}"))
        progress.update(last=f"rlhf_ray {ours[-1]['median_iteration_s']:.1f} s/iteration")
        if python:
            print(f"bench: repetition {rep + 1}/{args.reps}: TRL", flush=True)
            theirs.append(run_trl(w, work, f"trl_{stamp}_{rep}", python, args.threads))
            progress.update(last=f"TRL {theirs[-1]['median_iteration_s']:.1f} s/iteration")
    default = {"default": {"median_iteration_s": statistics.median(x["median_iteration_s"] for x in ours),
                       "phase_s": ours[0]["phase_s"], "peak_gib": max(x["peak_gib"] for x in ours)}}
    rates = learner_rates(ours[0], w)
    rates |= {"learn_fraction_fp32": rates["learn"] / peak["fp32"], "learn_fraction_bf16": rates["learn"] / peak["bf16"]}
    ratio = spread([b["median_iteration_s"] / a["median_iteration_s"] for a, b in zip(ours, theirs)]) if theirs else None
    result = {"date": time.strftime("%Y-%m-%d %H:%M"), "machine": machine(), "threads": args.threads,
              "peak_gflops": peak, "precision": w["precision"],
              "workload": {k: v for k, v in w.items() if k not in ("cfg", "trl_prompts", "vllm_prompts", "precision")},
              "rlhf_ray": ours, "trl": theirs, "ratio": ratio, "vllm": vllm, "learner_gflops": rates,
              "variants": default | run_variants(w, work, stamp, variants, progress)}
    progress.close()
    print(write_report(result, args.out))


if __name__ == "__main__":
    main()
