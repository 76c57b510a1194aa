"""What a user reads: the console of `rlhf-ray train` holds the project's own lines, each actor group's start said
once, progress with its time left, and no library output that looks like a failure: warnings about settings chosen
on purpose, deprecation notices, per-update progress bars of libraries inside Ray actors."""

import re

import pytest

pytest.importorskip("vllm")

# One C++ line of vLLM's CPU worker (torch's TORCH_WARN, below Python's logging) is left: it says where memory is bound.
LEFT = ("NUMA binding: Using MEMBIND policy",)


def test_a_runs_console_is_the_projects_lines(straight_run):
    config, _ = straight_run
    lines = [line for line in (config.parent / "straight.log").read_text().splitlines()
             if not any(part in line for part in LEFT)]
    actor_lines = [line for line in lines if re.search(r"\(\w+Actor pid=\d+\)", line)]
    assert not actor_lines, "library output from actors:\n" + "\n".join(actor_lines)
    noise = [line for line in lines if re.search(r"\d+%\||Warning:|WARNING|\[WARNING\]|MISSING|Traceback", line)]
    assert not noise, "\n".join(noise)
    for group in ("rollout: 2 actors of RolloutActor", "reward: 1 actors of RewardActor",
                  "learner: 2 actors of LearnerActor"):
        assert sum(group in line for line in lines) == 1, group
    assert [line for line in lines if "ppo: 1/3 iterations (33%)" in line and "left" in line]
    assert sum(re.search(r"INFO rlhf_ray\.ppo: iter \d: reward", line) is not None for line in lines) == 3
