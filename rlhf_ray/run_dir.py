"""The run folder runs/<name>/: resolved config, log file, metrics, checkpoints."""

import json
import logging
import pickle
import random
from pathlib import Path

import numpy as np
import torch

from .config import Config, dump_config


def prepare_run_dir(cfg: Config) -> Path:
    run_dir = Path(cfg.run.output_dir) / cfg.run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    attach_log_file(run_dir)
    return run_dir


def attach_log_file(run_dir: Path) -> None:
    """rlhf_ray's log lines also go to <run_dir>/log.txt (in whichever process calls this)."""
    handler = logging.FileHandler(Path(run_dir) / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger("rlhf_ray")
    logger.addHandler(handler)
    logger.setLevel(min(logger.getEffectiveLevel(), logging.INFO))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Python, numpy, torch and (on a GPU node) CUDA RNG states, to save with a checkpoint: tensors and plain data
    only (numpy's key array as a tensor), so that load_state reads it without unpickling objects."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    return {"python": random.getstate(),
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "cached_gaussian": float(cached_gaussian)},
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_state(path: str | Path) -> dict:
    """A state file rlhf_ray wrote (driver state, RNG states), read with weights_only=True: tensors and plain Python
    data come back, anything that would run code on unpickling is refused, naming the file."""
    try:
        return torch.load(path, weights_only=True)
    except pickle.UnpicklingError as e:
        raise RuntimeError(f"{path}: holds more than tensors and plain data, which no rlhf_ray state file does; "
                           f"not loaded (a file from elsewhere, or an older rlhf_ray): {e}") from e


def truncate_jsonl(path: Path, last_step: int, key: str = "step") -> int:
    """Drop rows with row[key] > last_step (written after the checkpoint a run resumes from), and a last line cut
    short by a kill mid-write; returns rows dropped. Any other unreadable line is an error naming it."""
    path = Path(path)
    if not path.exists():
        return 0
    lines = [line for line in path.read_text(errors="replace").splitlines() if line.strip()]
    kept = []
    for number, line in enumerate(lines, start=1):
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            if number == len(lines):  # the write the kill interrupted: that iteration runs again anyway
                logging.getLogger("rlhf_ray").warning("%s: dropping its last line, cut short (%s)", path, e.msg)
                continue
            raise ValueError(f"{path}:{number}: not a JSON row ({e.msg}); the file is damaged beyond its last line") from None
        if not isinstance(row, dict) or not isinstance(row.get(key), int | float):
            raise ValueError(f"{path}:{number}: a row without a numeric {key!r}")
        if row[key] <= last_step:
            kept.append(line)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    tmp.replace(path)
    return len(lines) - len(kept)
