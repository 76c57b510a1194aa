"""The actor-group helper and the RewardActor on a local Ray."""

import os
import sys
import time

import pytest
import ray
import torch

from actors.group import ActorDiedError, ActorGroup, RestartBudget, ZeroShards, split_evenly
from actors.reward import RewardActor
from launch.cluster import report_node_precision
from rlhf_ray.config import ResourceSpec
from rlhf_ray.device import FLAGS_ENV, resolve_precision
from rlhf_ray.models import load_reward_model, load_tokenizer, reward_model_from_lm, score_sequences
from rlhf_ray.weight_codec import pack_state_dict

ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module


class Echo:
    def __init__(self, tag: str, rank: int = 0):
        self.tag, self.rank = tag, rank

    def whoami(self, x):
        return (self.tag, self.rank, x)

    def total(self, items):
        return [self.rank, sum(items)]

    def die(self):
        os._exit(1)


class HangsOnce:
    """Rank 1's first call hangs (a stuck worker), once per marker folder; every later call answers."""

    def __init__(self, marker_dir: str, rank: int = 0):
        self.marker, self.rank = os.path.join(marker_dir, f"hung{rank}"), rank

    def double(self, items):
        if self.rank == 1 and not os.path.exists(self.marker):
            open(self.marker, "w").close()
            time.sleep(3600)
        return [2 * x for x in items]


def test_a_hung_rank_is_restarted_and_its_shard_redone(ray_local, tmp_path):
    group = ActorGroup(HangsOnce, 2, ResourceSpec(num_cpus=0.5), str(tmp_path), name="hangs")
    try:
        recovered, budget = [], RestartBudget(1)
        out = group.run_sharded_resilient("double", [1, 2, 3, 4, 5], budget=budget, timeout_s=5,
                                          recover=recovered.append)
        assert out == [[2, 4, 6], [8, 10]] and recovered == [1] and budget.used == 1
        os.remove(tmp_path / "hung1")  # hangs again: no restart left
        with pytest.raises(ActorDiedError, match=r"hangs rank 1 gave no double result within 5 s, and the run has "
                                                 r"used all 1 actor restarts"):
            group.run_sharded_resilient("double", [1, 2, 3, 4, 5], budget=budget, timeout_s=5)
    finally:
        group.kill()


def test_split_evenly():
    assert split_evenly(list(range(7)), 3) == [[0, 1, 2], [3, 4], [5, 6]]
    assert split_evenly([1], 3) == [[1], [], []]


def test_zero_shards_give_every_rank_the_same_micro_batches():
    shards = ZeroShards.split(11, 3, 2)  # 4, 4, 3 rows -> 2 micro-batches of 2 each
    assert shards.rows == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10]] and shards.micro_batches == 2
    assert [shards.padded(r) for r in range(3)] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 8]]
    assert shards.unpad([["a"] * 4, ["b"] * 4, ["c", "d", "e", "f"]]) == [["a"] * 4, ["b"] * 4, ["c", "d", "e"]]
    assert shards.unpad([{"x": [1, 2, 3, 4]}] * 3)[2] == {"x": [1, 2, 3]}
    few = ZeroShards.split(1, 2, 4)  # a rank without rows still runs the collective micro-batch, on row 0
    assert few.padded(1) == [0, 0, 0, 0] and few.unpad([[7] * 4, [7] * 4]) == [[7], []]
    with pytest.raises(ValueError):
        ZeroShards.split(0, 2, 4)


def test_group_calls_all_and_gathers_in_rank_order(ray_local):
    group = ActorGroup(Echo, 3, ResourceSpec(num_cpus=0.5), "t", name="echo")
    assert group.run("whoami", 7) == [("t", 0, 7), ("t", 1, 7), ("t", 2, 7)]
    assert group.run_sharded("total", list(range(10))) == [[0, 0 + 1 + 2 + 3], [1, 4 + 5 + 6], [2, 7 + 8 + 9]]
    group.kill()


def test_colocated_groups_share_one_placement_group(ray_local):
    from actors.group import make_placement_group

    pg = make_placement_group([{"CPU": 1.0}] * 2, "shared")
    a = ActorGroup(Echo, 2, ResourceSpec(num_cpus=0.5), "a", name="a", pg=pg)
    b = ActorGroup(Echo, 2, ResourceSpec(num_cpus=0.5), "b", name="b", pg=pg)
    assert [r[0] for r in a.run("whoami", 0) + b.run("whoami", 0)] == ["a", "a", "b", "b"]
    a.kill()
    b.kill()
    ray.util.remove_placement_group(pg)


