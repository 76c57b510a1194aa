"""`rlhf-ray eval RUN_OR_POLICY --against POLICY`: both policies answer the same held-out prompts (RolloutActors),
a judge RM scores every answer (RewardActors), and the comparison is reported with bootstrap intervals."""

import json
import logging
import sys
from pathlib import Path

from actors.group import ActorGroup
from actors.reward import RewardActor
from actors.rollout import RolloutActor
from rlhf_ray.config import Config, ConfigError
from rlhf_ray.data import load_preferences, prompt_dataset
from rlhf_ray.models import load_tokenizer
from rlhf_ray.models.assets import resolve_model
from rlhf_ray.rollout.types import concat
from rlhf_ray.training.checkpoint import latest_checkpoint
from rlhf_ray.win_rate import compare_scores

from .cluster import init_ray
from .trainer import encode_prompts, sampling_params

log = logging.getLogger("rlhf_ray.eval")


def policy_dir(spec: str) -> Path:
    """A run folder means its latest complete checkpoint's policy; anything else is an HF folder or a known asset."""
    path = Path(spec).expanduser()
    if (path / "checkpoints").is_dir():
        ckpt = latest_checkpoint(path)
        if ckpt is None:
            raise FileNotFoundError(f"{spec}: a run folder without a complete checkpoint to evaluate")
        return ckpt / "policy"
    return resolve_model(spec)


def gold_judge(relabel_with: str | None) -> str | None:
    """The gold RM of a gold run folder that the data is relabeled with (it built the labels: it judges)."""
    if relabel_with and (Path(relabel_with) / "reward_model").is_dir():
        return str(Path(relabel_with) / "reward_model")
    return None


def held_out_prompts(cfg: Config) -> list[dict]:
    """The first eval.prompts distinct prompts of the data's held-out split (never trained on)."""
    rows = prompt_dataset(load_preferences(cfg.data).eval)
    if len(rows) == 0:
        raise ConfigError("the data's held-out split has no prompts: raise data.eval_fraction")
    if len(rows) < cfg.eval.prompts:
        log.warning("the held-out split has %d prompts, fewer than eval.prompts=%d", len(rows), cfg.eval.prompts)
    return list(rows.select(range(min(cfg.eval.prompts, len(rows)))))


def rollout_group(cfg: Config, policy: Path, name: str, num_actors: int | None = None) -> ActorGroup:
    """RolloutActors of a command that samples a fixed policy (eval, generate, chat), as the rollout section says."""
    r = cfg.rollout
    return ActorGroup(RolloutActor, num_actors or r.num_actors, r.resources, str(policy), name=name, engine=r.engine,
                      dtype=r.dtype, max_model_len=r.max_model_len, kv_cache_gib=r.kv_cache_gib, seed=cfg.run.seed,
                      timeout_s=cfg.cluster.placement_timeout_s)


def reward_group(cfg: Config, rm: str, name: str) -> ActorGroup:
    """RewardActors of a command that scores with a fixed RM (eval's judge, rm eval), as the reward section says."""
    return ActorGroup(RewardActor, cfg.reward.num_actors, cfg.reward.resources, rm, name=name,
                      mixed_precision=cfg.model.mixed_precision, batch_size=cfg.reward.batch_size,
                      timeout_s=cfg.cluster.placement_timeout_s)


def answer(cfg: Config, policy: Path, prompts: list[dict], name: str) -> list[str]:
    """One sampled response per prompt (the rollout section's sampling, seeded by run.seed), as text."""
    tok = load_tokenizer(policy)
    ids = encode_prompts(cfg, tok, prompts)
    group = rollout_group(cfg, policy, name)
    try:
        parts = group.run_sharded("generate", ids,
                                  rank_args=lambda rank: (sampling_params(cfg, cfg.run.seed * 100003 + rank, n=1),))
    finally:
        group.kill()
    rollouts = concat(parts)
    texts = [""] * len(prompts)
    for i, response in zip(rollouts.prompt_index, rollouts.response_ids):
        texts[i] = tok.decode(response, skip_special_tokens=True)
    return texts


def judge_scores(cfg: Config, judge: str, prompts: list[dict], answers: list[list[str]]) -> list[list[float]]:
    """The judge's score of every answer list, each (prompt, answer) in the judge's own tokenizer and template."""
    tok = load_tokenizer(judge)
    prompt_ids = encode_prompts(cfg, tok, prompts, room=sys.maxsize)  # uncut: the judge sees it all
    group = reward_group(cfg, judge, "judge")
    try:
        out = []
        for texts in answers:
            pairs = [(p, tok(t, add_special_tokens=False)["input_ids"]) for p, t in zip(prompt_ids, texts)]
            out.append([s for part in group.run_sharded("score", pairs) for s in part])
        return out
    finally:
        group.kill()


def run_eval(cfg: Config, run_dir: Path, policy: str, against: str) -> dict:
    """Policy A (a run folder or a model) against policy B on held-out prompts, judged by eval.judge. Writes
    <run_dir>/eval.json (the comparison) and eval_samples.jsonl (every prompt, both answers, both scores)."""
    judge = cfg.eval.judge or gold_judge(cfg.data.relabel_with)
    if not judge:
        raise ConfigError("eval needs a judge: --judge RM_FOLDER, eval.judge=..., or data.relabel_with=<gold run> "
                          "(its reward_model judges; see ALGORITHMS.md §6.8)")
    a_dir, b_dir, judge = policy_dir(policy), policy_dir(against), str(resolve_model(judge))
    prompts = held_out_prompts(cfg)
    log.info("eval: %s against %s on %d held-out prompts, judged by %s", a_dir, b_dir, len(prompts), judge)
    init_ray(cfg.cluster, run_dir)
    answers = [answer(cfg, a_dir, prompts, "eval-a"), answer(cfg, b_dir, prompts, "eval-b")]
    score_a, score_b = judge_scores(cfg, judge, prompts, answers)
    e = cfg.eval
    result = {"policy": str(a_dir), "against": str(b_dir), "judge": judge,
              **compare_scores(score_a, score_b, e.tie_margin, e.bootstrap, e.confidence, cfg.run.seed)}
    (run_dir / "eval.json").write_text(json.dumps(result, indent=1))
    with open(run_dir / "eval_samples.jsonl", "w", encoding="utf-8") as f:
        for p, ra, rb, sa, sb in zip(prompts, *answers, score_a, score_b):
            f.write(json.dumps({"prompt": p["prompt"], "a": ra, "b": rb, "score_a": sa, "score_b": sb}) + "\n")
    return result


def format_result(r: dict) -> str:
    """The comparison as a small table."""
    pct = lambda x: f"{100 * x:.1f}%"  # noqa: E731
    ci = lambda v, f: f"[{f(v[0])}, {f(v[1])}]"  # noqa: E731
    level = f"{100 * r['confidence']:.0f}%"
    return "\n".join([
        f"A: {r['policy']}", f"B: {r['against']}", f"judge: {r['judge']}; {r['prompts']} held-out prompts",
        f"{'':22}{'value':>10}  {level} interval (bootstrap over prompts)",
        f"{'A wins / ties / loses':22}{r['wins']:>4} / {r['ties']} / {r['losses']}",
        f"{'win rate':22}{pct(r['win_rate']):>10}  {ci(r['win_rate_ci'], pct)}",
        f"{'win + tie/2':22}{pct(r['score']):>10}  {ci(r['score_ci'], pct)}",
        f"{'mean score gap A-B':22}{r['mean_gap']:>10.4f}  {ci(r['mean_gap_ci'], lambda x: f'{x:.4f}')}",
    ])
