"""`rlhf-ray seam score|filter|augment`: offline SEAM of a prompt set for a (policy, RM) pair, and the filtered prompt set.

score: the RL prompts of the configured data (each with its gold answer) get seam.k worse answers of seam.variant
(built once, cached), then a Ray Data pipeline scores every (prompt, answer): the policy's teacher-forced log-probs
on one actor pool, the RM's rewards on another (`map_batches`, seam.scorers actors each; on a cluster Ray Data
spreads the pools). The driver combines them into seam_score per prompt under every estimator, and writes
seam_scores.jsonl (raw numbers per answer too, so any estimator can be recomputed) and seam_summary.json.

filter: drops the lowest-SEAM seam.drop_fraction of the scored prompts (seam.filter=random: as many at random, the
control) and writes the kept prompts; `data.rl_prompts=<that file>` makes a PPO run use only them.

augment: (gold > misjudged worse answer) pairs of the lowest-SEAM seam.augment_fraction of the scored prompts
(seam.augment=random: as many random gold > worse pairs, the control); `data.augment_pairs=[<that file>]` adds them
to an RM's training (`rlhf-ray rm train` with model.reward=<the RM> continues it on them).
"""

import json
import logging
import math
import time
from pathlib import Path

import ray
import torch

from actors.seam_scorers import Degrader, PolicyAnswerScorer, RewardAnswerScorer
from rlhf_ray.algorithms.seam import SEAM_ESTIMATORS, lowest_fraction, random_fraction
from rlhf_ray.config import Config, ConfigError
from rlhf_ray.models import load_tokenizer
from rlhf_ray.models.assets import cache_dir, resolve_model
from rlhf_ray.progress import Progress
from rlhf_ray.seam import (
    WorseAnswerCache,
    augment_pairs,
    build_worse_answers,
    builder_settings,
    degrade_with_endpoint,
    keep_worse,
    seam_column,
)
from rlhf_ray.seam.scoring import combine, flatten_answers
from rlhf_ray.training.strength_report import write_jsonl

from .cluster import init_ray
from .trainer import encode_prompts, rl_prompt_rows

log = logging.getLogger("rlhf_ray.seam")

SCORES, SUMMARY, FILTERED = "seam_scores.jsonl", "seam_summary.json", "seam_prompts.jsonl"
QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def worse_answers_for(cfg: Config, prompts: list[str], golds: list[str],
                      show_progress: bool = True) -> tuple[list[list[str]], dict]:
    """seam.k worse answers per prompt (fewer where the builder dropped some), from the cache where it has them."""
    s = cfg.seam
    cache = WorseAnswerCache(Path(s.cache or cache_dir() / "seam") / f"{s.variant}.jsonl")
    stats = {"variant": s.variant, "cached_before": len(cache.rows)}
    degrader = None
    if s.variant == "gpt":
        if s.degrader_endpoint and not s.degrader:
            raise ConfigError("seam.degrader_endpoint needs seam.degrader: the endpoint's model name")

        def degrader(questions, gold_answers, k, seeds):
            if s.degrader_endpoint:
                out = degrade_with_endpoint(s.degrader_endpoint, s.degrader, questions, gold_answers, k, seeds,
                                            s.degrader_max_tokens, s.degrader_temperature)
            else:
                out = keep_worse(ray_degrade(cfg, questions, gold_answers, k, seeds, show_progress),
                                 gold_answers)
            stats.update(dropped_empty=out.dropped_empty, dropped_gold_copies=out.dropped_gold,
                         dropped_repeats=out.dropped_repeats)
            log.info("degrader: %d questions; dropped %d empty samples, %d gold copies, %d repeats", len(questions),
                     out.dropped_empty, out.dropped_gold, out.dropped_repeats)
            return out.answers
    t0 = time.perf_counter()
    worse = build_worse_answers(s.variant, prompts, golds, s.k, s.seed, cache, builder_settings(cfg), degrader,
                                resolve_model(s.encoder) if s.variant == "contrast" else None)
    stats |= {"built": len(cache.rows) - stats["cached_before"], "seconds": time.perf_counter() - t0,
              "answers": sum(map(len, worse)), "prompts_short_of_k": sum(len(w) < s.k for w in worse),
              "cache": str(cache.path)}
    log.info("worse answers (%s): %d prompts, %d built now, %d answers, %d prompts with fewer than %d, %.0f s",
             s.variant, len(prompts), stats["built"], stats["answers"], stats["prompts_short_of_k"], s.k,
             stats["seconds"])
    return worse, stats


