"""The SEAM filter in PPO on tiny models: each iteration's lowest-SEAM prompts leave the buffer with all their rows,
the learner (a ZeRO-3 group of 2, left with uneven shards) trains on exactly the rows kept, and the scores are logged."""

import math

import pytest

from launch.seam_online import SeamFilter
from launch.trainer import PPOTrainer
from rlhf_ray.run_dir import prepare_run_dir

pytest.importorskip("vllm")


@pytest.mark.parametrize("method", ["seam", pytest.param("random", marks=pytest.mark.long)])
def test_seam_filter_drops_the_lowest_prompts_and_the_learner_trains_on_the_rest(ray_local, ppo_config,
                                                                                 tiny_rm_dir, tmp_path, method):
    # 8 prompts x 3 samples, 3 prompts dropped: 15 rows kept, shards of 8 and 7 on the ZeRO-3 group.
    cfg = ppo_config(f"seam_{method}", f"model.reward={tiny_rm_dir}", "ppo.iterations=2", "rollout.num_actors=1",
                     "rollout.n_samples=3", "learner.zero_stage=3",
                     f"seam.filter={method}", "seam.variant=adv", "seam.k=3", "seam.drop_fraction=0.375",
                     f"seam.cache={tmp_path}/seam_cache", "rollout.max_model_len=320")
    trainer = PPOTrainer(cfg, prepare_run_dir(cfg), show_progress=False)
    seam = trainer.buffer_filter = SeamFilter(trainer)
    try:
        trainer.start()
        seam.start()
        seen: set[int] = set()
        for it in (1, 2):
            row = trainer.step(it)
            scores = seam.last_scores
            assert row["seam/worse_built"] == len(set(scores) - seen)  # built once per prompt, then cached
            seen |= set(scores)
            assert row["seam/prompts"] == 8 and row["seam/scored"] == sum(not math.isnan(v) for v in scores.values())
            assert row["seam/dropped_prompts"] == math.floor(0.375 * row["seam/scored"]) > 0
            assert row["seam/dropped_rows"] == 3 * row["seam/dropped_prompts"]  # every sample of a dropped prompt
            kept_rows = trainer.state.buffer.data["row_id"].tolist()
            assert len(kept_rows) == 24 - row["seam/dropped_rows"] == row["buffer/rows"]
            assert trainer.rows_learned == kept_rows  # the learner trained on exactly the kept rows
            kept_prompts = set(trainer.state.buffer.data["prompt_index"].tolist())
            dropped = set(scores) - kept_prompts
            assert len(dropped) == row["seam/dropped_prompts"]
            if method == "seam":  # the lowest scores went
                assert max(scores[p] for p in dropped) <= min(scores[p] for p in kept_prompts if p in scores)
            assert 0 <= row["seam/q10"] <= row["seam/q50"] <= row["seam/q90"] <= 1 and "time/filter_s" in row
    finally:
        seam.close()
        trainer.close()
