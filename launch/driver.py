"""`rlhf-ray train`: a PPO run as a short loop over a PPOTrainer (launch/trainer.py, where one iteration reads top to
bottom): resume from the newest complete checkpoint, step through the iterations, checkpoint every N and at the end.
With online.rounds > 1 the iterations form rounds, each begun by OnlineRounds (launch/online.py): the RM follows
the policy. With seam.filter, SeamFilter (launch/seam_online.py) filters each iteration's buffer.
"""

import logging
from pathlib import Path

from ray.exceptions import RayActorError, RayTaskError

from actors.group import ActorDiedError
from rlhf_ray.config import Config
from rlhf_ray.learning_curve import describe_rise, write_learning_report
from rlhf_ray.progress import Progress
from rlhf_ray.run_dir import seed_everything
from rlhf_ray.training.checkpoint import checkpoint_iteration, latest_checkpoint

from .online import OnlineRounds
from .report import write_report
from .seam_online import SeamFilter
from .testing import hang_if_asked
from .trainer import BufferFilter, PPOTrainer

log = logging.getLogger("rlhf_ray.ppo")


def run_ppo(cfg: Config, run_dir: Path, show_progress: bool = True, resume: bool = False,
            buffer_filter: BufferFilter | None = None) -> list[dict]:
    """Run PPO iterations; with resume, continue from the run folder's last complete checkpoint. An actor lost for
    good (a learner rank) stops the run with what --resume would continue from; with fault.auto_resume the run does
    that itself, on fresh actors. Returns the rows of the last attempt."""
    resumes_left = cfg.fault.auto_resume
    while True:
        try:
            return run_ppo_once(cfg, run_dir, show_progress, resume, buffer_filter)
        except (ActorDiedError, RayActorError) as e:
            ckpt = latest_checkpoint(run_dir)
            where = f"its last complete checkpoint, {ckpt}" if ckpt else "iteration 1 (no checkpoint was written yet)"
            if not resumes_left:
                raise ActorDiedError(f"{e}\nThe run stopped; its actors are freed. Run the same command with --resume "
                                     f"to continue from {where}" + ("" if cfg.fault.auto_resume else
                                                                    " (fault.auto_resume=N does that by itself)")) from e
            resumes_left -= 1
            log.warning("%s\nfault.auto_resume: resuming from %s on fresh actors (%d automatic resumes left)",
                        str(e).splitlines()[0], where, resumes_left)
            resume = True


def run_ppo_once(cfg: Config, run_dir: Path, show_progress: bool, resume: bool,
                 buffer_filter: BufferFilter | None) -> list[dict]:
    seed_everything(cfg.run.seed)
    ckpt = latest_checkpoint(run_dir)
    if ckpt and not resume:
        raise FileExistsError(f"{run_dir} already holds checkpoint {ckpt.name}: pass --resume to continue it, "
                              "or choose another run.name")
    total = cfg.total_iterations
    if ckpt and checkpoint_iteration(ckpt) >= total:
        log.info("%s already holds all %d iterations (raise ppo.iterations or online.rounds to go on)", ckpt, total)
        return []
    if resume and not ckpt:
        log.info("--resume: no complete checkpoint under %s yet; starting from iteration 1", run_dir / "checkpoints")

    trainer = PPOTrainer(cfg, run_dir, show_progress, buffer_filter)
    online = OnlineRounds(trainer, show_progress)
    seam = SeamFilter(trainer) if cfg.seam.filter != "none" and buffer_filter is None else None
    trainer.buffer_filter = seam or buffer_filter
    history, progress = [], None
    try:  # on any error too: free the actors and placement groups (a cluster outlives this driver)
        trainer.start(ckpt)
        online.start(ckpt)  # online rounds' RM learner and gold judge, when configured
        if seam:
            seam.start()  # the SeamActor; scoring borrows the trainer's RolloutActors and RewardActors
        progress = Progress(total, "ppo", unit="iteration", logger=log, bar=show_progress,
                            initial=trainer.state.iteration)
        for it in range(trainer.state.iteration + 1, total + 1):
            # A round starts with its meta set, RM update and push; a resume inside a round goes straight on.
            begin = cfg.online.rounds > 1 and online.starts_round(it)
            row = trainer.step(it, online.begin_round(online.round_of(it), it) if begin else None)
            history.append(row)
            progress.update(reward=row["reward/mean"], kl=row["kl/mean"])
            hang_if_asked(it)
            # After the iteration's rows are written: a resume drops rows newer than its checkpoint.
            if (cfg.run.checkpoint_every and it % cfg.run.checkpoint_every == 0) or it == total:
                trainer.checkpoint()
    except RayTaskError as e:  # a collective that lost a peer fails in the live ranks: name the dead one
        dead = [f"{g.name} rank {r}" for g in (trainer.rollout, trainer.reward, trainer.learner, online.rm_group)
                if g for r in g.dead_ranks()]
        if dead:
            raise ActorDiedError(f"{', '.join(dead)} died; a call that needed it failed: "
                                 f"{str(e).strip().splitlines()[-1]}") from e
        raise
    finally:
        if progress:
            progress.close()
        if seam:
            seam.close()
        online.close()
        trainer.close()
    rise = write_learning_report(run_dir)  # reward_kl.png, and the rise test from samples.jsonl
    if rise:
        log.info("%s (plot: %s)", describe_rise(rise), run_dir / "reward_kl.png")
    write_report(run_dir, list(trainer.prompt_rows["prompt"]))  # the texts samples.jsonl names by index
    return history
