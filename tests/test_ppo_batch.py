import pytest
import torch

from rlhf_ray.algorithms import aggregate, row_loss_weights
from rlhf_ray.config import LearnerConfig, PPOConfig
from rlhf_ray.models import load_policy
from rlhf_ray.ppo.advantages import compute_targets, mean_sequence_kl
from rlhf_ray.ppo.batch import action_values, make_sequences, sequence_logprobs, trim_padding
from rlhf_ray.ppo.update import actor_loss


def test_make_sequences_masks_exactly_the_response_predictions():
    ids, attn, act = make_sequences([[1, 2, 3], [7]], [[4, 5], [8, 9, 10]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3, 4, 5], [7, 8, 9, 10, 0]]
    assert attn.tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 1, 0]]
    # position t predicts token t+1: row 0 predicts 4 at t=2 and 5 at t=3.
    assert act.tolist() == [[0, 0, 1, 1], [1, 1, 1, 0]]
    with pytest.raises(ValueError, match=r"empty responses at rows \[1\]"):
        make_sequences([[1], [2]], [[3], []], 0)


def test_action_values_land_on_the_response_predictions():
    _, _, act = make_sequences([[1, 2, 3], [7]], [[4, 5], [8, 9, 10]], pad_id=0)
    out = action_values([[-0.5, -1.5], [-1.0, -2.0, -3.0]], act)
    assert out.tolist() == [[0, 0, -0.5, -1.5], [-1.0, -2.0, -3.0, 0]]
    with pytest.raises(ValueError, match="row 1: 2 values for 3 response tokens"):
        action_values([[-0.5, -1.5], [-1.0, -2.0]], act)


def test_trim_padding_cuts_shared_padding_only():
    ids, attn, act = make_sequences([[1, 2], [3]], [[4], [5, 6]], pad_id=0)
    wide = {"input_ids": torch.nn.functional.pad(ids, (0, 3)), "attention_mask": torch.nn.functional.pad(attn, (0, 3)),
            "action_mask": torch.nn.functional.pad(act, (0, 3)), "scores": torch.tensor([1.0, 2.0])}
    out = trim_padding(wide)
    assert out["input_ids"].tolist() == ids.tolist() and out["attention_mask"].tolist() == attn.tolist()
    assert out["action_mask"].tolist() == act.tolist()
    assert out["scores"].tolist() == [1.0, 2.0]


def test_sequence_logprobs_match_unpadded_forward(tiny_model_dir):
    model = load_policy(tiny_model_dir).eval()
    prompts, responses = [[5, 6, 7, 8], [9, 10]], [[11, 12], [13, 14, 15, 16]]
    ids, attn, act = make_sequences(prompts, responses, pad_id=0)
    with torch.no_grad():
        batched = sequence_logprobs(model, ids, attn)
        for b, (p, r) in enumerate(zip(prompts, responses)):
            seq = torch.tensor([p + r])
            logp = torch.log_softmax(model(seq).logits[0].float(), -1)
            want = [logp[len(p) - 1 + i, tok].item() for i, tok in enumerate(r)]
            got = batched[b][act[b].bool()].tolist()
            assert got == pytest.approx(want, abs=1e-5)


def test_logprobs_from_the_first_action_on_equal_the_full_head(tiny_model_dir):
    """With action_mask the LM head skips the prompt positions: the same log-probs and entropy where actions are."""
    model = load_policy(tiny_model_dir).eval()
    prompts, responses = [[5, 6, 7, 8, 9, 10], [9, 10, 11]], [[11, 12], [13, 14, 15, 16]]
    ids, attn, act = make_sequences(prompts, responses, pad_id=0)
    with torch.no_grad():
        full, full_ent = sequence_logprobs(model, ids, attn, with_entropy=True)
        cut, cut_ent = sequence_logprobs(model, ids, attn, with_entropy=True, action_mask=act)
    assert cut.shape == full.shape and cut_ent.shape == full_ent.shape
    where = act.bool()
    assert torch.allclose(cut[where], full[where], atol=1e-5) and torch.allclose(cut_ent[where], full_ent[where], atol=1e-5)
    first = 2  # row 1's prompt has 3 tokens: its first action is at position 2
    assert (cut[:, :first] == 0).all() and not (full[:, :first] == 0).all()


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_row_loss_weights_rebuild_the_batch_loss(agg):
    loss, mask = torch.randn(3, 6), torch.tensor([[1, 1, 0, 0, 0, 0], [0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 0, 0]])
    w = row_loss_weights(mask, agg)
    rebuilt = sum(w[b] * aggregate(loss[b : b + 1], mask[b : b + 1], agg) for b in range(3))
    assert rebuilt.item() == pytest.approx(aggregate(loss, mask, agg).item(), abs=1e-6)
    assert w[2] == 0  # a row without response tokens adds nothing
    assert w.tolist() == pytest.approx([2 / 7, 5 / 7, 0] if agg == "token_mean" else [0.5, 0.5, 0])


