"""One self-contained HTML page (plots embedded, also written as PNGs) for any run folder: the config; PPO's reward,
KL, entropy, response length, per-phase time and throughput per iteration; an RM's train and held-out curves; online
rounds' diagnostics; the run's own plots (reward_kl.png, strength_plot.png); sample responses of the first and the
last iteration side by side."""

import base64
import html
import json
import logging
import math
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("rlhf_ray.report")

# (file stem, title, y label, metric keys): each plotted when the run logged any of its keys.
PLOTS = [
    ("reward", "reward", "score", ["reward/mean", "reward/gold_mean"]),
    ("kl", "KL to the reference", "KL per sequence", ["kl/mean"]),
    ("entropy", "policy entropy", "nats per token", ["ppo/entropy"]),
    ("length", "response length", "tokens", ["response/length"]),
    ("phases", "time per phase", "seconds", None),  # every time/*_s key
    ("throughput", "throughput", "per second", ["perf/rollout_tokens_per_s", "perf/learn_tokens_per_s",
                                                 "perf/samples_per_s"]),
    ("rm_train", "RM training", "", ["train/loss", "train/accuracy"]),
    ("rm_eval", "RM held-out", "", ["eval/accuracy", "eval/loss", "eval/confident/accuracy"]),
    ("rounds", "online rounds", "", ["round/proxy_gold_agreement", "round/proxy_eval_accuracy",
                                     "round/gap_mean_before_update", "round/gap_mean"]),
]
OWN_PLOTS = ["reward_kl.png", "strength_plot.png", "scale_throughput.png", "scale_phases.png"]


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSONL file; a line cut short (a killed run) is left out."""
    rows = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows


def metric_series(rows: list[dict], key: str) -> tuple[list[int], list[float]]:
    """(steps, values) of one metric, the last row of a step winning (a resumed run rewrites steps)."""
    by_step = {int(r["step"]): float(r[key]) for r in rows if key in r and r[key] is not None}
    finite = [(s, v) for s, v in sorted(by_step.items()) if math.isfinite(v)]
    return [s for s, _ in finite], [v for _, v in finite]


def plot_metrics(rows: list[dict], out_dir: Path) -> list[tuple[str, Path]]:
    """The PLOTS this run has data for, as PNGs in out_dir: [(title, path)]."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    logged = {k for r in rows for k in r}
    written = []
    for stem, title, ylabel, keys in PLOTS:
        keys = sorted(k for k in logged if k.startswith("time/") and k.endswith("_s")) if keys is None else keys
        series = [(k, *metric_series(rows, k)) for k in keys if k in logged]
        series = [s for s in series if s[1]]
        if not series:
            continue
        fig, ax = plt.subplots(figsize=(6, 3.4))
        for key, steps, values in series:
            ax.plot(steps, values, marker="o" if len(steps) < 40 else None, markersize=3, label=key)
        ax.set(xlabel="step", ylabel=ylabel, title=title)
        ax.grid(alpha=0.3)
        if len(series) > 1:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = out_dir / f"{stem}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append((title, path))
    return written


def round_table(rows: list[dict]) -> tuple[list[str], list[list[str]]]:
    """Online rounds: one row per round with every round/* metric."""
    rounds = [r for r in rows if "round/index" in r]
    keys = sorted({k for r in rounds for k in r if k.startswith("round/") and k != "round/index"})
    return ["round", "step"] + [k.removeprefix("round/") for k in keys], [
        [f"{r['round/index']:.0f}", str(r["step"])] + [_num(r.get(k)) for k in keys] for r in rounds]


def sample_pairs(samples: list[dict], prompt_text: Callable[[int], str | None], limit: int = 8) -> tuple[int, int, list]:
    """(first step, last step, rows): for prompts sampled in both (else the first `limit` of each), the first sample
    of each, side by side."""
    steps = sorted({int(s["step"]) for s in samples})
    if not steps:
        return 0, 0, []
    first, last = steps[0], steps[-1]

    def by_prompt(step: int) -> dict[int, dict]:
        out: dict[int, dict] = {}
        for s in samples:
            if int(s["step"]) == step:
                out.setdefault(int(s["prompt_index"]), s)
        return out

    a, b = by_prompt(first), by_prompt(last)
    shared = [p for p in a if p in b][:limit]
    pairs = [(p, a[p], b[p]) for p in shared] or [
        (pa, sa, sb) for (pa, sa), (_, sb) in zip(list(a.items())[:limit], list(b.items())[:limit])]
    return first, last, [(prompt_text(p) or f"prompt #{p}", sa, sb) for p, sa, sb in pairs]


