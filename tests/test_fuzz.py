"""Bad input, fuzzed (hypothesis, fixed seed): every preference loader and the config loader end in a valid result or
one clear error that names the file and line or the key, never a traceback from inside a library or a silent default.
"""

import gzip
import json
import re
import string
from functools import partial
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rlhf_ray.config import ConfigError, FieldMap, load_config
from rlhf_ray.data.formats import make_prompt_parser, make_row_parser
from rlhf_ray.data.generic import parse_pair_row
from rlhf_ray.data.hh_rlhf import parse_hh_row
from rlhf_ray.data.reading import check_pair, load_rows
from rlhf_ray.data.report import DataError
from rlhf_ray.data.tldr import parse_tldr_row

FUZZ = settings(max_examples=200, derandomize=True, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# JSON values of every kind, nested junk included; texts from empty to 20k characters (and unpaired surrogates).
texts = st.one_of(st.text(max_size=40), st.sampled_from(["", " ", "\n\nHuman: hi\n\nAssistant:"]),
                  st.integers(1, 20_000).map(lambda n: "x" * n))
junk = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | texts,
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(texts, inner, max_size=3), max_leaves=8)
KEYS = ["prompt", "chosen", "rejected", "info", "summaries", "choice", "format", "post", "text", "group",
        "conversations", "role", "content", "from", "value"]


def plausible_row() -> st.SearchStrategy:
    """Objects with the fields some loader wants, each of any type; sometimes a well-formed row of one kind."""
    hh = st.builds(lambda p, a, b: {"chosen": f"\n\nHuman: {p}\n\nAssistant: {a}",
                                    "rejected": f"\n\nHuman: {p}\n\nAssistant: {b}"}, texts, texts, texts)
    tldr = st.builds(lambda post, a, b, c: {"info": {"post": post, "id": "p"}, "choice": c,
                                            "summaries": [{"text": a}, {"text": b}]},
                     texts, texts, texts, st.sampled_from([0, 1, 1.0, True, 2, None, "0"]))
    pair = st.builds(lambda p, a, b, f: {"prompt": p, "chosen": a, "rejected": b, "format": f},
                     texts, texts, texts, st.sampled_from(["plain", "hh_dialogue", "other", 3]))
    message = st.builds(lambda r, c: {"role": r, "content": c}, st.sampled_from(["user", "assistant", "system", "x", 1]),
                        st.one_of(texts, junk))
    conversational = st.builds(lambda p, a, b: {"prompt": p, "chosen": a, "rejected": b},
                               st.one_of(texts, st.lists(message, max_size=3)), st.lists(message, max_size=3),
                               st.lists(message, max_size=3))
    sharegpt = st.builds(lambda c, a, b: {"conversations": [{"from": m["role"], "value": m["content"]} for m in c],
                                          "chosen": a, "rejected": b},
                         st.lists(message, max_size=3), st.one_of(message, junk), st.one_of(message, junk))
    anything = st.dictionaries(st.sampled_from(KEYS), junk, max_size=6)
    return st.one_of(hh, tldr, pair, conversational, sharegpt, anything, junk)


line = st.one_of(
    plausible_row().map(lambda row: json.dumps(row).encode()),
    st.text(alphabet=string.printable, max_size=30).map(str.encode),  # broken JSON
    st.binary(max_size=30),  # invalid UTF-8, NUL bytes, stray newlines
    st.integers(1, 3000).map(lambda depth: b"[" * depth + b"]" * depth),  # nested deeper than json takes
)


@st.composite
def data_file(draw):
    """Bytes of a .jsonl, a .json array, or either gzipped, possibly cut short."""
    rows = draw(st.lists(line, max_size=8))
    kind = draw(st.sampled_from(["jsonl", "array", "jsonl.gz", "gz-truncated"]))
    if kind == "array":
        body = b"[" + b",".join(rows) + b"]"
    else:
        body = b"\n".join(rows) + b"\n"
    if kind.startswith(("jsonl.gz", "gz")):
        body = gzip.compress(body)
        if kind == "gz-truncated":
            body = body[: draw(st.integers(0, max(len(body) - 1, 0)))]
    return ("rows.jsonl.gz" if "gz" in kind else "rows.jsonl"), body


PARSERS = {
    "hh_rlhf": partial(parse_hh_row, multi_turn="keep"),
    "tldr": parse_tldr_row,
    "jsonl": make_row_parser(FieldMap()),  # strings, conversational and ShareGPT rows, detected per row
    "augment": parse_pair_row,
    "prompts": make_prompt_parser(FieldMap()),
}


@pytest.mark.parametrize("source", PARSERS)
@pytest.mark.parametrize("on_bad_row", ["skip", "error"])
@FUZZ
@given(spec=data_file())
def test_every_preference_file_loads_or_fails_naming_the_file(tmp_path, source, on_bad_row, spec):
    name, body = spec
    path = tmp_path / name
    path.write_bytes(body)
    try:
        records, report = load_rows(path, PARSERS[source], on_bad_row, source,
                                    check=None if source == "prompts" else check_pair)
    except DataError as e:  # the one error a loader may raise: it names the file (and the line, for a row)
        # "FILE:LINE: reason" for a row (on_bad_row=error), "FILE: reason" for the file, "...'FILE' not found"
        assert re.search(rf"{re.escape(str(path))}(:\d+)?: \S", str(e)), str(e)
        return
    # Every row is kept or counted as skipped; kept rows are whole pairs of real strings with their line.
    assert report.rows == report.kept + sum(report.skipped.values()) == len(records) + sum(report.skipped.values())
    for record in records:
        keys = ("prompt", "group", "format") if source == "prompts" else ("prompt", "chosen", "rejected", "group", "format")
        assert all(isinstance(record[k], str) for k in keys) and record["prompt"].strip()
        assert source == "prompts" or record["chosen"].strip() != record["rejected"].strip()
        assert record["file"] == str(path) and record["line"] >= 1


