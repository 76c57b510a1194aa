"""Progress of long work, never silent: a tqdm bar in a terminal, elsewhere (a log file, CI, --no-progress) a log
line at the first update, then every `every_s` seconds, and at the end."""

import logging
import sys
import time

from tqdm.auto import tqdm


class Progress:
    def __init__(self, total: int, desc: str, unit: str = "step", logger: logging.Logger | None = None,
                 bar: bool = True, every_s: float = 30.0, initial: int = 0):
        """bar: draw a bar when stderr is a terminal (False: log lines only, as with --no-progress).
        initial: units already done before this process (a resumed run); the rate counts only the new ones."""
        self.total, self.desc, self.unit, self.every_s = total, desc, unit, every_s
        self.log = logger or logging.getLogger("rlhf_ray")
        self.done = self.initial = initial
        self.postfix = {}
        self._t0 = self._last = time.perf_counter()
        self._bar = tqdm(total=total, desc=desc, unit=unit, initial=initial) if bar and sys.stderr.isatty() else None

    def update(self, n: int = 1, **postfix) -> None:
        self.done += n
        self.postfix.update(postfix)
        if self._bar is not None:
            self._bar.update(n)
            if postfix:
                self._bar.set_postfix({k: _fmt(v) for k, v in self.postfix.items()}, refresh=False)
            return
        now = time.perf_counter()
        if self.done == self.initial + n or self.done >= self.total or now - self._last >= self.every_s:
            self._last = now
            self.log.info("%s", self.line(now - self._t0))

    def exclude(self, seconds: float) -> None:
        """Leave time spent on other work (an eval between steps) out of the rate and the estimate."""
        self._t0 += seconds

    def line(self, elapsed: float) -> str:
        """'rm train: 5/20 steps (25%), 24.1 s/step, ~6 min left; loss 0.693'."""
        per = elapsed / max(self.done - self.initial, 1)
        text = f"{self.desc}: {self.done}/{self.total} {self.unit}s ({self.done / max(self.total, 1):.0%}), {per:.1f} s/{self.unit}"
        if self.done < self.total:
            text += f", ~{_duration(per * (self.total - self.done))} left"
        if self.postfix:
            text += "; " + ", ".join(f"{k} {_fmt(v)}" for k, v in self.postfix.items())
        return text

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"
