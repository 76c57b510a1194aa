"""Rollout engines: vLLM generations and log-probs agree with HF transformers on the same weights, live weight
updates take effect, and the HF fallback behaves the same. One vLLM engine is started for the whole module."""

import getpass
import logging
import os
import sys
import tempfile

import pytest
import torch

from rlhf_ray.models import load_policy, load_tokenizer
from rlhf_ray.rollout import Rollouts, SamplingParams, concat, make_engine
from rlhf_ray.rollout.hf_engine import HFEngine
from rlhf_ray.weight_codec import pack_state_dict, unpack_state_dict

# float32 on both sides; the kernels differ (vLLM CPU attention vs HF eager), so not bit-equal.
LOGPROB_ATOL = 1e-4
TEXTS = ["Hello there, how are you?", "What is the capital of France?", "hi", "Tell me a long story about a cat."]


@pytest.fixture(scope="module")
def tok(tiny_model_dir):
    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="module")
def prompts(tok):
    """Chat-formatted prompts of different lengths (left padding matters for the HF engine)."""
    return [tok.apply_chat_template([{"role": "user", "content": t}], add_generation_prompt=True, tokenize=True,
                                    return_dict=False) for t in TEXTS]


@pytest.fixture(scope="module")
def hf_model(tiny_model_dir):
    return load_policy(tiny_model_dir).eval()


@pytest.fixture(scope="module")
def base_weights(hf_model):
    return {k: v.clone() for k, v in hf_model.state_dict().items()}


@pytest.fixture(scope="module")
def vllm_engine(tiny_model_dir, tmp_path_factory):
    pytest.importorskip("vllm")
    run = tmp_path_factory.mktemp("vllm_run")
    with pytest.MonkeyPatch.context() as mp:
        # Keep the JIT-compiled sampler kernel in the usual cache across sessions, not in this run's TMPDIR.
        default_inductor = os.path.join(tempfile.gettempdir(), f"torchinductor_{getpass.getuser()}")
        mp.setenv("TORCHINDUCTOR_CACHE_DIR", os.environ.get("TORCHINDUCTOR_CACHE_DIR", default_inductor))
        # vLLM writes IPC sockets under TMPDIR and caches under VLLM_CACHE_ROOT: keep both in this run.
        (run / "tmp").mkdir()
        mp.setenv("TMPDIR", str(run / "tmp"))
        mp.setattr(tempfile, "tempdir", str(run / "tmp"))
        mp.setenv("VLLM_CACHE_ROOT", str(run / "vllm_cache"))
        mp.setenv("VLLM_CPU_KVCACHE_SPACE", "1")
        engine = make_engine("vllm", tiny_model_dir, dtype="float32", max_model_len=512, seed=0)
        yield engine


@pytest.fixture(scope="module")
def hf_engine(tiny_model_dir):
    return HFEngine(tiny_model_dir)


@pytest.fixture
def restore_weights(vllm_engine, hf_model, base_weights):
    """Tests that load other weights get the original ones back afterwards, in vLLM and in the HF model."""
    yield
    vllm_engine.load_weights(base_weights)
    hf_model.load_state_dict(base_weights)


GREEDY = SamplingParams(temperature=0, max_tokens=16)


def hf_greedy(model, prompts, max_tokens=16):
    """The reference: plain transformers generate, one unpadded prompt at a time."""
    outs = []
    for p in prompts:
        ids = torch.tensor([p])
        seq = model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=max_tokens)
        outs.append(seq[0, len(p):].tolist())
    return outs


def teacher_forced_logprobs(model, prompt, response, temperature=1.0):
    """log_softmax(logits / T) of each response token given everything before it."""
    ids = torch.tensor([prompt + response])
    with torch.no_grad():
        logits = model(ids).logits[0, len(prompt) - 1 : -1].float() / temperature
    return logits.log_softmax(-1).gather(-1, torch.tensor(response)[:, None])[:, 0]


def noisy(weights, seed, scale=0.02):
    g = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=g) for k, v in weights.items()}


def sharp(weights, factor=20.0):
    """Scale the LM head: peaked next-token distributions, so log-prob mismatches cannot hide near uniform."""
    return {k: v * factor if k == "lm_head.weight" else v for k, v in weights.items()}


def eos_always(weights, eos_id):
    """Weights whose every next token is EOS: blocks write nothing, all embeddings equal, LM head favours EOS."""
    w = dict(weights)
    for k in w:
        if k.endswith(("o_proj.weight", "down_proj.weight")):
            w[k] = torch.zeros_like(w[k])
    e = torch.randn(w["model.embed_tokens.weight"].shape[1], generator=torch.Generator().manual_seed(0))
    w["model.embed_tokens.weight"] = e.expand_as(w["model.embed_tokens.weight"]).clone()
    head = w["lm_head.weight"].clone()
    head[eos_id] = e
    w["lm_head.weight"] = head
    return w


