import gzip
import json

import pytest

from rlhf_ray.config import DataConfig, FieldMap
from rlhf_ray.data import (
    BadRow,
    DataError,
    dialogue_to_messages,
    load_pairs,
    load_preferences,
    prompt_dataset,
    shipped_paths,
    split_dialogues,
)
from rlhf_ray.data.splits import group_is_eval
from rlhf_ray.data.tldr import PROMPT

ODD_HH_LINES = [1255, 1689, 1951, 1953, 2037]


# ---------------------------------------------------------------- HH-RLHF
def test_hh_harmless_test_gives_2312_pairs_with_the_5_odd_rows_noted():
    pairs, (report,) = load_pairs(DataConfig(source="hh_rlhf"))
    assert len(pairs) == 2312 and report.rows == 2312 and not report.skipped
    multi = [k for k in report.notes if "further turns" in k]
    assert len(multi) == 1 and report.notes[multi[0]] == 5
    assert report.examples[multi[0]] == ODD_HH_LINES
    odd = pairs.filter(lambda r: "further turns" in r["note"])
    assert sorted(odd["line"]) == ODD_HH_LINES
    assert all(r["prompt"].endswith("\n\nAssistant:") for r in pairs)
    assert report.notes["empty chosen response"] == 4


def test_hh_odd_rows_can_be_skipped_and_are_counted():
    pairs, (report,) = load_pairs(DataConfig(source="hh_rlhf", hh_multi_turn="skip"))
    assert len(pairs) == 2307 and sum(report.skipped.values()) == 5
    pairs, (report,) = load_pairs(DataConfig(source="hh_rlhf", empty_response="skip"))
    assert len(pairs) == 2308 and report.skipped["empty chosen response"] == 4


def test_hh_split_reconstructs_the_dialogues():
    pairs, _ = load_pairs(DataConfig(source="hh_rlhf"))
    raw = [json.loads(line) for line in gzip.open(shipped_paths("hh_rlhf")[0], "rt")]
    for row in pairs.select(range(50)):
        original = raw[row["line"] - 1]
        assert original["chosen"].startswith(row["prompt"]) and original["rejected"].startswith(row["prompt"])
        assert original["chosen"][len(row["prompt"]):].strip() == row["chosen"]


def test_split_dialogues_cases():
    r = split_dialogues("\n\nHuman: hi\n\nAssistant: hello", "\n\nHuman: hi\n\nAssistant: go away")
    assert (r["prompt"], r["chosen"], r["rejected"], r["note"]) == ("\n\nHuman: hi\n\nAssistant:", "hello", "go away", "")
    # Responses sharing their first words must not move the cut.
    r = split_dialogues("\n\nHuman: q\n\nAssistant: I think yes", "\n\nHuman: q\n\nAssistant: I think no")
    assert r["prompt"] == "\n\nHuman: q\n\nAssistant:" and r["chosen"] == "I think yes"
    with pytest.raises(BadRow, match="no shared prompt"):
        split_dialogues("\n\nHuman: a\n\nAssistant: x", "\n\nHuman: b\n\nAssistant: x")


def test_dialogue_to_messages():
    msgs = dialogue_to_messages("\n\nHuman: a\n\nAssistant: b\n\nHuman: c\n\nAssistant:")
    assert msgs == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                    {"role": "user", "content": "c"}]


# ---------------------------------------------------------------- TL;DR
def test_tldr_split_by_post_id_never_leaks():
    data = load_preferences(DataConfig(source="tldr", eval_fraction=0.2))
    train_posts, eval_posts = set(data.train["group"]), set(data.eval["group"])
    assert train_posts and eval_posts and not train_posts & eval_posts
    assert len(data.train) + len(data.eval) == 1097 + 674
    # Posts repeat across rows, so the split really had something to keep together.
    assert len(train_posts) < len(data.train)


def test_tldr_prompt_and_choice(tmp_path):
    path = shipped_paths("tldr")[0].parent / "edit_b2_eval_test.json.gz"
    pairs, (report,) = load_pairs(DataConfig(source="tldr", paths=[str(path)]))
    raw = [json.loads(line) for line in gzip.open(path, "rt")]
    assert len(pairs) == report.kept == len(raw) == 5
    for row, src in zip(pairs, raw):
        info = src["info"]
        assert row["prompt"] == PROMPT.format(subreddit=info["subreddit"], title=info["title"], post=info["post"].strip())
        assert row["chosen"].strip() == src["summaries"][src["choice"]]["text"].strip()
        assert row["rejected"].strip() == src["summaries"][1 - src["choice"]]["text"].strip()
        assert row["group"].startswith("text:") and "no post id" in row["note"]  # this batch has no ids
    assert report.notes["no post id, grouped by post text"] == 5
    assert len(set(pairs["group"])) == len({r["info"]["post"] for r in raw})