SECTIONS = ["run", "data", "model", "rm", "ppo", "learner", "rollout", "reward", "sync", "cluster", "online", "seam"]
FIELDS = ["name", "seed", "lr", "iterations", "batch_size", "micro_batch_size", "kl_coef", "num_actors", "paths",
          "source", "transport", "zero_stage", "max_len", "resources", "advantage_estimator", "prompt_pool", "typo"]
config_tree = st.dictionaries(st.sampled_from(SECTIONS + ["typo_section"]),
                              st.one_of(junk, st.dictionaries(st.sampled_from(FIELDS), junk, max_size=4)), max_size=4)
config_text = st.one_of(config_tree.map(yaml.safe_dump), st.text(max_size=60),  # YAML syntax errors and scalars
                        st.sampled_from(["a: [1", "ppo: {iterations: }", "- 1\n- 2", "ppo:\n\tkl: 1", "{{}}"]))
override = st.one_of(
    st.builds(lambda s, f, v: f"{s}.{f}={v}", st.sampled_from(SECTIONS), st.sampled_from(FIELDS),
              st.one_of(st.sampled_from(["1", "-1", "0", "1e9", "nan", "inf", "[1,2]", "{a: 1}", "null", "x", "'", "[",
                                         "true", ""]), st.text(max_size=10))),
    st.text(max_size=20),  # no '=' or no key
)


@FUZZ
@given(text=config_text, overrides=st.lists(override, max_size=3))
def test_every_config_loads_or_fails_naming_the_file_and_key(tmp_path, text, overrides):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    try:
        cfg = load_config(path, overrides)
    except ConfigError as e:
        message = str(e)
        assert str(path) in message or "override" in message, message
        return
    assert cfg.model_dump()  # a valid config validates again as itself
    assert type(cfg).model_validate(cfg.model_dump()) == cfg


def test_the_fuzzers_reach_both_outcomes(tmp_path):
    """Guards the strategies: they produce files that load with kept rows and files that fail, configs both ways."""
    ok = tmp_path / "ok.jsonl"
    ok.write_text(json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}) + "\n" + "{broken\n")
    records, report = load_rows(ok, PARSERS["jsonl"], "skip", "jsonl")
    assert report.kept == 1 and sum(report.skipped.values()) == 1
    with pytest.raises(DataError, match=rf"{ok}:2: invalid JSON"):
        load_rows(ok, PARSERS["jsonl"], "error", "jsonl")
    cut = tmp_path / "cut.jsonl.gz"
    cut.write_bytes(gzip.compress(b'{"prompt": "p", "chosen": "a", "rejected": "b"}\n' * 50)[:40])
    with pytest.raises(DataError, match=rf"{cut}: cannot be read"):
        load_rows(cut, PARSERS["jsonl"], "skip", "jsonl")
    bad_utf8 = tmp_path / "utf8.jsonl"
    bad_utf8.write_bytes(b'{"prompt": "p\xff", "chosen": "a", "rejected": "b"}\n'
                         + json.dumps({"prompt": "q", "chosen": "a", "rejected": "b"}).encode() + b"\n")
    records, report = load_rows(bad_utf8, PARSERS["jsonl"], "skip", "jsonl")  # one bad line, not a lost file
    assert report.kept == 1 and report.examples == {"invalid UTF-8": [1]}
    with pytest.raises(ConfigError, match="unknown key 'ppo.typo'"):
        load_config(None, ["ppo.typo=1"])
    assert load_config(None, ["ppo.iterations=3"]).ppo.iterations == 3
    assert Path(ok).exists()


COMMANDS = {"train", "sft", "eval", "generate", "chat", "report", "rm", "gold", "seam", "submit", "jobs", "scale", "serve", "data", "assets", "config"}
arg = st.one_of(st.sampled_from(["--resume", "--no-progress", "-v", "--help-me", "-", "--", "=", "ppo.kl_coef=x",
                                 "ppo.iterations=3", "a.b.c=1", "show", "config"]), override, st.text(max_size=12))


@FUZZ
@given(args=st.lists(arg, max_size=4), config=st.one_of(st.none(), config_text),
       head=st.one_of(st.just(["config", "show"]), st.text(max_size=8).filter(lambda t: t not in COMMANDS).map(
           lambda t: [t])))
def test_every_command_line_runs_or_fails_with_a_message(tmp_path, capsys, args, config, head):
    """`rlhf-ray config show CONFIG ...` and unknown commands, with junk arguments: exit 0 with the resolved config,
    or exit 2 with argparse's usage or "rlhf-ray: error: ..." naming the file or key; never a traceback."""
    from launch.cli import main

    path = tmp_path / "c.yaml"
    if config is not None:
        path.write_text(config)
    argv = head + ([str(path)] if head[0] == "config" else []) + args
    try:
        code = main(argv)
    except SystemExit as e:  # argparse: usage and the reason on stderr
        code = e.code
        assert code == 2 and "usage: rlhf-ray" in capsys.readouterr().err
        return
    out, err = capsys.readouterr()
    if code == 0:
        assert load_config(path, [a for a in args if "=" in a and not a.startswith("-")]) is not None
        assert yaml.safe_load(out) is not None
    else:
        assert code == 2 and err.startswith("rlhf-ray: error: ") and (str(path) in err or "override" in err), err
