"""`rlhf-ray train`: a PPO run as a short loop over a PPOTrainer (launch/trainer.py, where one iteration reads top to
bottom): resume from the newest complete checkpoint, step through the iterations, checkpoint every N and at the end.
"""

import logging
import sys
from pathlib import Path

from tqdm.auto import tqdm

from rlhf_ray.config import Config
from rlhf_ray.run_dir import seed_everything
from rlhf_ray.training.checkpoint import checkpoint_iteration, latest_checkpoint

from .testing import hang_if_asked
from .trainer import BufferFilter, PPOTrainer

log = logging.getLogger("rlhf_ray.ppo")


def run_ppo(cfg: Config, run_dir: Path, show_progress: bool = True, resume: bool = False,
            buffer_filter: BufferFilter | None = None) -> list[dict]:
    """Run PPO iterations; with resume, continue from the run folder's last complete checkpoint. Returns the rows."""
    seed_everything(cfg.run.seed)
    ckpt = latest_checkpoint(run_dir)
    if ckpt and not resume:
        raise FileExistsError(f"{run_dir} already holds checkpoint {ckpt.name}: pass --resume to continue it, "
                              "or choose another run.name")
    if ckpt and checkpoint_iteration(ckpt) >= cfg.ppo.iterations:
        log.info("%s already holds all %d iterations (raise ppo.iterations to go on)", ckpt, cfg.ppo.iterations)
        return []
    if resume and not ckpt:
        log.info("--resume: no complete checkpoint under %s yet; starting from iteration 1", run_dir / "checkpoints")

    trainer = PPOTrainer(cfg, run_dir, show_progress, buffer_filter)
    history = []
    try:  # on any error too: free the actors and placement groups (a cluster outlives this driver)
        trainer.start(ckpt)
        # A bar in a terminal only: elsewhere the per-iteration log line is the progress.
        bar = tqdm(range(trainer.state.iteration + 1, cfg.ppo.iterations + 1), desc="ppo", unit="iter",
                   disable=not (show_progress and sys.stderr.isatty()))
        for it in bar:
            row = trainer.step(it)
            history.append(row)
            bar.set_postfix(reward=f"{row['reward/mean']:.3f}", kl=f"{row['kl/mean']:.3f}")
            hang_if_asked(it)
            # After the iteration's rows are written: a resume drops rows newer than its checkpoint.
            if (cfg.run.checkpoint_every and it % cfg.run.checkpoint_every == 0) or it == cfg.ppo.iterations:
                trainer.checkpoint()
    finally:
        trainer.close()
    return history
