"""`rlhf-ray report RUN_DIR`, also written at the end of `train` and `rm train`: the run folder's report.html, with
the RL prompts' texts looked up from the run's own config (samples name prompts by index)."""

import logging
from collections.abc import Callable
from pathlib import Path

from rlhf_ray.config import load_config
from rlhf_ray.run_report import write_run_report

log = logging.getLogger("rlhf_ray.report")


def prompt_texts(run_dir: Path) -> Callable[[int], str | None]:
    """RL prompt i's text, from the data the run's config.yaml names; None for all when that data cannot be read."""
    from .trainer import rl_prompt_rows

    if not (run_dir / "samples.jsonl").exists():
        return lambda i: None
    try:
        texts = list(rl_prompt_rows(load_config(str(run_dir / "config.yaml"), []))["prompt"])
    except Exception as e:  # the report still shows the samples, by prompt index
        log.warning("report: the RL prompts of %s cannot be read (%s); samples show prompt indices", run_dir, e)
        return lambda i: None
    return lambda i: texts[i] if 0 <= i < len(texts) else None


def write_report(run_dir: Path, prompts: list[str] | None = None) -> Path | None:
    """report.html into run_dir; a failure is logged, never the run's (the run itself is done). prompts: the RL
    prompts' texts when the caller holds them (a run that just ended), else read from the run's config."""
    try:
        texts = prompt_texts(Path(run_dir)) if prompts is None else (
            lambda i: prompts[i] if 0 <= i < len(prompts) else None)
        page = write_run_report(Path(run_dir), texts)
    except Exception as e:
        log.warning("report: could not be written for %s (%s: %s)", run_dir, type(e).__name__, e)
        return None
    log.info("report: %s", page)
    return page
