"""The run folder runs/<name>/: resolved config, log file, metrics, checkpoints."""

import logging
import random
from pathlib import Path

import numpy as np
import torch

from .config import Config, dump_config


def prepare_run_dir(cfg: Config) -> Path:
    run_dir = Path(cfg.run.output_dir) / cfg.run.name
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.yaml").write_text(dump_config(cfg))
    handler = logging.FileHandler(run_dir / "log.txt")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger("rlhf_ray").addHandler(handler)
    return run_dir


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