@pytest.mark.parametrize("agg", ["token_mean", "seq_mean_token_mean"])
def test_padding_free_rows_give_the_padded_batch_gradient(tiny_model_dir, agg):
    """learner.padding_free: rows one at a time, cut to their own length, losses weighted by row_loss_weights: the
    gradient of the padded micro-batch (whose rows differ in length by 5 tokens), not an approximation of it."""
    ids, attn, act = make_sequences([[5, 6, 7, 8, 9, 10, 11], [9, 10], [12, 13, 14]], [[11, 12], [13, 14, 15, 16], [20]],
                                    pad_id=0)
    g = torch.Generator().manual_seed(0)
    batch = {"input_ids": ids, "attention_mask": attn, "action_mask": act,
             "old_logprobs": -torch.rand(act.shape, generator=g) - 3, "advantages": torch.randn(act.shape, generator=g)}
    ppo, learner = PPOConfig(loss_agg=agg), LearnerConfig()

    def grads(pieces):
        model = load_policy(tiny_model_dir)
        for piece, weight in pieces:
            (actor_loss(model, trim_padding(piece), ppo, learner)[0] * weight).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    padded = grads([(batch, 1.0)])
    shares = row_loss_weights(act, agg).tolist()
    rows = grads([({k: v[b : b + 1] for k, v in batch.items()}, shares[b]) for b in range(3)])
    assert padded.abs().max() > 1e-3
    assert torch.allclose(rows, padded, atol=1e-6, rtol=1e-4)
    other = row_loss_weights(act, "seq_mean_token_mean" if agg == "token_mean" else "token_mean").tolist()
    wrong = grads([({k: v[b : b + 1] for k, v in batch.items()}, other[b]) for b in range(3)])
    assert not torch.allclose(wrong, padded, atol=1e-6, rtol=1e-4)  # the weights matter: the other rule's are wrong


def test_compute_targets_hand_values():
    # One row: prompt 2 tokens, response 2 tokens -> action positions 1 and 2 of T=3.
    mask = torch.tensor([[0, 1, 1]])
    logp = torch.tensor([[0.0, -1.0, -2.0]])
    ref = torch.tensor([[0.0, -1.5, -2.0]])
    values = torch.zeros(1, 3)
    cfg = PPOConfig(reward_norm="none", whiten_advantages=False, gamma=1.0, lam=1.0)
    t = compute_targets(torch.tensor([2.0]), logp, ref, values, mask, cfg, kl_coef=0.1, moments=None)
    # rewards: token 1: -0.1 * 0.5 = -0.05; token 2: KL 0 + score 2.0
    assert t.rewards.tolist()[0] == pytest.approx([0.0, -0.05, 2.0])
    assert t.advantages.tolist()[0] == pytest.approx([0.0, 1.95, 2.0])
    assert t.returns.tolist()[0] == pytest.approx([0.0, 1.95, 2.0])
    assert mean_sequence_kl(t.kl, mask) == pytest.approx(0.5)


def test_compute_targets_clips_the_normalised_score():
    mask = torch.ones(2, 2)
    z = torch.zeros(2, 2)
    cfg = PPOConfig(reward_norm="none", reward_clip=0.8, whiten_advantages=False)
    t = compute_targets(torch.tensor([5.0, -5.0]), z, z, z, mask, cfg, kl_coef=0.0, moments=None)
    assert t.scores.tolist() == pytest.approx([0.8, -0.8])


def test_iteration_metrics_by_hand():
    from rlhf_ray.ppo.metrics import iteration_metrics

    mask = torch.tensor([[0, 1, 1], [0, 1, 0]])
    returns = torch.tensor([[9.0, 1.0, 2.0], [9.0, 3.0, 9.0]])
    stats = [{"policy_loss": 1.0, "ppo_steps": 2}, {"policy_loss": 3.0, "ppo_steps": 2}]
    row = iteration_metrics(torch.tensor([1.0, 3.0]), [2, 4], ["stop", "length"], kl=0.5, kl_coef=0.1, returns=returns,
                            action_mask=mask, learner_stats=stats, seconds={"rollout": 2.0, "learn": 4.0},
                            learn_tokens=20.0, buffer_rows=1)
    assert row["reward/mean"] == 2.0 and row["reward/std"] == pytest.approx(2**0.5)
    assert row["response/length"] == 3.0 and row["response/stop_frac"] == 0.5
    assert row["return/mean"] == 2.0  # (1 + 2 + 3) / 3 response tokens
    assert row["ppo/policy_loss"] == 2.0 and row["ppo/ppo_steps"] == 2
    assert row["buffer/rows"] == 1 and row["buffer/dropped"] == 1
    assert row["perf/rollout_tokens_per_s"] == 3.0 and row["perf/learn_tokens_per_s"] == 5.0
    assert row["time/rollout_s"] == 2.0 and row["kl/mean"] == 0.5 and row["kl/coef"] == 0.1
