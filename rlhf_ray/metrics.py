"""Metrics to JSONL (one object per step) and TensorBoard, side by side in the run folder."""

import json
import math
import time
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter


class MetricsLogger:
    def __init__(self, run_dir: Path, purge_step: int | None = None):
        """purge_step: a resumed run drops TensorBoard events from this step on (written after its checkpoint)."""
        self.path = Path(run_dir) / "metrics.jsonl"
        self._file = open(self.path, "a", encoding="utf-8")
        self._tb = SummaryWriter(str(Path(run_dir) / "tensorboard"), purge_step=purge_step)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: float(v) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, "time": time.time(), **clean}) + "\n")
        self._file.flush()
        for key, value in clean.items():
            if math.isfinite(value):
                self._tb.add_scalar(key, value, step)

    def histogram(self, key: str, values, step: int) -> None:
        """A distribution (TensorBoard only; metrics.jsonl gets its summary statistics from the caller)."""
        self._tb.add_histogram(key, values, step)

    def close(self) -> None:
        self._file.close()
        self._tb.close()


def read_metrics(path: Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
