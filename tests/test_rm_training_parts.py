"""The pieces RM training is built from: the micro-batch loss, denoising from strength, the eval metrics."""

import pytest
import torch

from rlhf_ray.algorithms import bradley_terry_loss, contrastive_inputs, simcse_loss
from rlhf_ray.config import ContrastiveSection, RMConfig
from rlhf_ray.data import DataError
from rlhf_ray.data.tokenize import pad_batch
from rlhf_ray.models import add_layer_dropout, load_tokenizer, reward_model_from_lm, sequence_rewards
from rlhf_ray.training.rm_denoise import apply_strength
from rlhf_ray.training.rm_eval import rm_eval_metrics
from rlhf_ray.training.rm_loss import RMTrainModule, contrastive_settings, rm_micro_batch_loss
from rlhf_ray.training.strength_report import pair_id


@pytest.fixture(scope="module")
def rm(tiny_model_dir):
    tok = load_tokenizer(tiny_model_dir)
    torch.manual_seed(0)
    return reward_model_from_lm(tiny_model_dir, pad_token_id=tok.pad_token_id), tok.pad_token_id


def micro_batch(n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    seq = lambda: torch.randint(5, 400, (int(torch.randint(4, 12, (1,), generator=g)),), generator=g).tolist()  # noqa: E731
    return [{"chosen_ids": seq(), "rejected_ids": seq(), "margin": 0.5 * i - 0.5, "alpha": 0.1 * (i % 2)} for i in range(n)]


# ---------------------------------------------------------------- contrastive settings and dropout views


def test_contrastive_settings_take_the_preset_and_the_overrides():
    assert contrastive_settings(ContrastiveSection()) is None
    diff = contrastive_settings(ContrastiveSection(method="swav_diff"))
    assert (diff.method, diff.mode, diff.n_prototypes, diff.beta) == ("swav", "difference", 20, 0.5)
    simcse = contrastive_settings(ContrastiveSection(method="simcse", beta=0.3, mode="difference"))
    assert (simcse.beta, simcse.mode, simcse.temperature, simcse.dropout) == (0.3, "difference", 0.05, 0.05)
    with pytest.raises(ValueError, match="SwAV setting"):
        contrastive_settings(ContrastiveSection(method="simcse", n_prototypes=8))


def test_layer_dropout_makes_two_views_in_training_only(tiny_model_dir, rm):
    model = reward_model_from_lm(tiny_model_dir)
    ids, mask = pad_batch([p["chosen_ids"] for p in micro_batch()], 0)
    model.train()
    assert torch.equal(sequence_rewards(model, ids, mask), sequence_rewards(model, ids, mask))  # no dropout of its own
    hooks = add_layer_dropout(model, 0.1)
    assert len(hooks) == model.config.num_hidden_layers
    assert not torch.allclose(sequence_rewards(model, ids, mask), sequence_rewards(model, ids, mask))
    model.eval()
    assert torch.equal(sequence_rewards(model, ids, mask), sequence_rewards(model, ids, mask))


# ---------------------------------------------------------------- the micro-batch loss


def test_bt_loss_uses_each_pairs_margin_and_alpha(rm):
    model, pad = rm
    model.eval()  # deterministic: compare with an independent computation
    micro = micro_batch()
    loss, stats = rm_micro_batch_loss(RMTrainModule(model), micro, pad, "cpu")
    chosen = torch.stack([sequence_rewards(model, torch.tensor([p["chosen_ids"]]), torch.ones(1, len(p["chosen_ids"]),
                                                                                                dtype=torch.long))[0] for p in micro])
    rejected = torch.stack([sequence_rewards(model, torch.tensor([p["rejected_ids"]]),
                                             torch.ones(1, len(p["rejected_ids"]), dtype=torch.long))[0] for p in micro])
    z = chosen - rejected - torch.tensor([p["margin"] for p in micro])
    alpha = torch.tensor([p["alpha"] for p in micro])
    expected = (-(1 - alpha) * torch.nn.functional.logsigmoid(z) - alpha * torch.nn.functional.logsigmoid(-z)).mean()
    assert loss.item() == pytest.approx(expected.item(), abs=1e-5)
    assert stats["train/accuracy"] == pytest.approx(((chosen > rejected).float().mean()).item())
    assert loss.item() != pytest.approx(bradley_terry_loss(chosen, rejected).item(), abs=1e-4)  # margins mattered


def test_simcse_loss_is_bt_over_both_views_plus_beta_times_cl(rm):
    model, pad = rm
    model.eval()  # both views identical: L_cl is then the SimCSE loss of identical views
    cfg = contrastive_settings(ContrastiveSection(method="simcse", beta=0.5))
    micro = micro_batch()
    loss, stats = rm_micro_batch_loss(RMTrainModule(model, cfg), micro, pad, "cpu", cfg)
    bt, _ = rm_micro_batch_loss(RMTrainModule(model), micro, pad, "cpu")
    ids, mask = pad_batch([p["chosen_ids"] for p in micro] + [p["rejected_ids"] for p in micro], pad)
    _, feats = sequence_rewards(model, ids, mask, return_features=True)
    h = contrastive_inputs(feats[:4], feats[4:], "response")
    assert stats["train/contrastive_loss"] == pytest.approx(simcse_loss(h, h, 0.05).item(), abs=1e-5)
    assert loss.item() == pytest.approx(bt.item() + 0.5 * stats["train/contrastive_loss"], abs=1e-5)


def test_swav_loss_trains_the_prototypes(rm):
    model, pad = rm
    model.train()
    cfg = contrastive_settings(ContrastiveSection(method="swav_diff", dropout=0.1))
    module = RMTrainModule(model, cfg)
    protos = module.prototypes
    assert protos.shape == (20, model.config.hidden_size)
    assert RMTrainModule(model, contrastive_settings(ContrastiveSection(method="simcse"))).prototypes is None
    loss, stats = rm_micro_batch_loss(module, micro_batch(), pad, "cpu", cfg)
    loss.backward()
    assert protos.grad is not None and protos.grad.abs().sum() > 0
    assert stats["train/contrastive_loss"] > 0 and stats["tokens"] > 0
    model.zero_grad()


# ---------------------------------------------------------------- denoising from strength


def rows_and_strength(mus):
    rows = [{"prompt": f"p{i}", "chosen": "good", "rejected": "bad", "file": "d.jsonl", "line": i + 1} for i in range(len(mus))]
    strength = {pair_id(r["prompt"], r["chosen"], r["rejected"]): {"strength_mean": m} for r, m in zip(rows, mus)}
    pairs = [{"chosen_ids": [i, 1], "rejected_ids": [i, 2], "index": i} for i in range(len(mus))]
    return rows, strength, pairs


def test_denoising_flips_bottom_q_and_sets_alpha_and_margin():
    mus = [3.0, -2.0, 0.5, -0.1, 1.0, 2.0, -4.0, 0.2, 0.3, 0.4]
    rows, strength, pairs = rows_and_strength(mus)
    rm = RMConfig(strength_file="s.jsonl", flip=True, flip_fraction=0.2, soft_label=True, adaptive_margin=True,
                  margin_scale=0.5, label_smoothing=0.05)
    out, counts = apply_strength(pairs, rows, rm, strength)
    flipped = [i for i, p in enumerate(out) if p["flipped"]]
    assert flipped == [1, 6]  # the two lowest strengths
    assert out[6]["chosen_ids"] == [6, 2] and out[6]["rejected_ids"] == [6, 1]
    assert out[0]["chosen_ids"] == [0, 1]
    # After the flip only pair 3 (mu -0.1) is still negative: it alone gets alpha; the rest the uniform 0.05.
    assert [p["alpha"] for p in out] == pytest.approx([0.05, 0.05, 0.05, 0.1, 0.05, 0.05, 0.05, 0.05, 0.05, 0.05])
    assert out[6]["margin"] == pytest.approx(2.0) and out[3]["margin"] == pytest.approx(-0.05)
    assert counts == {"flipped": 2, "soft_labelled": 1, "margin_mean": pytest.approx(0.5 * sum(abs(m) if m in (-2.0, -4.0)
                                                                                               else m for m in mus) / 10)}


def test_without_switches_strength_is_unused_and_missing_pairs_are_named():
    rows, strength, pairs = rows_and_strength([1.0, -1.0, 2.0])
    out, counts = apply_strength(pairs, rows, RMConfig(label_smoothing=0.1))
    assert counts == {} and all(p["alpha"] == 0.1 and p["margin"] == 0.0 for p in out)
    strength[pair_id("p1", "good", "bad")]["split"] = "eval"  # the ensemble never trained on it
    with pytest.raises(DataError, match=r"1 train pairs were eval pairs .*d.jsonl:2"):
        apply_strength(pairs, rows, RMConfig(strength_file="s.jsonl", flip=True), strength)
    del strength[pair_id("p1", "good", "bad")]["split"]
    del strength[pair_id("p2", "good", "bad")]
    with pytest.raises(DataError, match=r"1 of 3 train pairs .*d.jsonl:3"):
        apply_strength(pairs, rows, RMConfig(strength_file="s.jsonl", adaptive_margin=True), strength)


# ---------------------------------------------------------------- eval metrics


def test_eval_metrics_overall_confident_and_per_source():
    chosen = torch.tensor([1.0, 0.0, 2.0, -1.0])
    rejected = torch.tensor([0.0, 1.0, 1.0, 0.0])
    m = rm_eval_metrics(chosen, rejected, ["a", "a", "b", "b"], [2.0, -1.0, None, 0.5])
    assert m["eval/accuracy"] == 0.5 and m["eval/reward_gap"] == pytest.approx(0.0)
    # confident: pairs 0 and 3 (strength > 0); pair 2 has no strength and is counted as unannotated.
    assert m["eval/confident/accuracy"] == 0.5 and m["eval/confident/pairs"] == 2
    assert m["eval/confident/unannotated"] == 1
    assert m["eval/a/accuracy"] == 0.5 and m["eval/b/accuracy"] == 0.5 and m["eval/b/pairs"] == 2
    single = rm_eval_metrics(chosen, rejected, ["a"] * 4)
    assert not any(k.startswith("eval/a/") or "confident" in k for k in single)
