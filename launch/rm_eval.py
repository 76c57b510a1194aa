"""`rlhf-ray rm eval RM CONFIG`: a saved reward model scored on every pair of a configured preference set (all rows,
no train/eval split: data it never saw) by RewardActors; accuracy, loss and reward gap overall and per file."""

import json
import logging
from pathlib import Path

import torch

from actors.group import ActorGroup
from rlhf_ray.config import Config
from rlhf_ray.data import load_pairs
from rlhf_ray.data.gold import load_gold_labels, relabel
from rlhf_ray.data.tokenize import encode_pairs
from rlhf_ray.models import load_tokenizer
from rlhf_ray.models.assets import resolve_model
from rlhf_ray.progress import Progress
from rlhf_ray.training.rm_eval import metrics_per_source, pair_metrics

from .cluster import init_ray
from .evaluate import reward_group

log = logging.getLogger("rlhf_ray.rm")


def reward_model_dir(spec: str) -> Path:
    """An RM folder, or a run folder of `rm train` / `gold build` (its reward_model/)."""
    path = Path(spec).expanduser()
    if (path / "reward_model" / "config.json").is_file():
        return path / "reward_model"
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{spec}: neither a reward model folder (config.json) nor a run folder with a "
                                "reward_model/ in it")
    return resolve_model(spec)


def score_sequences_sharded(group: ActorGroup, sequences: list[list[int]], chunk: int, progress: Progress) -> list[float]:
    """Rewards of whole sequences (each ends in EOS), sharded over the group in chunks that the progress reports."""
    scores = []
    for start in range(0, len(sequences), chunk):
        # (everything but the final EOS, [EOS]): the RewardActor scores prompt + response at that EOS, as trained.
        part = [(s[:-1], s[-1:]) for s in sequences[start : start + chunk]]
        scores += [x for shard in group.run_sharded("score", part) for x in shard]
        progress.update(len(part))
    return scores


def run_rm_eval(cfg: Config, rm: str, out: Path, show_progress: bool = True) -> dict:
    """Score every configured pair with the RM; writes rm_eval.json (the metrics, the data report) and
    rm_eval_scores.jsonl (each pair's file, line and both rewards) into `out`. Returns the metrics."""
    rm_dir = reward_model_dir(rm)
    pairs, reports = load_pairs(cfg.data)
    if cfg.data.relabel_with:  # the same synthetic gold world the RM was trained in
        pairs, report = relabel(pairs, load_gold_labels(cfg.data.relabel_with), str(cfg.data.relabel_with))
        reports.append(report)
    for report in reports:
        log.info("data: %s", report.summary())
    tok = load_tokenizer(rm_dir)
    encoded, stats = encode_pairs(tok, pairs, cfg.model.max_len, cfg.model.max_response_len, cfg.data.chat_template,
                                  cfg.model.on_overlong)
    log.info("encoded: %s", stats.summary())
    if not encoded:
        raise ValueError("no pairs to score: see the data report above")
    init_ray(cfg.cluster, out)
    group = reward_group(cfg, str(rm_dir), "rm-eval")
    sequences = [e["chosen_ids"] for e in encoded] + [e["rejected_ids"] for e in encoded]
    progress = Progress(len(sequences), "rm eval", unit="sequence", logger=log, bar=show_progress)
    try:
        scores = score_sequences_sharded(group, sequences, 4 * cfg.reward.batch_size * len(group), progress)
    finally:
        group.kill()
        progress.close()
    chosen, rejected = torch.tensor(scores[: len(encoded)]), torch.tensor(scores[len(encoded) :])
    where = [(pairs[e["index"]]["file"], pairs[e["index"]]["line"]) for e in encoded]  # one read of each row
    result = {"reward_model": str(rm_dir), "overall": pair_metrics(chosen, rejected),
              "per_file": metrics_per_source(chosen, rejected, [file for file, _ in where]),
              "encoding": stats.summary(), "data": [r.to_dict() for r in reports]}
    (out / "rm_eval.json").write_text(json.dumps(result, indent=1))
    with open(out / "rm_eval_scores.jsonl", "w", encoding="utf-8") as f:
        for (file, line), c, r in zip(where, chosen.tolist(), rejected.tolist()):
            f.write(json.dumps({"file": file, "line": line, "chosen_reward": c, "rejected_reward": r}) + "\n")
    return result


def format_rm_eval(result: dict) -> str:
    """The metrics as a table: overall, then one row per file."""
    rows = [("all files", result["overall"])] + list(result["per_file"].items())
    width = max(len(name) for name, _ in rows)
    lines = [f"reward model: {result['reward_model']}", f"{'':{width}}  {'pairs':>6}  {'accuracy':>8}  {'loss':>7}  "
             f"{'reward gap':>10}"]
    for name, m in rows:
        lines.append(f"{name:{width}}  {m['pairs']:6.0f}  {m['accuracy']:8.4f}  {m['loss']:7.4f}  {m['reward_gap']:10.4f}")
    return "\n".join(lines)
