"""Progress of long work: log lines without a terminal (first, periodic, last, each with its time left), and a resumed
run's rate counted on the work this process did."""

import logging

from rlhf_ray.progress import Progress


def test_progress_without_a_terminal_logs_first_periodic_and_last(caplog):
    caplog.set_level(logging.INFO, logger="rlhf_ray")
    with Progress(5, "rm eval", unit="pair", bar=False, every_s=3600) as progress:
        for _ in range(5):
            progress.update(1, loss=0.5)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2  # the first (a rate to go by) and the last; the middle ones fall inside every_s
    assert lines[0].startswith("rm eval: 1/5 pairs (20%)") and "left" in lines[0] and "loss 0.5" in lines[0]
    assert lines[1].startswith("rm eval: 5/5 pairs (100%)") and "left" not in lines[1]
    caplog.clear()
    progress = Progress(3, "rm train", bar=False, every_s=0.0)
    for _ in range(3):
        progress.update(1)
    assert len(caplog.records) == 3
    progress = Progress(2, "rm train", bar=False)
    progress.exclude(1000.0)  # an eval in between: not part of the step rate
    progress.update(1)
    assert "0.0 s/step" in caplog.records[-1].getMessage()


def test_a_resumed_run_counts_from_where_it_stopped(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="rlhf_ray")
    clock = iter([0.0, 10.0, 20.0])  # construction, then one update 10 s later, the next at 20 s
    monkeypatch.setattr("rlhf_ray.progress.time.perf_counter", lambda: next(clock))
    progress = Progress(12, "ppo", unit="iteration", bar=False, every_s=0.0, initial=8)
    progress.update(reward=0.25)
    # 9 of 12 done, 10 s for the one this process ran (not 10/9 s): 3 left at 10 s each.
    assert caplog.records[-1].getMessage() == "ppo: 9/12 iterations (75%), 10.0 s/iteration, ~30 s left; reward 0.25"
    progress.update()
    assert caplog.records[-1].getMessage().startswith("ppo: 10/12 iterations (83%), 10.0 s/iteration, ~20 s left")