def test_pack_unpack_round_trip():
    a = torch.randn(4, 3)
    sd = {"a": a, "tied": a, "half": torch.randn(2, 5).bfloat16(), "ints": torch.arange(6), "t": a.t()}
    out = unpack_state_dict(pack_state_dict(sd))
    assert set(out) == set(sd)
    for k, v in sd.items():
        assert out[k].dtype == v.dtype and torch.equal(out[k], v)


def test_concat_offsets_prompt_index():
    a, b = Rollouts(), Rollouts()
    a.append(0, [1], [2], [-0.1], "x", "stop")
    a.append(0, [1], [3], [-0.2], "y", "length")
    b.append(0, [4], [5], [-0.3], "z", "stop")
    both = concat([a, b])
    assert len(both) == 3 and both.prompt_index == [0, 0, 1] and both.prompt_ids == [[1], [1], [4]]


def test_vllm_greedy_equals_hf_generate(vllm_engine, hf_model, prompts):
    out = vllm_engine.generate(prompts, GREEDY)
    assert out.prompt_index == [0, 1, 2, 3] and out.prompt_ids == prompts
    assert out.response_ids == hf_greedy(hf_model, prompts)
    assert all(len(r) == 16 for r in out.response_ids) and set(out.finish_reasons) == {"length"}


def test_weight_update_changes_and_restores_outputs(vllm_engine, hf_model, base_weights, prompts, restore_weights):
    before = vllm_engine.generate(prompts, GREEDY).response_ids
    new = noisy(base_weights, seed=1)
    vllm_engine.load_weights(new)
    hf_model.load_state_dict(new)
    after = vllm_engine.generate(prompts, GREEDY).response_ids
    assert after != before
    assert after == hf_greedy(hf_model, prompts)
    vllm_engine.load_weights_blob(pack_state_dict(base_weights))  # the byte path, as a Ray actor receives it
    assert vllm_engine.generate(prompts, GREEDY).response_ids == before


def test_n_samples_per_prompt(vllm_engine, prompts, tok):
    out = vllm_engine.generate(prompts[:2], SamplingParams(n=3, max_tokens=8, seed=3))
    assert len(out) == 6 and out.prompt_index == [0, 0, 0, 1, 1, 1] and len(out.texts) == 6
    assert out.prompt_ids == [prompts[0]] * 3 + [prompts[1]] * 3
    assert all(len(lp) == len(r) for lp, r in zip(out.response_logprobs, out.response_ids))
    assert all(x <= 0 for lp in out.response_logprobs for x in lp)
    # A random model says EOS now and then (seed 3 happens to once): "stop" exactly when it ends with EOS.
    for r, reason in zip(out.response_ids, out.finish_reasons):
        assert (reason, len(r)) == (("stop", len(r)) if r[-1] == tok.eos_token_id else ("length", 8))
    assert len({tuple(r) for r in out.response_ids}) == 6  # samples differ, within and across prompts
    again = vllm_engine.generate(prompts[:2], SamplingParams(n=3, max_tokens=8, seed=3))
    assert again.response_ids == out.response_ids  # seeded
    unseeded = [vllm_engine.generate(prompts[:1], SamplingParams(max_tokens=8)).response_ids for _ in range(2)]
    assert unseeded[0] != unseeded[1]  # no seed: fresh samples each call


@pytest.mark.parametrize("name", ["vllm", "hf"])
def test_prompt_seeds_make_a_prompts_samples_independent_of_its_batch(name, vllm_engine, hf_engine, prompts):
    # SEAM's degrader builds a prompt's worse answers once, whichever prompts share its batch.
    engine = {"vllm": vllm_engine, "hf": hf_engine}[name]
    sampling = SamplingParams(n=2, max_tokens=6, temperature=1.0)
    both = engine.generate(prompts[:2], sampling, prompt_seeds=[5, 9])
    alone = engine.generate(prompts[1:2], sampling, prompt_seeds=[9])
    assert both.response_ids[2:] == alone.response_ids and both.prompt_index == [0, 0, 1, 1]
    assert engine.generate(prompts[1:2], sampling, prompt_seeds=[10]).response_ids != alone.response_ids


@pytest.mark.parametrize("name", ["vllm", "hf"])
def test_answer_logprobs_are_the_teacher_forced_log_probs(name, vllm_engine, hf_engine, hf_model, base_weights,
                                                         prompts):
    engine = {"vllm": vllm_engine, "hf": hf_engine}[name]
    answers = [[5, 17, 3, 9], [11], [], [7, 7, 40, 2, 19, 23]]
    pair_prompts = [prompts[0], prompts[1], prompts[2], prompts[0]]
    got = engine.answer_logprobs(pair_prompts, answers)
    assert [len(g) for g in got] == [4, 1, 0, 6]
    hf_model.load_state_dict(base_weights)
    for prompt, answer, lps in zip(pair_prompts, answers, got):
        if not answer:
            continue
        ids = torch.tensor([prompt + answer])
        with torch.no_grad():
            ref = hf_model(ids).logits[0, len(prompt) - 1:-1].float().log_softmax(-1)
        ref = ref.gather(-1, torch.tensor(answer)[:, None]).squeeze(-1)
        assert torch.allclose(torch.tensor(lps), ref, atol=2e-3), (name, lps, ref.tolist())


