"""Atomic HF-format saves: write to a sibling temp folder, then rename, so a crash never leaves half a model."""

import shutil
from pathlib import Path


def save_hf_atomic(model, tokenizer, dest: str | Path) -> Path:
    dest = Path(dest)
    tmp = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    old = dest.with_name(dest.name + ".old")
    if dest.exists():
        shutil.rmtree(old, ignore_errors=True)
        dest.rename(old)
    tmp.rename(dest)
    shutil.rmtree(old, ignore_errors=True)
    return dest
