"""The synthetic gold world: relabeling by gold scores, and `rlhf-ray gold build` end to end on the tiny model."""

import json

import pytest
import yaml
from test_rm_train import synthetic_pairs

from launch.cli import main
from rlhf_ray.config import load_config
from rlhf_ray.data import DataError, load_pairs, load_preferences
from rlhf_ray.data.gold import gold_label_row, load_gold_labels, relabel
from rlhf_ray.data.pair_id import pair_id
from rlhf_ray.models import load_reward_model, score_sequences
from rlhf_ray.training.rm_data import prepare_rm_data

FIELDS = ["data.source=jsonl", "data.fields.prompt=question", "data.fields.chosen=good", "data.fields.rejected=bad"]


def test_relabel_orders_pairs_by_gold_scores_and_counts_what_it_drops(tmp_path):
    synthetic_pairs(tmp_path / "pairs.jsonl", n=10)
    pairs, _ = load_pairs(load_config(None, [*FIELDS, f"data.paths=[{tmp_path / 'pairs.jsonl'}]"]).data)
    labels = {}
    for i, row in enumerate(pairs):
        if i == 4:
            continue  # never scored by the gold RM
        scores = (0.0, 1.0) if i % 3 == 0 else (0.5, 0.5) if i == 5 else (1.0, 0.0)
        labels[gold_label_row(row["prompt"], row["chosen"], row["rejected"], *scores)["pair_id"]] = scores
    out, report = relabel(pairs, labels, "gold")
    assert len(out) == report.kept == 9 and report.rows == 10
    assert report.skipped == {"no gold label (the gold RM did not score this pair)": 1}
    assert report.notes["swapped: the gold RM prefers the human-rejected response"] == 4  # rows 0, 3, 6, 9
    assert report.notes["gold tie: human order kept"] == 1
    by_line = {r["line"]: r for r in out}
    for i, row in enumerate(pairs):
        if i == 4:
            assert row["line"] not in by_line
        elif i % 3 == 0:
            assert (by_line[row["line"]]["chosen"], by_line[row["line"]]["rejected"]) == (row["rejected"], row["chosen"])
        else:
            assert by_line[row["line"]]["chosen"] == row["chosen"]


def test_gold_label_files_fail_clearly(tmp_path):
    with pytest.raises(DataError, match="no gold labels at .*run `rlhf-ray gold build` first"):
        load_gold_labels(tmp_path)
    bad = tmp_path / "gold_labels.jsonl"
    bad.write_text(json.dumps(gold_label_row("p", "c", "r", 1.0, 0.0)) + "\n" + '{"pair_id": "x"}\n')
    with pytest.raises(DataError, match=r"gold_labels.jsonl:2: not a gold label row"):
        load_gold_labels(tmp_path)


def test_gold_build_labels_every_pair_and_relabels_the_data(tiny_model_dir, tmp_path, ray_local, capsys):
    synthetic_pairs(tmp_path / "pairs.jsonl", n=64)
    settings = [*FIELDS, f"data.paths=[{tmp_path / 'pairs.jsonl'}]", "data.eval_fraction=0.2",
                f"model.policy={tiny_model_dir}", "model.max_len=64", "model.max_response_len=32",
                "model.mixed_precision=none", "rm.lr=3e-3", "rm.batch_size=16", "rm.micro_batch_size=8", "rm.max_steps=2",
                "rm.warmup_steps=0", "rm.eval_every=100", "rm.eval_at_start=false", "learner.resources.threads=1",
                f"run.output_dir={tmp_path}/runs", "run.name=gold"]
    config = tmp_path / "gold.yaml"
    config.write_text(yaml.safe_dump({}))
    assert main(["gold", "build", str(config), "--no-progress", *settings]) == 0
    assert "gold labels:" in capsys.readouterr().out
    run_dir = tmp_path / "runs" / "gold"
    labels = [json.loads(line) for line in (run_dir / "gold_labels.jsonl").open()]

    # One label per pair the RM held (train and held-out), and they are the saved gold RM's own scores.
    cfg = load_config(None, settings)
    data = prepare_rm_data(cfg)
    assert len(labels) == len(data.pairs) == 64
    gold = load_reward_model(run_dir / "reward_model")
    pad = gold.config.pad_token_id
    chosen = score_sequences(gold, [p["chosen_ids"] for p in data.pairs[:8]], pad).tolist()
    rejected = score_sequences(gold, [p["rejected_ids"] for p in data.pairs[:8]], pad).tolist()
    assert [r["gold_chosen"] for r in labels[:8]] == pytest.approx(chosen, abs=1e-4)
    assert [r["gold_rejected"] for r in labels[:8]] == pytest.approx(rejected, abs=1e-4)

    # data.relabel_with=<run folder>: every pair in the gold RM's order, swaps counted.
    relabeled = load_preferences(load_config(None, [*settings, f"data.relabel_with={run_dir}"]).data)
    swaps = sum(r["gold_rejected"] > r["gold_chosen"] for r in labels)
    assert relabeled.reports[-1].notes.get("swapped: the gold RM prefers the human-rejected response", 0) == swaps
    assert len(relabeled.train) + len(relabeled.eval) == 64
    score = {r["pair_id"]: r for r in labels}
    for row in list(relabeled.train) + list(relabeled.eval):
        entry = score.get(pair_id(row["prompt"], row["chosen"], row["rejected"]))
        if entry is None:  # a swapped pair: its id is of the original order
            entry = score[pair_id(row["prompt"], row["rejected"], row["chosen"])]
            assert entry["gold_rejected"] > entry["gold_chosen"]
        else:
            assert entry["gold_chosen"] >= entry["gold_rejected"]
