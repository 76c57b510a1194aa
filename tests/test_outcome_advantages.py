"""The critic-free estimators (GRPO, RLOO, REINFORCE++) against hand computations and plain-loop references, and what
the PPO targets and the config make of them."""

import statistics

import pytest
import torch

from rlhf_ray.algorithms import (
    ADVANTAGE_ESTIMATORS,
    grpo_advantages,
    reinforce_pp_advantages,
    rloo_advantages,
)
from rlhf_ray.config import PPOConfig
from rlhf_ray.config.load import load_config
from rlhf_ray.ppo.advantages import compute_targets, uses_critic, whitens

# Rows padded on the left, on the right, on both sides, and not at all.
MASK = torch.tensor([[0, 0, 1, 1, 1, 1], [1, 1, 1, 0, 0, 0], [0, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]],
                    dtype=torch.float64)


def outcome_rewards(returns: list[float], mask: torch.Tensor = MASK) -> torch.Tensor:
    """Each row's return as one reward on its last real token (an RM score, no KL)."""
    rewards = torch.zeros_like(mask)
    for b, r in enumerate(returns):
        rewards[b, int(mask[b].nonzero().max())] = r
    return rewards


def test_grpo_hand_computed():
    # Prompt 7: returns 1 and 3 -> mean 2, sample std sqrt(2); prompt 9: 2 and 2 -> no signal.
    rewards, group = outcome_rewards([1.0, 3.0, 2.0, 2.0]), torch.tensor([7, 7, 9, 9])
    adv, ret = grpo_advantages(rewards, None, MASK, group=group)
    expected = torch.tensor([-1 / 2**0.5, 1 / 2**0.5, 0.0, 0.0], dtype=torch.float64)
    assert torch.allclose(adv, expected[:, None] * MASK, atol=1e-5)  # eps=1e-6 in the denominator
    assert torch.allclose(ret, torch.tensor([1.0, 3.0, 2.0, 2.0], dtype=torch.float64)[:, None] * MASK)
    assert ADVANTAGE_ESTIMATORS.get("grpo") is grpo_advantages


def test_grpo_matches_statistics_per_group_with_token_rewards_summed():
    torch.manual_seed(0)
    rewards = torch.randn(4, 6, dtype=torch.float64)  # KL-shaped rewards on every token: their sum is the return
    group = torch.tensor([0, 1, 1, 0])
    adv, _ = grpo_advantages(rewards, None, MASK, group=group)
    ret = [float((rewards[b] * MASK[b]).sum()) for b in range(4)]
    for b in range(4):
        peers = [ret[j] for j in range(4) if group[j] == group[b]]
        ref = (ret[b] - statistics.mean(peers)) / (statistics.stdev(peers) + 1e-6)
        assert torch.allclose(adv[b], ref * MASK[b], atol=1e-12)


def test_rloo_hand_computed():
    # One prompt with returns 1, 2, 6: baselines (2+6)/2, (1+6)/2, (1+2)/2.
    mask = torch.ones(3, 2, dtype=torch.float64)
    adv, _ = rloo_advantages(outcome_rewards([1.0, 2.0, 6.0], mask), None, mask, group=torch.tensor([0, 0, 0]))
    assert torch.allclose(adv[:, 0], torch.tensor([-3.0, -1.5, 4.5], dtype=torch.float64))
    assert torch.equal(adv[:, 0], adv[:, 1])  # the same advantage on every token of a row


def test_rloo_matches_a_plain_loop_and_its_advantages_sum_to_zero_per_prompt():
    torch.manual_seed(1)
    rewards = torch.randn(4, 6, dtype=torch.float64)
    group = torch.tensor([3, 3, 5, 5])
    adv, _ = rloo_advantages(rewards, None, MASK, group=group)
    ret = [float((rewards[b] * MASK[b]).sum()) for b in range(4)]
    for b in range(4):
        others = [ret[j] for j in range(4) if group[j] == group[b] and j != b]
        assert torch.allclose(adv[b], (ret[b] - sum(others) / len(others)) * MASK[b], atol=1e-12)
    per_row = [float(adv[b][MASK[b] > 0][0]) for b in range(4)]
    assert abs(per_row[0] + per_row[1]) < 1e-12 and abs(per_row[2] + per_row[3]) < 1e-12


@pytest.mark.parametrize("estimator", [grpo_advantages, rloo_advantages])
def test_group_estimators_refuse_a_prompt_with_one_sample(estimator):
    with pytest.raises(ValueError, match="at least 2 samples per prompt"):
        estimator(torch.zeros_like(MASK), None, MASK, group=torch.tensor([0, 0, 1, 2]))
    with pytest.raises(ValueError, match="group ids"):
        estimator(torch.zeros_like(MASK), None, MASK)


@pytest.mark.parametrize("gamma", [1.0, 0.9])
def test_reinforce_pp_is_the_reward_to_go_over_real_tokens(gamma):
    torch.manual_seed(2)
    rewards = torch.randn(4, 6, dtype=torch.float64)
    adv, ret = reinforce_pp_advantages(rewards, None, MASK, gamma=gamma)
    for b in range(4):
        real = [t for t in range(6) if MASK[b, t]]  # padding is not part of the trajectory
        togo = 0.0
        for t in reversed(real):
            togo = float(rewards[b, t]) + gamma * togo
            assert abs(float(adv[b, t]) - togo) < 1e-12
        assert all(float(adv[b, t]) == 0.0 for t in range(6) if not MASK[b, t])
    assert torch.equal(adv, ret)


def test_critic_use_and_whitening_defaults_per_estimator():
    assert uses_critic(PPOConfig()) and whitens(PPOConfig())
    for name, whiten in (("grpo", False), ("rloo", False), ("reinforce_pp", True)):
        cfg = PPOConfig(advantage_estimator=name)
        assert not uses_critic(cfg) and whitens(cfg) is whiten
        assert whitens(PPOConfig(advantage_estimator=name, whiten_advantages=not whiten)) is (not whiten)


def test_targets_with_grpo_use_the_kl_shaped_return_and_ignore_values():
    torch.manual_seed(3)
    mask = MASK[:, 1:].to(torch.long)
    logprobs, ref = torch.randn(4, 5), torch.randn(4, 5)
    scores, group = torch.tensor([1.0, -1.0, 0.5, 2.0]), torch.tensor([0, 0, 1, 1])
    cfg = PPOConfig(advantage_estimator="grpo", reward_norm="none")
    t = compute_targets(scores, logprobs, ref, torch.randn(4, 5), mask, cfg, 0.1, None, group=group)
    t0 = compute_targets(scores, logprobs, ref, torch.zeros(4, 5), mask, cfg, 0.1, None, group=group)
    assert torch.equal(t.advantages, t0.advantages)  # no critic in the estimate
    ret = (t.rewards * mask).sum(-1)  # score - 0.1 * sum of per-token KL
    assert torch.allclose(ret, scores - 0.1 * (t.kl * mask).sum(-1), atol=1e-6)
    expected, _ = grpo_advantages(t.rewards, None, mask.float(), group=group)
    assert torch.allclose(t.advantages, expected)  # and not whitened again


def test_config_refuses_a_group_estimator_with_one_sample_per_prompt(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("ppo: {advantage_estimator: rloo}\nrollout: {n_samples: 1}\n")
    with pytest.raises(Exception, match="rollout.n_samples >= 2"):
        load_config(path)
    path.write_text("ppo: {advantage_estimator: reinforce_pp}\nrollout: {n_samples: 1}\n")
    assert load_config(path).ppo.advantage_estimator == "reinforce_pp"  # a batch baseline needs no groups