def test_empty_file_gives_an_empty_dataset(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    pairs, (report,) = load_pairs(DataConfig(source="jsonl", paths=[str(tmp_path / "empty.jsonl")]))
    assert len(pairs) == 0 and report.rows == 0 and "prompt" in pairs.column_names


# ---------------------------------------------------------------- generic JSONL, bad rows
BAD_FILE = [
    '{"q": "p1", "good": "a", "bad": "b"}',
    '{"q": "p2", "good": "a"',                    # 2: invalid JSON
    '{"q": "p3", "bad": "b"}',                    # 3: missing field
    '{"q": "p4", "good": "   ", "bad": "b"}',     # 4: empty string
    '{"q": "p5", "good": "same", "bad": "same"}',  # 5: identical
    '["not", "an", "object"]',                    # 6: not an object
    '{"q": "p7", "good": 3, "bad": "b"}',         # 7: not a string
    '',
    '{"q": "p9", "good": "c", "bad": "d"}',
]


def bad_file(tmp_path):
    path = tmp_path / "mine.jsonl"
    path.write_text("\n".join(BAD_FILE) + "\n")
    return path


def test_generic_jsonl_skips_and_counts_every_bad_row(tmp_path):
    cfg = DataConfig(source="jsonl", paths=[str(bad_file(tmp_path))], fields=FieldMap(prompt="q", chosen="good", rejected="bad"))
    pairs, (report,) = load_pairs(cfg)
    assert pairs["prompt"] == ["p1", "p9"] and pairs["line"] == [1, 9]
    assert report.rows == 8 and report.kept == 2 and sum(report.skipped.values()) == 6
    lines = sorted(line for v in report.examples.values() for line in v)
    assert lines == [2, 3, 4, 5, 6, 7]
    assert "invalid JSON" in report.summary() and "missing field 'good'" in report.summary()


def test_generic_jsonl_error_mode_names_file_and_line(tmp_path):
    path = bad_file(tmp_path)
    cfg = DataConfig(source="jsonl", paths=[str(path)], on_bad_row="error",
                     fields=FieldMap(prompt="q", chosen="good", rejected="bad"))
    with pytest.raises(DataError, match=rf"{path}:2: invalid JSON"):
        load_pairs(cfg)


def test_json_array_file_and_group_field(tmp_path):
    path = tmp_path / "mine.json"
    rows = [{"prompt": f"p{i}", "chosen": "x", "rejected": "y", "conv": i // 2} for i in range(40)]
    path.write_text(json.dumps(rows))
    cfg = DataConfig(source="jsonl", paths=[str(path)], fields=FieldMap(group="conv"), eval_fraction=0.3)
    data = load_preferences(cfg)
    assert len(data.train) + len(data.eval) == 40
    assert not set(data.train["group"]) & set(data.eval["group"])


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match="nothere.jsonl.*not found"):
        load_pairs(DataConfig(source="jsonl", paths=[str(tmp_path / "nothere.jsonl")]))


# ---------------------------------------------------------------- splits and prompts
def test_split_is_deterministic_and_near_the_fraction():
    flags = [group_is_eval(f"g{i}", 0.1, 0) for i in range(5000)]
    assert 0.08 < sum(flags) / 5000 < 0.12
    assert flags == [group_is_eval(f"g{i}", 0.1, 0) for i in range(5000)]
    assert flags != [group_is_eval(f"g{i}", 0.1, 1) for i in range(5000)]


def test_max_pairs_limits():
    data = load_preferences(DataConfig(max_pairs=10, max_eval_pairs=3))
    assert (len(data.train), len(data.eval)) == (10, 3)


def test_prompt_dataset_dedups_and_keeps_gold():
    data = load_preferences(DataConfig(source="tldr"))
    prompts = prompt_dataset(data.train)
    assert len(prompts) == len(set(data.train["prompt"])) < len(data.train)
    first = {}
    for row in data.train:
        first.setdefault(row["prompt"], row["chosen"])
    assert all(first[p] == g for p, g in zip(prompts["prompt"], prompts["gold"]))
