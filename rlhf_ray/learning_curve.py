"""Did the reward rise? A run's RM score, first quarter of its iterations against the last, and its reward/KL plot.

The test asks more than noise allows: the last quarter's mean score above the first quarter's by more than two
standard errors. Samples of one prompt share that prompt's difficulty, so the unit is a prompt's mean score within an
iteration. When both quarters hold the same prompts (ppo.prompt_pool equal to a quarter's prompts), the test pairs
each prompt with itself, and the standard error is that of the mean per-prompt change: prompt difficulty cancels.
Otherwise it compares the two sets of units with Welch's standard error.
"""

import json
import math
import statistics
from pathlib import Path


def prompt_means(samples: list[dict]) -> dict[int, dict[int, float]]:
    """Per iteration, the mean score of each prompt's samples (rows of samples.jsonl: step, prompt_index, score)."""
    groups: dict[tuple[int, int], list[float]] = {}
    for row in samples:
        groups.setdefault((int(row["step"]), int(row["prompt_index"])), []).append(float(row["score"]))
    out: dict[int, dict[int, float]] = {}
    for (step, prompt), scores in sorted(groups.items()):
        out.setdefault(step, {})[prompt] = statistics.fmean(scores)
    return out


def _by_prompt(units: dict[int, dict[int, float]], steps: list[int]) -> dict[int, float]:
    """A quarter's mean score per prompt (a prompt seen in several of its iterations: their mean)."""
    seen: dict[int, list[float]] = {}
    for s in steps:
        for prompt, value in units[s].items():
            seen.setdefault(prompt, []).append(value)
    return {prompt: statistics.fmean(values) for prompt, values in seen.items()}


def reward_rise(units: dict[int, dict[int, float]]) -> dict:
    """First vs last quarter (at least one iteration each) of the iterations in `units` (iteration -> prompt ->
    mean score): paired by prompt when both quarters hold the same prompts, else Welch's two-sample comparison."""
    steps = sorted(units)
    if len(steps) < 2:
        raise ValueError(f"a reward trend needs at least 2 iterations, got {len(steps)}")
    q = max(1, len(steps) // 4)
    first_by, last_by = _by_prompt(units, steps[:q]), _by_prompt(units, steps[-q:])
    if set(first_by) == set(last_by) and len(first_by) >= 2:
        prompts = sorted(first_by)
        first, last = [first_by[p] for p in prompts], [last_by[p] for p in prompts]
        se = statistics.stdev([b - a for a, b in zip(first, last)]) / math.sqrt(len(prompts))
        test = "paired"
    else:
        first = [x for s in steps[:q] for x in units[s].values()]
        last = [x for s in steps[-q:] for x in units[s].values()]
        if len(first) < 2 or len(last) < 2:
            raise ValueError("each quarter needs at least 2 prompt means for a standard error")
        se = math.sqrt(statistics.variance(first) / len(first) + statistics.variance(last) / len(last))
        test = "welch"
    diff = statistics.fmean(last) - statistics.fmean(first)
    return {"iterations": len(steps), "quarter": q, "test": test, "first_mean": statistics.fmean(first),
            "first_n": len(first), "last_mean": statistics.fmean(last), "last_n": len(last), "difference": diff,
            "standard_error": se, "z": diff / se if se > 0 else math.inf * (1 if diff > 0 else -1 if diff < 0 else 0),
            "rises": diff > 2 * se}


def describe_rise(rise: dict) -> str:
    verdict = "rises beyond noise" if rise["rises"] else "does not rise beyond noise"
    how = (f"the same {rise['first_n']} prompts, paired" if rise.get("test") == "paired"
           else f"{rise['first_n']} and {rise['last_n']} prompt means")
    return (f"RM score {verdict}: first {rise['quarter']} iteration(s) {rise['first_mean']:.3f}, last "
            f"{rise['quarter']} {rise['last_mean']:.3f} ({how}), difference {rise['difference']:+.3f} = "
            f"{rise['z']:.1f} standard errors (the test: more than 2)")


def plot_reward_kl(rows: list[dict], units: dict[int, dict[int, float]], path: Path) -> Path:
    """reward_kl.png: the mean RM score per iteration with its standard error over prompts, and the KL to the
    reference (the penalty that keeps the reward honest) beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [int(r["step"]) for r in rows]
    fig, (ax_r, ax_k) = plt.subplots(1, 2, figsize=(10, 3.6))
    values = {s: list(units.get(s, {}).values()) for s in steps}
    means = [statistics.fmean(values[s]) if values[s] else float(r["reward/mean"]) for s, r in zip(steps, rows)]
    errs = [statistics.stdev(values[s]) / math.sqrt(len(values[s])) if len(values[s]) > 1 else 0.0 for s in steps]
    ax_r.errorbar(steps, means, yerr=errs, marker="o", capsize=3)
    ax_r.set(xlabel="iteration", ylabel="RM score (mean over prompts, +- s.e.)", title="reward")
    ax_k.plot(steps, [float(r["kl/mean"]) for r in rows], marker="o", color="tab:red")
    ax_k.set(xlabel="iteration", ylabel="KL(policy || reference) per sequence", title="KL")
    for ax in (ax_r, ax_k):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def write_learning_report(run_dir: Path) -> dict | None:
    """reward_kl.png into a PPO run folder, and learning.json with the rise test when samples.jsonl holds the
    per-sample scores (run.save_samples); returns the test (None without samples, or too few of them for it)."""
    run_dir = Path(run_dir)
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    samples_path = run_dir / "samples.jsonl"
    samples = [json.loads(line) for line in samples_path.read_text().splitlines() if line.strip()] \
        if samples_path.exists() else []
    units = prompt_means(samples)
    if len(rows) < 2:
        return None
    plot_reward_kl(rows, units, run_dir / "reward_kl.png")
    try:
        rise = reward_rise(units)
    except ValueError:  # too few iterations or prompts for a standard error: the plot alone
        return None
    (run_dir / "learning.json").write_text(json.dumps(rise, indent=1))
    return rise
