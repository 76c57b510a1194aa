"""Users' preference and prompt files in the formats published sets use: strings, TRL's conversational messages and
ShareGPT conversations, as JSON/JSONL, parquet, arrow and `datasets` save_to_disk folders."""

import json

import pytest
from datasets import Dataset, DatasetDict
from transformers import AutoTokenizer

from rlhf_ray.config import DataConfig, FieldMap, load_config
from rlhf_ray.data import DataError, load_pairs, load_prompt_rows
from rlhf_ray.data.tokenize import render_prompt

SYSTEM = "You are terse."
# (prompt messages, chosen, rejected): one single-turn pair, one multi-turn with a system message.
PAIRS = [
    ([{"role": "user", "content": "What is 2+2?"}], "4.", "Five, probably."),
    ([{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Hi"},
      {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Name a colour."}], "Blue.", "No."),
]
SPEAKER = {"user": "human", "assistant": "gpt", "system": "system"}


def strings_rows():
    """The equivalent string rows: the multi-turn prompt as the JSON messages a conversational row becomes."""
    return [{"prompt": p[0]["content"] if len(p) == 1 else json.dumps(p), "chosen": c, "rejected": r}
            for p, c, r in PAIRS]


def conversational_rows(implicit: bool):
    rows = []
    for p, c, r in PAIRS:
        chosen, rejected = [{"role": "assistant", "content": c}], [{"role": "assistant", "content": r}]
        rows.append({"chosen": p + chosen, "rejected": p + rejected} if implicit
                    else {"prompt": p, "chosen": chosen, "rejected": rejected})
    return rows


def sharegpt_rows():
    """ShareGPT rows as LLaMA-Factory writes them: a system prompt goes in the row's `system` field."""
    rows = []
    for p, c, r in PAIRS:
        system = [m["content"] for m in p if m["role"] == "system"]
        rows.append({"conversations": [{"from": SPEAKER[m["role"]], "value": m["content"]} for m in p
                                       if m["role"] != "system"],
                     "chosen": {"from": "gpt", "value": c}, "rejected": {"from": "gpt", "value": r}}
                    | ({"system": system[0]} if system else {}))
    return rows


def write(tmp_path, name: str, rows: list[dict]) -> str:
    path = tmp_path / name
    if name.endswith(".jsonl"):
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:  # a table: every row gets every column (from_list takes the first row's keys), None where it has none
        keys = list(dict.fromkeys(k for row in rows for k in row))
        table = Dataset.from_list([{k: row.get(k) for k in keys} for row in rows])
        if name.endswith(".parquet"):
            table.to_parquet(str(path))
        else:
            table.save_to_disk(str(path))
    return str(path)


def pairs_of(paths, **kw):
    pairs, reports = load_pairs(DataConfig(source="files", paths=list(paths), **kw))
    return [(r["prompt"], r["chosen"], r["rejected"], r["format"]) for r in pairs], reports


@pytest.mark.parametrize("rows", ["conversational", "implicit", "sharegpt"])
@pytest.mark.parametrize("container", ["jsonl", "parquet", "disk"])
def test_every_format_gives_the_same_pairs_as_the_string_rows(tmp_path, rows, container):
    make = {"conversational": lambda: conversational_rows(False), "implicit": lambda: conversational_rows(True),
            "sharegpt": sharegpt_rows}[rows]
    name = {"jsonl": "d.jsonl", "parquet": "d.parquet", "disk": "d_folder"}[container]
    expected, _ = pairs_of([write(tmp_path, "strings.jsonl", strings_rows())])
    got, (report,) = pairs_of([write(tmp_path, name, make())])
    assert got == [(p, c, r, fmt) for (p, c, r, _), fmt in zip(expected, ["plain", "messages"])]
    assert report.rows == report.kept == 2 and not report.skipped
    explicit, _ = pairs_of([write(tmp_path, name, make())], row_format="sharegpt" if rows == "sharegpt" else "conversational")
    assert explicit == got


def test_a_single_user_message_prompt_groups_and_renders_as_its_string_row(tmp_path, tiny_model_dir):
    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    (conv_single, conv_multi), _ = pairs_of([write(tmp_path, "c.jsonl", conversational_rows(False))])
    assert render_prompt(tok, conv_single[0], conv_single[3]) == render_prompt(tok, "What is 2+2?", "plain")
    assert render_prompt(tok, conv_multi[0], conv_multi[3]) == tok.apply_chat_template(
        PAIRS[1][0], tokenize=False, add_generation_prompt=True)
    assert render_prompt(tok, conv_multi[0], "messages", use_chat_template=False) == (
        f"\n\nSystem: {SYSTEM}\n\nHuman: Hi\n\nAssistant: Hello.\n\nHuman: Name a colour.\n\nAssistant:")


# One bad row of each kind, in a conversational or ShareGPT file; (row, reason the report counts).
BAD_ROWS = [
    ({"chosen": [{"role": "assistant", "content": "a"}]}, "missing field 'rejected'"),
    ({"prompt": [], "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]},
     "field 'prompt' is an empty list, not a list of messages"),
    ({"prompt": [{"role": "wizard", "content": "q"}], "chosen": [{"role": "assistant", "content": "a"}],
      "rejected": [{"role": "assistant", "content": "b"}]}, "field 'prompt' message 0 has role 'wizard'"),
    ({"prompt": [{"role": "user", "content": 3}], "chosen": [{"role": "assistant", "content": "a"}],
      "rejected": [{"role": "assistant", "content": "b"}]}, "field 'prompt' message 0 content is a int, not a string"),
    ({"prompt": "q", "chosen": [{"role": "assistant", "content": "a"}, {"role": "user", "content": "more"}],
      "rejected": [{"role": "assistant", "content": "b"}]}, "field 'chosen' response is not one assistant message"),
    ({"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
      "rejected": [{"role": "user", "content": "other q"}, {"role": "assistant", "content": "b"}]},
     "field 'prompt' is empty"),  # implicit prompt: the two conversations share nothing
    ({"prompt": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
      "chosen": [{"role": "assistant", "content": "a"}], "rejected": [{"role": "assistant", "content": "b"}]},
     "field 'prompt' ends with an assistant message"),
    ({"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "same"},
      "rejected": {"from": "gpt", "value": "same"}}, "chosen and rejected are identical"),
    ({"conversations": "q", "chosen": {"from": "gpt", "value": "a"}, "rejected": {"from": "gpt", "value": "b"}},
     "field 'conversations' is a str, not a list of messages"),
]


def test_a_bad_row_of_each_kind_is_counted_with_its_line(tmp_path):
    good = conversational_rows(False)[0]
    rows = [good] + [row for row, _ in BAD_ROWS] + [sharegpt_rows()[1]]
    (first, last), (report,) = pairs_of([write(tmp_path, "mixed.jsonl", rows)])
    assert first[1] == "4." and last[1] == "Blue." and report.rows == len(rows) and report.kept == 2
    for line, (_, reason) in enumerate(BAD_ROWS, start=2):
        key = next(k for k in report.skipped if k.startswith(reason))
        assert line in report.examples[key], (reason, report.examples)
    assert sum(report.skipped.values()) == len(BAD_ROWS)
    with pytest.raises(DataError, match=r"mixed.jsonl:2: missing field 'rejected'"):
        load_pairs(DataConfig(source="files", paths=[str(tmp_path / "mixed.jsonl")], on_bad_row="error"))


def test_a_bad_row_in_a_dataset_file_is_named_by_its_index(tmp_path):
    rows = sharegpt_rows() + [{"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "a"},
                               "rejected": {"from": "gpt", "value": "a"}}]
    path = write(tmp_path, "d.parquet", rows)
    pairs, (report,) = pairs_of([path])
    assert len(pairs) == 2 and report.unit == "index" and report.examples["chosen and rejected are identical"] == [2]
    assert "(indices 2)" in report.summary()
    with pytest.raises(DataError, match=r"d.parquet\[2\]: chosen and rejected are identical"):
        pairs_of([path], on_bad_row="error")


def test_dataset_files_that_cannot_be_read_are_named(tmp_path):
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"PAR1 not really")
    with pytest.raises(DataError, match=r"broken.parquet: cannot be read as a dataset"):
        pairs_of([str(broken)])
    folder = tmp_path / "splits"
    DatasetDict({"train": Dataset.from_list(strings_rows()), "test": Dataset.from_list(strings_rows()[:1])}
                ).save_to_disk(str(folder))
    with pytest.raises(DataError, match=r"splits: a dataset with splits train, test; set data.dataset_split"):
        pairs_of([str(folder)])
    test_pairs, _ = pairs_of([str(folder)], dataset_split="test")
    assert len(test_pairs) == 1
    arrow = next((folder / "train").glob("*.arrow"))  # an arrow file, read on its own
    assert len(pairs_of([str(arrow)])[0]) == 2


def test_prompt_only_files_give_rl_prompts_without_gold(tmp_path):
    rows = [{"prompt": "What is 2+2?"}, {"prompt": PAIRS[1][0]}, {"prompt": "What is 2+2?"},  # repeated: used once
            {"conversations": [{"from": "human", "value": "Tell a joke."}]}, {"prompt": ""}, {"text": "no prompt"}]
    path = write(tmp_path, "prompts.jsonl", rows)
    prompts, (report,) = load_prompt_rows(DataConfig(prompt_paths=[path]))
    assert prompts["prompt"] == ["What is 2+2?", json.dumps(PAIRS[1][0]), "Tell a joke."]
    assert prompts["format"] == ["plain", "messages", "plain"] and prompts["gold"] == [None] * 3
    assert report.notes["repeated prompt, used once"] == 1 and report.examples["repeated prompt, used once"] == [3]
    assert report.skipped == {"field 'prompt' is empty": 1, "missing field 'prompt'": 1}


def test_prompt_paths_refuse_seam_which_needs_gold_answers(tmp_path):
    with pytest.raises(Exception, match="data.prompt_paths have none"):
        load_config(None, ["data.prompt_paths=[p.jsonl]", "seam.filter=seam"])


def test_field_map_applies_to_conversational_rows(tmp_path):
    rows = [{"q": p, "good": [{"role": "assistant", "content": c}], "bad": [{"role": "assistant", "content": r}]}
            for p, c, r in PAIRS]
    got, _ = pairs_of([write(tmp_path, "m.jsonl", rows)], fields=FieldMap(prompt="q", chosen="good", rejected="bad"))
    expected, _ = pairs_of([write(tmp_path, "s.jsonl", strings_rows())])
    assert [g[:3] for g in got] == [e[:3] for e in expected]