def collect_rows(ds, total: int, desc: str, unit: str, show_progress: bool) -> list[dict]:
    """A Ray Dataset's rows as its actor pools produce them, counted on the project's progress bar (Ray Data's own
    per-operator bars off), in the order of their "i" column."""
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = []
    with Progress(total, desc, unit=unit, logger=log, bar=show_progress) as progress:
        for row in ds.iter_rows():
            rows.append(row)
            progress.update()
    return sorted(rows, key=lambda row: row["i"])


def ray_degrade(cfg: Config, questions: list[str], golds: list[str], k: int, seeds: list[int],
                show_progress: bool = True) -> list[list[str]]:
    """Raw degrader samples from a Ray Data pool of local degrader engines."""
    r = cfg.rollout
    items = [{"i": i, "question": q, "gold": g, "seed": s} for i, (q, g, s) in enumerate(zip(questions, golds, seeds))]
    ds = ray.data.from_items(items).map_batches(
        Degrader, batch_format="pandas", batch_size=cfg.seam.batch_prompts, concurrency=cfg.seam.scorers,
        num_cpus=r.resources.num_cpus, num_gpus=r.resources.num_gpus,
        fn_constructor_kwargs=dict(model_dir=str(resolve_model(cfg.seam.degrader or cfg.model.policy)),
                                   engine=r.engine, dtype=r.dtype, max_model_len=r.max_model_len,
                                   kv_cache_gib=r.kv_cache_gib, k=k, max_tokens=cfg.seam.degrader_max_tokens,
                                   temperature=cfg.seam.degrader_temperature))
    return [list(row["samples"]) for row in collect_rows(ds, len(items), "seam degrade", "question", show_progress)]


def score_answers(cfg: Config, policy_dir: Path, reward_dir: str, flat, eos_id: int,
                  show_progress: bool = True) -> list[dict]:
    """Each flat (prompt, answer) pair's summed policy log-prob, token count and reward, through two actor pools."""
    r, s = cfg.rollout, cfg.seam
    items = [{"i": i, "prompt_ids": p, "answer_ids": a, "policy_answer_ids": a + [eos_id]}
             for i, (p, a) in enumerate(zip(flat.prompt_ids, flat.answer_ids))]
    rows_per_batch = s.batch_prompts * (s.k + 1)
    ds = ray.data.from_items(items).map_batches(
        PolicyAnswerScorer, batch_format="pandas", batch_size=rows_per_batch, concurrency=s.scorers,
        num_cpus=r.resources.num_cpus, num_gpus=r.resources.num_gpus,
        fn_constructor_kwargs=dict(model_dir=str(policy_dir), engine=r.engine, dtype=r.dtype,
                                   max_model_len=r.max_model_len, kv_cache_gib=r.kv_cache_gib))
    if r.resources.num_gpus or cfg.reward.resources.num_gpus:
        # Streaming runs both pools at once; whole GPUs for each may not exist: finish the policy stage first.
        ds = ds.materialize()
    ds = ds.map_batches(
        RewardAnswerScorer, batch_format="pandas", batch_size=rows_per_batch, concurrency=s.scorers,
        num_cpus=cfg.reward.resources.num_cpus, num_gpus=cfg.reward.resources.num_gpus,
        fn_constructor_kwargs=dict(model_dir=reward_dir, mixed_precision=cfg.model.mixed_precision,
                                   batch_size=cfg.reward.batch_size))
    rows = collect_rows(ds.select_columns(["i", "logprob_sum", "length", "reward"]), len(items), "seam score",
                        "answer", show_progress)
    if len(rows) != len(items):
        raise RuntimeError(f"SEAM scoring returned {len(rows)} of {len(items)} (prompt, answer) rows")
    return rows


