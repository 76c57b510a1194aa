"""PPOTrainer: a buffer filter's rows are exactly what the learner group trains on, on ZeRO-2 and ZeRO-3 groups of 2;
the seeded prompt order and its pool."""

import pytest

from launch.trainer import PPOTrainer, prompt_order
from rlhf_ray.config import Config
from rlhf_ray.run_dir import prepare_run_dir

pytest.importorskip("vllm")


def test_prompt_order_is_seeded_and_cut_to_the_pool():
    every = prompt_order(Config.model_validate({"run": {"seed": 3}}), 50)
    assert sorted(every) == list(range(50)) and every != list(range(50))
    assert prompt_order(Config.model_validate({"run": {"seed": 3}}), 50) == every  # the seed decides it
    assert prompt_order(Config.model_validate({"run": {"seed": 4}}), 50) != every
    pool = Config.model_validate({"run": {"seed": 3}, "ppo": {"prompt_pool": 12}})
    assert prompt_order(pool, 50) == every[:12]  # the trainer cycles through these 12


# Both stages long: the SEAM filter test (test_seam_online.py) drives the same hook on a ZeRO-3 group, uneven shards.
@pytest.mark.long
@pytest.mark.parametrize("zero_stage", [2, 3])
def test_a_buffer_filter_decides_the_rows_the_learners_train_on(ray_local, ppo_config, zero_stage):
    seen = {}

    def drop_every_third(buffer, iteration):
        seen["rows"] = len(buffer)
        return [i for i in range(len(buffer)) if i % 3], {"filter/seen": len(buffer)}  # rows 0, 3, 6, ... go

    cfg = ppo_config(f"filter{zero_stage}", f"learner.zero_stage={zero_stage}",
                 "reward.function=rlhf_ray.rewards:target_token_fraction", "reward.function_kwargs={target_ids: [5]}",
                 "ppo.iterations=2", "rollout.num_actors=1")
    trainer = PPOTrainer(cfg, prepare_run_dir(cfg), show_progress=False, buffer_filter=drop_every_third)
    try:
        trainer.start()
        for it in (1, 2):
            row = trainer.step(it)
            assert seen["rows"] == 32  # the filter saw the filled buffer: 8 prompts x 4 samples
            kept = trainer.state.buffer.data["row_id"].tolist()
            assert kept == [i for i in range(32) if i % 3]  # 21 rows: shards of 11 and 10, each padded to 16
            assert trainer.rows_learned == kept  # every kept row trained on, and nothing else
            assert row["buffer/rows"] == 21 and row["buffer/dropped"] == 11 and "time/filter_s" in row
            assert row["filter/seen"] == 32  # the filter's metrics join the row
            assert row["ppo/ppo_steps"] == 2  # 2 micro-batches of 8 on each rank: the ZeRO rule held
    finally:
        trainer.close()
