import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification

from rlhf_ray.data.tokenize import encode_pairs, encode_sequence, pad_batch, render_prompt
from rlhf_ray.models import (
    load_critic,
    load_policy,
    load_reference,
    load_reward_model,
    load_tokenizer,
    reward_model_from_lm,
    sequence_rewards,
    token_values,
)


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def rm_dir(tiny_model_dir, tok, tmp_path_factory):
    torch.manual_seed(0)
    model = reward_model_from_lm(tiny_model_dir, pad_token_id=tok.pad_token_id)
    torch.nn.init.normal_(model.score.weight, std=1.0)  # a head that is not ~0, so differences show
    out = tmp_path_factory.mktemp("rm") / "rm"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


def test_tiny_model_is_a_normal_hf_llama(tiny_model_dir, tok):
    cfg = AutoConfig.from_pretrained(tiny_model_dir)
    assert cfg.model_type == "llama" and cfg.hidden_size // cfg.num_attention_heads == 64  # vLLM CPU head sizes
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    ids = tok("Hello there, how are you?", return_tensors="pt").input_ids
    assert model(ids).logits.shape == (1, ids.shape[1], len(tok))
    assert tok.decode(ids[0]) == "Hello there, how are you?"  # byte-level: round-trips any text
    assert tok.eos_token == "<|im_end|>" and tok.pad_token_id != tok.eos_token_id


def test_chat_template_is_respected(tok):
    text = render_prompt(tok, "\n\nHuman: hi\n\nAssistant: yo\n\nHuman: bye\n\nAssistant:", "hh_dialogue")
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\nyo<|im_end|>\n<|im_start|>user\nbye<|im_end|>\n<|im_start|>assistant\n"
    assert render_prompt(tok, "raw prompt", "plain", use_chat_template=False) == "raw prompt"


def test_encode_sequence_truncates_and_keeps_eos(tok):
    prompt, response = "word " * 300, "answer " * 100
    ids, cut = encode_sequence(tok, prompt, response, max_len=64, max_response_len=16)
    assert len(ids) == 64 and ids[-1] == tok.eos_token_id and cut == ["response", "prompt"]
    full_prompt = tok(prompt, add_special_tokens=False).input_ids
    assert ids[:48] == full_prompt[-48:]  # the end of the prompt is kept
    ids, cut = encode_sequence(tok, "short", "ok", 64, 16)
    assert cut == [] and ids[-1] == tok.eos_token_id


def test_encode_pairs_counts_overlong(tok):
    rows = [{"prompt": "p " * 200, "chosen": "a", "rejected": "b", "format": "plain"},
            {"prompt": "p", "chosen": "a", "rejected": "b", "format": "plain"}]
    kept, stats = encode_pairs(tok, rows, 32, 8, on_overlong="skip")
    assert [k["index"] for k in kept] == [1] and sum(stats.skipped.values()) == 1
    kept, stats = encode_pairs(tok, rows, 32, 8, on_overlong="truncate")
    assert len(kept) == 2 and stats.truncated["prompt"] == 1


def test_reward_model_reloads_with_transformers_and_gives_the_same_rewards(rm_dir, tok):
    ours = load_reward_model(rm_dir)
    theirs = AutoModelForSequenceClassification.from_pretrained(rm_dir).eval()
    ids, mask = pad_batch([tok("a good answer").input_ids + [tok.eos_token_id], tok("bad").input_ids + [tok.eos_token_id]],
                          tok.pad_token_id)
    r = sequence_rewards(ours, ids, mask)
    # transformers' own pooling (last non-pad token) must agree with our mask-based reading here.
    assert torch.allclose(r, theirs(input_ids=ids, attention_mask=mask).logits.squeeze(-1), atol=1e-5)
    assert not any(p.requires_grad for p in ours.parameters())


def test_reward_is_read_at_the_last_real_token_whatever_the_padding(rm_dir, tok):
    model = load_reward_model(rm_dir)
    seq = tok("some response text").input_ids + [tok.eos_token_id]
    n = len(seq)
    right = torch.tensor([seq + [tok.pad_token_id] * 3])
    left = torch.tensor([[tok.pad_token_id] * 3 + seq])
    r_right = sequence_rewards(model, right, torch.tensor([[1] * n + [0] * 3]))
    r_left = sequence_rewards(model, left, torch.tensor([[0] * 3 + [1] * n]))
    r_none = sequence_rewards(model, torch.tensor([seq]), torch.ones(1, n, dtype=torch.long))
    assert torch.allclose(r_right, r_none, atol=1e-5) and torch.allclose(r_left, r_none, atol=1e-5)
    # pad == eos (SmolLM2) must not move the read position: use eos as the padding id.
    eos_padded = torch.tensor([seq + [tok.eos_token_id] * 3])
    assert torch.allclose(sequence_rewards(model, eos_padded, torch.tensor([[1] * n + [0] * 3])), r_none, atol=1e-5)
    # And the read position matters: without the last token the reward changes.
    assert not torch.allclose(sequence_rewards(model, torch.tensor([seq[:-1]]), torch.ones(1, n - 1, dtype=torch.long)), r_none)


def test_critic_starts_from_the_rm_and_reads_every_token(rm_dir, tok):
    critic = load_critic(rm_dir)
    assert all(p.requires_grad for p in critic.parameters())
    seq = torch.tensor([tok("value of each token").input_ids])
    mask = torch.ones_like(seq)
    values = token_values(critic, seq, mask)
    assert values.shape == seq.shape
    assert torch.equal(critic(seq, mask), values)  # called, as a DeepSpeed engine calls it: the same values
    assert torch.allclose(values[:, -1], sequence_rewards(critic, seq, mask), atol=1e-5)


def test_policy_and_frozen_reference(tiny_model_dir):
    policy, ref = load_policy(tiny_model_dir), load_reference(tiny_model_dir)
    assert all(p.requires_grad for p in policy.parameters())
    assert not any(p.requires_grad for p in ref.parameters()) and not ref.training


def test_a_classifier_with_two_labels_is_refused(tiny_model_dir, tmp_path):
    AutoModelForSequenceClassification.from_pretrained(tiny_model_dir, num_labels=2).save_pretrained(tmp_path)
    with pytest.raises(ValueError, match="num_labels=1"):
        load_reward_model(tmp_path)


def test_score_sequences_batches_by_length_and_keeps_input_order(rm_dir, tok):
    from rlhf_ray.models import score_sequences

    model = load_reward_model(rm_dir)
    g = torch.Generator().manual_seed(3)
    seqs = [torch.randint(5, 200, (int(n),), generator=g).tolist() for n in torch.randint(3, 40, (11,), generator=g)]
    one_by_one = torch.cat([score_sequences(model, [s], tok.pad_token_id) for s in seqs])
    batched = score_sequences(model, seqs, tok.pad_token_id, batch_size=4)
    assert torch.allclose(batched, one_by_one, atol=1e-5)
    assert len(set(batched.tolist())) == len(seqs)  # distinct rewards: a permutation would be caught
