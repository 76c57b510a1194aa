"""NaN and inf stop where they appear, named, before they reach an advantage or a weight."""

import math

import pytest
import torch

from actors.reward import RewardActor
from rlhf_ray.config import LearnerConfig, PPOConfig
from rlhf_ray.models import load_policy
from rlhf_ray.ppo.update import actor_loss
from rlhf_ray.rollout.types import Rollouts, drop_non_finite_prompts


def nan_for_long_responses(prompt: list[int], response: list[int]) -> float:
    return float("nan") if len(response) > 2 else 1.0


def test_a_reward_function_that_returns_nan_stops_the_scoring_naming_it():
    actor = RewardActor(function=f"{__name__}:nan_for_long_responses")
    assert actor.score([([1], [2]), ([1], [2, 3])]) == [1.0, 1.0]
    with pytest.raises(FloatingPointError, match=r"reward.function test_nonfinite:nan_for_long_responses gave a "
                                                 r"non-finite reward to 1 of 2 responses \(positions \[1\]"):
        actor.score([([1], [2]), ([1], [2, 3, 4])])


def test_skip_mode_sends_nan_and_the_driver_drops_every_sample_of_that_prompt():
    actor = RewardActor(function=f"{__name__}:nan_for_long_responses", non_finite="skip")
    scores = actor.score([([1], [2]), ([1], [2, 3, 4]), ([5], [6]), ([5], [7]), ([8], [2, 3, 4]), ([8], [9])])
    assert [s == 1.0 for s in scores] == [True, False, True, True, False, True]
    assert math.isnan(scores[1]) and math.isnan(scores[4])
    rollouts = Rollouts()
    for j, (p, r) in enumerate([(0, [2]), (0, [2, 3, 4]), (1, [6]), (1, [7]), (2, [2, 3, 4]), (2, [9])]):
        rollouts.append(p, [p], r, [-0.5] * len(r), f"text{j}", "stop")
    kept, kept_scores, skipped = drop_non_finite_prompts(rollouts, torch.tensor(scores))
    assert skipped == 4 and kept.prompt_index == [1, 1] and kept.texts == ["text2", "text3"]
    assert kept.response_ids == [[6], [7]] and kept_scores.tolist() == [1.0, 1.0]
    none_bad, same, zero = drop_non_finite_prompts(kept, kept_scores)
    assert zero == 0 and none_bad.texts == kept.texts and torch.equal(same, kept_scores)


def test_a_nan_policy_loss_is_refused_before_backward_naming_rows_and_inputs(tiny_model_dir):
    policy = load_policy(tiny_model_dir)
    ids = torch.tensor([[1, 5, 6, 7], [1, 8, 9, 10]])
    act = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1]])[:, 1:]
    mb = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "action_mask": act,
          "old_logprobs": torch.zeros(act.shape), "advantages": torch.ones(act.shape), "row_id": torch.tensor([4, 7])}
    loss, _ = actor_loss(policy, mb, PPOConfig(), LearnerConfig())
    assert torch.isfinite(loss)
    mb["advantages"][1, 2] = float("nan")
    with pytest.raises(FloatingPointError, match=r"PPO policy loss is nan on rows \[4, 7\]; non-finite advantages"):
        actor_loss(policy, mb, PPOConfig(), LearnerConfig())
    assert all(p.grad is None for p in policy.parameters())  # nothing was back-propagated