def write_run_report(run_dir: Path, prompt_text: Callable[[int], str | None] = lambda i: None) -> Path:
    """<run_dir>/report.html and its PNGs in <run_dir>/report/. prompt_text(i): the text of RL prompt i (samples
    name prompts by index)."""
    run_dir = Path(run_dir)
    out_dir = run_dir / "report"
    out_dir.mkdir(exist_ok=True)
    rows = read_jsonl(run_dir / "metrics.jsonl")
    parts = [f"<h1>{html.escape(run_dir.name)}</h1>", f"<p>{html.escape(str(run_dir.resolve()))}</p>"]
    summary = {}
    for name in ("summary.json", "learning.json", "rm_eval.json", "eval.json"):
        if (run_dir / name).exists():
            summary[name] = json.loads((run_dir / name).read_text())
    if not rows:
        parts.append("<p><b>No metrics yet</b> (metrics.jsonl is missing or empty).</p>")
    else:
        last = {k: v for r in rows for k, v in r.items()}
        parts.append(f"<p>{len({r['step'] for r in rows})} logged steps, the last {last['step']}.</p>")
    for name, content in summary.items():
        parts.append(f"<h2>{name}</h2><pre>{html.escape(json.dumps(content, indent=1)[:4000])}</pre>")
    plots = plot_metrics(rows, out_dir) if rows else []
    plots += [(p, run_dir / p) for p in OWN_PLOTS if (run_dir / p).exists()]
    if plots:
        parts.append("<h2>Curves</h2><div class='grid'>")
        for title, path in plots:
            data = base64.b64encode(path.read_bytes()).decode()
            parts.append(f"<figure><img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>"
                         f"<figcaption>{html.escape(title)}</figcaption></figure>")
        parts.append("</div>")
    header, table = round_table(rows)
    if table:
        parts.append("<h2>Online rounds</h2>" + _table(header, table))
    first, last, pairs = sample_pairs(read_jsonl(run_dir / "samples.jsonl"), prompt_text)
    if pairs:
        parts.append(f"<h2>Samples: iteration {first} and iteration {last}</h2>")
        parts.append(_table(["prompt", f"iteration {first}", f"iteration {last}"], [
            [_clip(p), f"{_clip(a['response'])}<br><i>score {_num(a['score'])}</i>",
             f"{_clip(b['response'])}<br><i>score {_num(b['score'])}</i>"] for p, a, b in pairs], escape=False))
    if (run_dir / "config.yaml").exists():
        parts.append("<h2>Config</h2><details><summary>config.yaml</summary><pre>"
                     f"{html.escape((run_dir / 'config.yaml').read_text())}</pre></details>")
    page = run_dir / "report.html"
    page.write_text(PAGE.format(title=html.escape(run_dir.name), body="\n".join(parts)), encoding="utf-8")
    return page


def _num(v) -> str:
    return "" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)


def _clip(text: str, n: int = 600) -> str:
    text = text if len(text) <= n else text[:n] + " ..."
    return html.escape(text).replace("\n", "<br>")


def _table(header: list[str], rows: list[list[str]], escape: bool = True) -> str:
    cell = html.escape if escape else str
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{cell(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


PAGE = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}: rlhf_ray report</title>
<style>
body {{ font-family: sans-serif; margin: 2em; max-width: 1300px; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 1em; }}
figure {{ margin: 0 1em 1em 0; display: inline-block; vertical-align: top; }} figure img {{ max-width: 620px; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}
td, th {{ border: 1px solid #ccc; padding: 4px 8px; vertical-align: top; text-align: left; }}
pre {{ background: #f6f6f6; padding: 0.5em; overflow-x: auto; }}
</style></head><body>
{body}
</body></html>
"""