@pytest.mark.parametrize("temperature", [1.0, 0.5])
def test_vllm_logprobs_are_temperature_1_teacher_forced(vllm_engine, hf_model, base_weights, prompts,
                                                        temperature, restore_weights):
    """vLLM reports 'raw_logprobs': the model's own distribution, whatever temperature it sampled at."""
    weights = sharp(base_weights)
    vllm_engine.load_weights(weights)
    hf_model.load_state_dict(weights)
    out = vllm_engine.generate(prompts, SamplingParams(n=2, max_tokens=12, temperature=temperature, seed=0))
    for prompt, response, lps in zip(out.prompt_ids, out.response_ids, out.response_logprobs):
        ref = teacher_forced_logprobs(hf_model, prompt, response)
        torch.testing.assert_close(torch.tensor(lps), ref, atol=LOGPROB_ATOL, rtol=0)
    if temperature != 1.0:  # and not the tempered distribution that was sampled from
        p, r = out.prompt_ids[0], out.response_ids[0]
        tempered = teacher_forced_logprobs(hf_model, p, r, temperature)
        assert (tempered - torch.tensor(out.response_logprobs[0])).abs().max() > 0.1


def test_stop_at_eos(vllm_engine, hf_engine, hf_model, base_weights, prompts, tok, restore_weights):
    weights = eos_always(base_weights, tok.eos_token_id)
    vllm_engine.load_weights(weights)
    hf_engine.load_weights(weights)
    try:
        for out in (vllm_engine.generate(prompts, GREEDY), hf_engine.generate(prompts, GREEDY)):
            assert out.response_ids == [[tok.eos_token_id]] * len(prompts)  # EOS is kept, as the last token
            assert out.finish_reasons == ["stop"] * len(prompts) and out.texts == [""] * len(prompts)
            assert all(len(lp) == 1 and lp[0] > -1e-3 for lp in out.response_logprobs)
    finally:
        hf_engine.load_weights(base_weights)


def test_hf_engine_matches_vllm(vllm_engine, hf_engine, prompts):
    v, h = vllm_engine.generate(prompts, GREEDY), hf_engine.generate(prompts, GREEDY)
    assert h.response_ids == v.response_ids and h.prompt_index == v.prompt_index
    assert h.finish_reasons == v.finish_reasons
    for a, b in zip(h.response_logprobs, v.response_logprobs):
        torch.testing.assert_close(torch.tensor(a), torch.tensor(b), atol=LOGPROB_ATOL, rtol=0)


def test_hf_engine_samples(hf_engine, hf_model, prompts):
    out = hf_engine.generate(prompts[:2], SamplingParams(n=3, max_tokens=8, temperature=0.7, seed=1))
    assert len(out) == 6 and out.prompt_index == [0, 0, 0, 1, 1, 1]
    assert out.prompt_ids == [prompts[0]] * 3 + [prompts[1]] * 3
    assert all(len(lp) == len(r) == 8 for lp, r in zip(out.response_logprobs, out.response_ids))
    assert out.finish_reasons == ["length"] * 6
    for prompt, response, lps in zip(out.prompt_ids, out.response_ids, out.response_logprobs):
        torch.testing.assert_close(torch.tensor(lps), teacher_forced_logprobs(hf_model, prompt, response),
                                   atol=LOGPROB_ATOL, rtol=0)
    again = hf_engine.generate(prompts[:2], SamplingParams(n=3, max_tokens=8, temperature=0.7, seed=1))
    assert again.response_ids == out.response_ids
    unseeded = [hf_engine.generate(prompts[:1], SamplingParams(max_tokens=8)).response_ids for _ in range(2)]
    assert unseeded[0] != unseeded[1]  # no seed: fresh samples each call
    greedy = hf_engine.generate(prompts[:2], SamplingParams(n=2, temperature=0, max_tokens=8)).response_ids
    assert greedy[0] == greedy[1] and greedy[2] == greedy[3]  # n > 1 is allowed when greedy, as in vLLM


def test_make_engine_hf_warns(tiny_model_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="rlhf_ray.rollout"):
        engine = make_engine("hf", tiny_model_dir)
    assert isinstance(engine, HFEngine)
    assert any(r.levelno == logging.WARNING and r.name == "rlhf_ray.rollout" for r in caplog.records)


def test_make_engine_errors(tiny_model_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "vllm", None)  # makes `import vllm` fail
    with pytest.raises(ImportError, match="rollout engine 'hf'"):
        make_engine("vllm", tiny_model_dir)
    with pytest.raises(ValueError, match="unknown rollout engine"):
        make_engine("sglang", tiny_model_dir)