def seam_prompt_ids(cfg: Config, tokenizer, rows) -> list[list[int]]:
    """Prompts rendered as for RL, cut from the left so that prompt + answer + EOS fits the policy engine."""
    room = cfg.rollout.max_model_len - cfg.seam.max_answer_tokens - 2
    if room < 8:
        raise ConfigError(f"rollout.max_model_len ({cfg.rollout.max_model_len}) leaves no room for a prompt beside "
                          f"seam.max_answer_tokens ({cfg.seam.max_answer_tokens})")
    return encode_prompts(cfg, tokenizer, rows, room=room)


def distribution(scores: torch.Tensor) -> dict:
    x = scores[~scores.isnan()].double()
    if not len(x):
        return {"scored": 0}
    q = torch.quantile(x, torch.tensor(QUANTILES, dtype=torch.float64)).tolist()
    return {"scored": len(x), "mean": float(x.mean()), "std": float(x.std()) if len(x) > 1 else 0.0,
            "min": float(x.min()), "max": float(x.max())} | {f"q{int(p * 100):02d}": v for p, v in zip(QUANTILES, q)}


def run_seam_score(cfg: Config, run_dir: Path, policy: str | None = None, reward: str | None = None,
                   show_progress: bool = True) -> dict:
    """Score the RL prompts of cfg.data; writes seam_scores.jsonl and seam_summary.json into run_dir."""
    reward = reward or cfg.model.reward
    if not reward:
        raise ConfigError("seam score needs a reward model: set model.reward (or --rm)")
    if cfg.data.prompt_paths:
        raise ConfigError("seam score scores each RL prompt against its gold answer, and the prompts of "
                          "data.prompt_paths have none: leave data.prompt_paths empty for SEAM")
    policy_dir = resolve_model(policy or cfg.model.policy)
    tokenizer = load_tokenizer(policy_dir)
    rows = rl_prompt_rows(cfg)
    prompts, golds = list(rows["prompt"]), list(rows["gold"])
    prompt_ids = seam_prompt_ids(cfg, tokenizer, rows)
    init_ray(cfg.cluster, run_dir)
    t0 = time.perf_counter()
    worse, build_stats = worse_answers_for(cfg, prompts, golds, show_progress)
    flat = flatten_answers(prompt_ids, golds, worse, tokenizer, cfg.seam.max_answer_tokens)
    log.info("scoring %d (prompt, answer) pairs of %d prompts with %s and %s", len(flat.where), len(prompts),
             policy_dir, reward)
    t1 = time.perf_counter()
    scored = score_answers(cfg, policy_dir, reward, flat, tokenizer.eos_token_id, show_progress)
    score_seconds = time.perf_counter() - t1
    lp, n, r = ([row[key] for row in scored] for key in ("logprob_sum", "length", "reward"))
    # Every estimator, and the two that read log-likelihoods also without the length penalty (count does not).
    by = {f"{est}{'_sum' if pen == 'sum' else ''}": combine(flat, lp, n, r, est, pen)
          for est in SEAM_ESTIMATORS for pen in ("mean", "sum") if pen == "mean" or est != "count"}
    # The configured score is one of those (count reads no log-likelihoods, so it has no _sum twin).
    main = by[cfg.seam.estimator + ("_sum" if cfg.seam.length_penalty == "sum" and cfg.seam.estimator != "count" else "")]
    write_scores(run_dir / SCORES, rows, worse, main, by, flat, lp, n, r)
    summary = {
        "policy": str(policy_dir), "reward_model": str(reward), "variant": cfg.seam.variant, "k": cfg.seam.k,
        "estimator": cfg.seam.estimator, "length_penalty": cfg.seam.length_penalty, "prompts": len(prompts),
        "unscored": int(main.scores.isnan().sum()), "pairs_scored": len(flat.where), "nan_answers": main.nan_answers,
        "misjudgement_rate": main.misjudgement_rate(), "seam": distribution(main.scores),
        "by_estimator": {name: distribution(res.scores) for name, res in by.items()},
        "worse_answers": build_stats, "score_seconds": score_seconds, "seconds": time.perf_counter() - t0,
        "scores": str(run_dir / SCORES),
    }
    (run_dir / SUMMARY).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def write_scores(path: Path, rows, worse_texts, main, by: dict, flat, lp, n, r) -> None:
    per_prompt: list[list[tuple]] = [[] for _ in range(flat.n)]
    for (i, slot), a, b, c in zip(flat.where, lp, n, r):
        per_prompt[i].append((slot, a, b, c))
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for i, row in enumerate(rows):
            answers = sorted(per_prompt[i])
            worse = [a for a in answers if a[0] > 0]
            f.write(json.dumps({
                "prompt_index": i, "prompt": row["prompt"], "format": row["format"], "gold": row["gold"],
                "seam": _num(main.scores[i]), "seam_by": {k: _num(v.scores[i]) for k, v in by.items()},
                "worse": int(main.valid[i].sum()), "misjudged": int(main.misjudged[i].sum()),
                "gold_reward": _num(main.gold_reward[i]), "gold_logprob": _num(main.gold_loglik[i]),
                "gold_tokens": int(main.gold_len[i]) if not main.gold_loglik[i].isnan() else None,
                "worse_reward": [w[3] for w in worse], "worse_logprob": [w[1] for w in worse],
                "worse_tokens": [w[2] for w in worse], "worse_answers": [worse_texts[i][w[0] - 1] for w in worse],
            }) + "\n")
    tmp.replace(path)


