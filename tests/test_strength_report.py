import json

import pytest
import torch

from rlhf_ray.data.report import DataError
from rlhf_ray.training.strength_report import (
    annotated_rows,
    format_groups,
    group_stats,
    load_strength,
    pair_id,
    plot_strength,
    write_jsonl,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _row(i: int) -> dict:
    return {"prompt": f"p{i}", "chosen": f"c{i}", "rejected": f"r{i}", "source": "hh", "file": "train.jsonl",
            "format": "pairs", "note": "", "group": "", "line": i + 1}


# 2 members, 3 pairs. Diffs: member 0 -> [1, 0, -1], member 1 -> [3, -4, 1].
# mu = [2, -2, 0]; population sigma = [1, 2, 1].
CHOSEN = torch.tensor([[2.0, 1.0, 0.0], [4.0, 0.0, 1.0]])
REJECTED = torch.tensor([[1.0, 1.0, 1.0], [1.0, 4.0, 0.0]])


def test_annotated_rows_hand_computed():
    rows = [_row(i) for i in range(3)]
    out = annotated_rows(rows, "train", CHOSEN, REJECTED)
    assert [r["strength_mean"] for r in out] == pytest.approx([2.0, -2.0, 0.0])
    assert [r["strength_std"] for r in out] == pytest.approx([1.0, 2.0, 1.0])
    assert out[1]["chosen_scores"] == [1.0, 0.0]
    assert out[1]["rejected_scores"] == [1.0, 4.0]
    assert all(isinstance(r["strength_mean"], float) and isinstance(r["strength_std"], float) for r in out)
    assert [r["line"] for r in out] == [1, 2, 3]
    first = out[0]
    assert first["pair_id"] == pair_id("p0", "c0", "r0")
    assert (first["split"], first["source"], first["file"]) == ("train", "hh", "train.jsonl")
    assert (first["prompt"], first["chosen"], first["rejected"]) == ("p0", "c0", "r0")
    assert set(first) == {"pair_id", "split", "source", "file", "line", "prompt", "chosen", "rejected",
                          "strength_mean", "strength_std", "chosen_scores", "rejected_scores"}


def test_annotated_rows_length_mismatch():
    with pytest.raises(ValueError):
        annotated_rows([_row(0), _row(1)], "train", CHOSEN, REJECTED)


def test_pair_id_stable_and_order_sensitive():
    a = pair_id("prompt", "good", "bad")
    assert a == pair_id("prompt", "good", "bad")
    assert len(a) == 16 and all(c in "0123456789abcdef" for c in a)
    assert a != pair_id("prompt", "bad", "good")
    assert pair_id("ab", "c", "d") != pair_id("a", "bc", "d")


def test_write_and_load_round_trip(tmp_path):
    out = annotated_rows([_row(i) for i in range(3)], "test", CHOSEN, REJECTED)
    path = tmp_path / "sub" / "strength.jsonl"
    write_jsonl(path, out)
    assert not (tmp_path / "sub" / "strength.jsonl.tmp").exists()
    assert len(path.read_text().splitlines()) == 3
    loaded = load_strength(path)
    assert set(loaded) == {r["pair_id"] for r in out}
    got = loaded[pair_id("p1", "c1", "r1")]
    assert got == {"strength_mean": pytest.approx(-2.0), "strength_std": pytest.approx(2.0), "split": "test"}


@pytest.mark.parametrize("bad", [
    "{not json",
    json.dumps({"pair_id": "x", "strength_std": 1.0, "split": "train"}),
    json.dumps({"pair_id": "x", "strength_mean": float("nan"), "strength_std": 1.0, "split": "train"}),
])
def test_load_strength_bad_line_names_file_and_line(tmp_path, bad):
    good = json.dumps({"pair_id": "a", "strength_mean": 1.0, "strength_std": 0.5, "split": "train"})
    path = tmp_path / "scores.jsonl"
    path.write_text(good + "\n" + bad + "\n")
    with pytest.raises(DataError) as e:
        load_strength(path)
    msg = str(e.value)
    assert "scores.jsonl" in msg
    assert ":2" in msg or "line 2" in msg


def test_load_strength_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="rm strength") as e:
        load_strength(tmp_path / "nope.jsonl")
    assert "nope.jsonl" in str(e.value)


def test_group_stats_hand_computed():
    mu = torch.tensor([5.0, -3.0, 1.0, -1.0, 0.0, 2.0, -2.0, 4.0, 3.0, -4.0])
    sigma = torch.arange(10, dtype=torch.float32)
    low, high = group_stats(mu, sigma, n_groups=2)
    # Low group: mu -4,-3,-2,-1,0 at indices 9,1,6,3,4 -> sigma mean 23/5.
    assert low == {"group": 1, "pairs": 5, "mu_min": -4.0, "mu_max": 0.0, "mu_mean": pytest.approx(-2.0),
                   "sigma_mean": pytest.approx(4.6), "share_negative": pytest.approx(0.8)}
    # High group: mu 1..5 at indices 2,5,8,7,0 -> sigma mean 22/5.
    assert high == {"group": 2, "pairs": 5, "mu_min": 1.0, "mu_max": 5.0, "mu_mean": pytest.approx(3.0),
                    "sigma_mean": pytest.approx(4.4), "share_negative": 0.0}
    assert all(type(v) in (int, float) for g in (low, high) for v in g.values())
    assert [g["pairs"] for g in group_stats(mu, sigma, n_groups=3)] == [4, 3, 3]


def test_group_stats_too_many_groups():
    with pytest.raises(ValueError):
        group_stats(torch.zeros(3), torch.zeros(3), n_groups=4)


@pytest.mark.parametrize("accuracy", [None, [0.4, 0.55, 0.7]])
def test_plot_strength_writes_png(tmp_path, accuracy):
    torch.manual_seed(0)
    mu, sigma = torch.randn(60), torch.rand(60)
    groups = group_stats(mu, sigma, n_groups=3)
    path = tmp_path / "plots" / "strength.png"
    plot_strength(mu, sigma, path, groups=groups, group_accuracy=accuracy)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000


def test_plot_strength_without_groups(tmp_path):
    path = tmp_path / "bare.png"
    plot_strength(torch.tensor([0.1, -0.2]), torch.tensor([0.3, 0.4]), path)
    assert path.read_bytes().startswith(PNG_MAGIC)


def test_format_groups_one_line_per_group():
    mu = torch.linspace(-1, 2, 12)
    groups = group_stats(mu, torch.ones(12), n_groups=4)
    table = format_groups(groups)
    lines = table.splitlines()
    assert len(lines) == 1 + 4
    assert "share<0" in lines[0] and "accuracy" not in lines[0]
    with_acc = format_groups(groups, [0.5, 0.6, 0.7, 0.8]).splitlines()
    assert len(with_acc) == 5 and "accuracy" in with_acc[0] and with_acc[-1].rstrip().endswith("0.800")
    with pytest.raises(ValueError):
        format_groups(groups, [0.5])