def test_shared_placement_group_sums_the_roles_per_bundle(ray_local):
    from actors.group import shared_placement_group

    pg = shared_placement_group([(ResourceSpec(num_cpus=1.0), 2), (ResourceSpec(num_cpus=0.5), 1)], "both")
    bundles = ray.util.placement_group_table(pg)["bundles"]
    assert [b["CPU"] for b in bundles.values()] == [1.5, 1.0]  # rollout 0 + reward 0, then rollout 1 alone
    rollout = ActorGroup(Echo, 2, ResourceSpec(num_cpus=1.0), "r", name="r", pg=pg)
    reward = ActorGroup(Echo, 1, ResourceSpec(num_cpus=0.5), "s", name="s", pg=pg)
    assert [r[0] for r in rollout.run("whoami", 0) + reward.run("whoami", 0)] == ["r", "r", "s"]
    rollout.kill()
    reward.kill()
    ray.util.remove_placement_group(pg)


def test_dead_actor_is_named(ray_local):
    group = ActorGroup(Echo, 2, ResourceSpec(num_cpus=0.5), "t", name="doomed")
    with pytest.raises(ActorDiedError, match="doomed rank 1"):
        group.gather([group.actors[0].whoami.remote(1), group.actors[1].die.remote()])
    group.kill()


def test_unplaceable_group_says_what_it_asked_for(ray_local):
    with pytest.raises(RuntimeError, match=r"could not place huge: 1 bundles of \{'CPU': 1000.0\}"):
        ActorGroup(Echo, 1, ResourceSpec(num_cpus=1000), "t", name="huge", timeout_s=2)


def test_reward_actors_share_the_load_and_match_local_scoring(ray_local, tiny_model_dir, tmp_path):
    tok = load_tokenizer(tiny_model_dir)
    torch.manual_seed(0)
    rm = reward_model_from_lm(tiny_model_dir, pad_token_id=tok.pad_token_id)
    torch.nn.init.normal_(rm.score.weight)
    rm.save_pretrained(tmp_path / "rm")
    tok.save_pretrained(tmp_path / "rm")
    pairs = [(tok("prompt").input_ids, tok(f"response number {i} " * (i % 4 + 1)).input_ids + [tok.eos_token_id])
             for i in range(10)]
    seqs = [p + r for p, r in pairs]
    local = score_sequences(load_reward_model(tmp_path / "rm"), seqs, tok.pad_token_id).tolist()

    # fp32 on both sides (not auto, which is bf16 on a native-bf16 CPU): compared to 1e-5.
    group = ActorGroup(RewardActor, 2, ResourceSpec(num_cpus=1), str(tmp_path / "rm"), name="reward", batch_size=3,
                       mixed_precision="none")
    remote = [r for shard in group.run_sharded("score", pairs) for r in shard]
    assert remote == pytest.approx(local, abs=1e-5)

    # New weights through the object store: every actor scores with them.
    new = {k: v + 0.01 for k, v in load_reward_model(tmp_path / "rm").state_dict().items()}
    blob = ray.put(pack_state_dict(new))
    group.run("update_weights", blob)
    model = load_reward_model(tmp_path / "rm")
    model.load_state_dict(new)
    want = score_sequences(model, seqs, tok.pad_token_id).tolist()
    assert [r for shard in group.run_sharded("score", pairs) for r in shard] == pytest.approx(want, abs=1e-5)
    assert want != pytest.approx(local, abs=1e-3)
    group.kill()


def test_reward_actor_with_a_programmatic_reward(ray_local):
    group = ActorGroup(RewardActor, 1, ResourceSpec(num_cpus=0.5), name="fn", function="rlhf_ray.rewards:target_token_fraction",
                       function_kwargs={"target_ids": [7]})
    assert group.run("score", [([1], [7, 7, 3, 4]), ([2], [5])]) == [[0.5, 0.0]]
    group.kill()


def test_an_actor_decides_precision_for_its_own_node(ray_local, caplog):
    """An actor whose node lacks native bf16 (simulated by its own flags) picks fp32 under auto, whatever the driver's
    node has, and the driver reports the difference."""
    caplog.set_level("INFO", logger="rlhf_ray")
    spec = {"function": "rlhf_ray.rewards:target_token_fraction", "function_kwargs": {"target_ids": [7]}}
    avx2 = ActorGroup(RewardActor, 1, ResourceSpec(num_cpus=0.5), name="avx2-node", mixed_precision="auto",
                      runtime_env={"env_vars": {FLAGS_ENV: "avx2"}}, **spec)
    native = ActorGroup(RewardActor, 1, ResourceSpec(num_cpus=0.5), name="bf16-node", mixed_precision="auto",
                        runtime_env={"env_vars": {FLAGS_ENV: "avx512_bf16"}}, **spec)
    try:
        assert avx2.run("node_precision")[0]["mode"] == "none"
        assert native.run("node_precision")[0]["mode"] == "bf16"
        here = resolve_precision("auto", device="cpu", flags={"avx512_bf16"})
        report_node_precision(here, avx2, native)
        lines = [r.getMessage() for r in caplog.records if "on node" in r.getMessage()]
        assert len(lines) == 1 and lines[0].startswith("avx2-node rank 0 on node") and "no native bf16" in lines[0]
    finally:
        avx2.kill()
        native.kill()