def _num(x) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def read_scores(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                row["prompt"], row["seam"]  # noqa: B018 - both fields must be there
            except (ValueError, KeyError, TypeError) as e:
                raise ConfigError(f"{path}:{line_no}: not a seam score row ({e})") from e
            rows.append(row)
    return rows


def run_seam_filter(cfg: Config, scores_path: Path, out_path: Path) -> dict:
    """Drop the lowest-SEAM (or, seam.filter=random, random) seam.drop_fraction of the scored prompts; unscored
    prompts pass and are counted. Writes the kept prompts as JSONL (prompt, format, gold, seam)."""
    method = cfg.seam.filter
    if method == "none":
        raise ConfigError("seam filter needs seam.filter=seam (the lowest SEAM) or seam.filter=random (the control)")
    rows = read_scores(scores_path)
    scores = seam_column(rows)
    dropped = (lowest_fraction(scores, cfg.seam.drop_fraction) if method == "seam"
               else random_fraction(scores, cfg.seam.drop_fraction, torch.Generator().manual_seed(cfg.run.seed)))
    gone = set(dropped)
    write_jsonl(out_path, [{k: row[k] for k in ("prompt", "format", "gold", "seam")} for i, row in enumerate(rows)
                           if i not in gone])
    summary = {"method": method, "drop_fraction": cfg.seam.drop_fraction, "prompts": len(rows),
               "scored": int((~scores.isnan()).sum()), "unscored_kept": int(scores.isnan().sum()),
               "dropped": len(dropped), "kept": len(rows) - len(dropped), "output": str(out_path),
               "dropped_seam_max": float(scores[dropped].max()) if dropped else None}
    log.info("seam filter (%s): dropped %d of %d scored prompts, kept %d (%d unscored pass) -> %s", method,
             len(dropped), summary["scored"], summary["kept"], summary["unscored_kept"], out_path)
    return summary


def scores_file(path: Path) -> Path:
    """A `seam score` run folder or its scores file -> the scores file, which must exist."""
    scores = path / SCORES if path.is_dir() else path
    if not scores.exists():
        raise FileNotFoundError(f"{scores}: no SEAM scores (run `rlhf-ray seam score` first)")
    return scores


def run_seam_augment(cfg: Config, scores_path: Path, out_path: Path) -> dict:
    """Write seam.augment's pairs (prompt, format, chosen = gold, rejected = a worse answer, seam, misjudged) as JSONL
    and return their counts."""
    rows = read_scores(scores_path)
    pairs, counts = augment_pairs(rows, cfg.seam.augment_fraction, cfg.seam.augment, seed=cfg.run.seed)
    if not pairs:
        raise ValueError(f"{scores_path}: the RM misjudges no worse answer of the lowest-SEAM "
                         f"{cfg.seam.augment_fraction:g} of the prompts; there is nothing to augment with")
    write_jsonl(out_path, pairs)
    log.info("seam augment (%s): %d pairs from %d prompts (%d misjudged) -> %s", counts["select"], counts["pairs"],
             counts["pair_prompts"], counts["misjudged_pairs"], out_path)
    return counts | {"output": str(out_path)}
