"""Precision follows the hardware: the resolution rule on injected CPU flags, the warning, autocast."""

import logging

import pytest
import torch

from rlhf_ray import device
from rlhf_ray.device import Precision, announce_precision, autocast, resolve_precision

ZEN3 = {"fpu", "sse2", "avx", "avx2", "fma"}  # AVX2 only: bf16 emulated
SAPPHIRE_RAPIDS = {"avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}


@pytest.mark.parametrize("flags, mode", [
    ({"avx2", "avx512f", "avx512_bf16"}, "bf16"),
    ({"avx2", "amx_tile", "amx_bf16"}, "bf16"),
    (SAPPHIRE_RAPIDS, "bf16"),
    (ZEN3, "none"),
    ({"avx2", "avx512f", "avx512bw"}, "none"),  # AVX-512 without its bf16 extension
    (set(), "none"),
    (None, "none"),  # unknown CPU: never assume
])
def test_auto_is_bf16_only_where_the_cpu_has_native_bf16(flags, mode):
    p = resolve_precision("auto", device="cpu", flags=flags)
    assert p.mode == mode and not p.emulated
    assert p.engine_dtype == ("bfloat16" if mode == "bf16" else "float32")


def test_the_reason_names_the_flags():
    assert resolve_precision("auto", device="cpu", flags=ZEN3).reason.endswith("fp32: this CPU has no native bf16 (flags: avx2)")
    assert "avx512_bf16" in resolve_precision("auto", device="cpu", flags=SAPPHIRE_RAPIDS).reason
    assert "unknown" in resolve_precision("auto", device="cpu", flags=None).reason


def test_explicit_choices_are_kept_and_emulated_bf16_is_marked():
    slow = resolve_precision("bf16", device="cpu", flags=ZEN3)
    assert slow.mode == "bf16" and slow.emulated and "emulated" in slow.reason
    assert not resolve_precision("bf16", device="cpu", flags=SAPPHIRE_RAPIDS).emulated
    assert resolve_precision("none", device="cpu", flags=SAPPHIRE_RAPIDS).mode == "none"
    # A weight dtype follows the same rule.
    assert resolve_precision("auto", device="cpu", flags=ZEN3, knob="rollout.dtype").engine_dtype == "float32"
    assert resolve_precision("bfloat16", device="cpu", flags=ZEN3, knob="rollout.dtype").emulated
    with pytest.raises(ValueError, match="rollout.dtype='half'"):
        resolve_precision("half", knob="rollout.dtype")


def test_cuda_follows_the_device_bf16_support():
    assert resolve_precision("auto", device="cuda", cuda_bf16=True).mode == "bf16"
    assert resolve_precision("auto", device="cuda", cuda_bf16=False).mode == "none"
    assert resolve_precision("bf16", device="cuda", cuda_bf16=False).emulated


def test_the_flags_switch_hides_native_bf16(monkeypatch):
    monkeypatch.setenv("RLHF_RAY_DEVICE", "cpu")
    monkeypatch.setenv(device.FLAGS_ENV, "avx2 fma")
    assert resolve_precision("auto", device="cpu").mode == "none"
    monkeypatch.setenv(device.FLAGS_ENV, "avx512_bf16")
    assert resolve_precision("auto", device="cpu").mode == "bf16"


def test_explicit_bf16_on_a_non_native_cpu_runs_with_one_warning(monkeypatch, caplog):
    monkeypatch.setenv(device.FLAGS_ENV, "avx2")
    monkeypatch.setenv("RLHF_RAY_DEVICE", "cpu")
    caplog.set_level(logging.INFO, logger="rlhf_ray")
    assert announce_precision("bf16").emulated
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "emulated" in warnings[0].getMessage()
    caplog.clear()
    assert announce_precision("auto").mode == "none"
    assert [r.getMessage() for r in caplog.records] == ["model.mixed_precision=auto -> fp32: this CPU has no native bf16 (flags: avx2)"]


@pytest.mark.parametrize("flags, dtype", [("avx2", torch.float32), ("avx512_bf16", torch.bfloat16)])
def test_autocast_auto_follows_the_flags(monkeypatch, flags, dtype):
    monkeypatch.setenv(device.FLAGS_ENV, flags)
    monkeypatch.setenv("RLHF_RAY_DEVICE", "cpu")
    with autocast("auto"):
        assert torch.nn.Linear(4, 4)(torch.ones(2, 4)).dtype == dtype


def test_on_a_gpu_machine_the_driver_leaves_the_decision_to_each_actor(monkeypatch):
    monkeypatch.setenv("RLHF_RAY_DEVICE", "cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda **_: pytest.fail("the driver probed the GPU"))
    assert announce_precision("auto").mode == device.PER_GPU
    assert announce_precision("none").mode == "none"


def test_the_engines_logprobs_stand_in_for_the_learners_only_when_both_compute_in_fp32():
    fp32, bf16 = Precision("none", "fp32"), Precision("bf16", "bf16")
    assert device.engine_logprobs_match(fp32, fp32) == (True, "learner and engine both compute in fp32")
    match, why = device.engine_logprobs_match(bf16, fp32)  # the quickstart on a native-bf16 CPU
    assert not match and why == "the learner computes in bf16 and the engine holds float32"
    assert not device.engine_logprobs_match(fp32, bf16)[0]  # a bf16 engine rounds its own way
    assert not device.engine_logprobs_match(Precision(device.PER_GPU, "per GPU"), fp32)[0]  # unknown until each GPU decides
