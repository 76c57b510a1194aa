"""Round diagnostics against plain loops and hand-computed values."""

import itertools
import math

import pytest
import torch

from rlhf_ray.config import load_config
from rlhf_ray.round_diagnostics import order_agreement, round_diagnostics, within_prompt_gaps


def test_gaps_equal_a_plain_loop_over_response_pairs():
    rewards = torch.randn(4, 5, generator=torch.Generator().manual_seed(0))
    expected = [abs(float(row[i] - row[j])) for row in rewards for i, j in itertools.combinations(range(5), 2)]
    assert within_prompt_gaps(rewards).tolist() == pytest.approx(expected)


def test_agreement_by_hand_with_ties():
    proxy = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 1.0]])
    gold = torch.tensor([[1.0, 3.0, 2.0], [5.0, 5.0, 4.0]])
    # prompt 0: (0,1) agree, (0,2) agree, (1,2) disagree. prompt 1: (0,1) gold tie: not counted; (0,2) and (1,2):
    # gold says 0 > 2 and 1 > 2, proxy says the opposite.
    agreement, n = order_agreement(proxy, gold)
    assert n == 5 and agreement == pytest.approx(2 / 5)
    # A proxy tie on a pair gold decides is a disagreement.
    assert order_agreement(torch.tensor([[1.0, 1.0]]), torch.tensor([[2.0, 1.0]])) == (0.0, 1)
    assert math.isnan(order_agreement(torch.zeros(1, 2), torch.zeros(1, 2))[0])


def test_round_diagnostics_by_hand():
    proxy = torch.tensor([[0.0, 1.0], [2.0, 5.0]])  # gaps 1 and 3
    out = round_diagnostics(proxy, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert out["round/gap_mean"] == 2.0 and out["round/gap_q50"] == 2.0
    assert out["round/gap_q10"] == pytest.approx(1.2) and out["round/gap_q90"] == pytest.approx(2.8)
    assert out["round/proxy_reward"] == 2.0 and out["round/gold_reward"] == 0.5
    assert out["round/proxy_gold_agreement"] == 0.5 and out["round/gold_decided_pairs"] == 2
    assert "round/gold_reward" not in round_diagnostics(proxy)


def test_online_config_counts_iterations_per_round_and_refuses_an_rm_update_without_an_rm():
    cfg = load_config(None, ["online.rounds=3", "ppo.iterations=4"])
    assert cfg.total_iterations == 12 and cfg.online.rm_update == "metarm" and cfg.online.rm_init == "continue"
    assert load_config(None, []).total_iterations == load_config(None, []).ppo.iterations  # rounds 1: plain PPO
    with pytest.raises(Exception, match="reward.function"):
        load_config(None, ["online.rounds=2", "reward.function=rlhf_ray.rewards:target_token_fraction"])
    load_config(None, ["online.rounds=2", "online.rm_update=frozen", "reward.function=rlhf_ray.rewards:target_token_fraction"])
