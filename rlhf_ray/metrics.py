"""Metrics to JSONL (one object per step) and TensorBoard side by side in the run folder, and to Weights & Biases
when run.wandb asks for it."""

import json
import logging
import math
import time
import uuid
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from .config import Config, ConfigError

log = logging.getLogger("rlhf_ray")


def open_wandb(cfg: Config, run_dir: Path):
    """A wandb run for this run folder (None with run.wandb=off), its config the resolved config. The run's id is kept
    in the folder, so a resumed run logs on into the same wandb run. offline: written under <run_dir>/wandb, no
    network (`wandb sync` uploads it later)."""
    if cfg.run.wandb == "off":
        return None
    try:
        import wandb
    except ImportError as e:
        raise ConfigError(f"run.wandb={cfg.run.wandb} needs the wandb package: pip install 'rlhf-ray[wandb]'") from e
    id_file = Path(run_dir) / "wandb_id"
    if not id_file.exists():
        id_file.write_text(uuid.uuid4().hex[:16])
    run = wandb.init(project=cfg.run.wandb_project, entity=cfg.run.wandb_entity, name=cfg.run.name,
                     id=id_file.read_text().strip(), resume="allow", dir=str(run_dir), mode=cfg.run.wandb,
                     config=cfg.model_dump(), settings=wandb.Settings(console="off", silent=True))
    log.info("wandb: %s run %s (%s)", cfg.run.wandb, run.id, run.dir if cfg.run.wandb == "offline" else run.url)
    return run


class MetricsLogger:
    def __init__(self, run_dir: Path, purge_step: int | None = None, cfg: Config | None = None):
        """purge_step: a resumed run drops TensorBoard events from this step on (written after its checkpoint).
        cfg: the run's config, for run.wandb."""
        self.path = Path(run_dir) / "metrics.jsonl"
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=purge_step)
        self._wandb = open_wandb(cfg, run_dir) if cfg is not None else None

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: float(v) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
        self._file.flush()
        for key, value in clean.items():
            if math.isfinite(value):
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(clean, step=step)

    def histogram(self, key: str, values, step: int) -> None:
        """A distribution (TensorBoard only; metrics.jsonl gets its summary statistics from the caller)."""
        self._tb.add_histogram(key, values, step)

    def close(self) -> None:
        self._file.close()
        self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
