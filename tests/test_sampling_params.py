"""SamplingParams.reshaping: which sampling settings make the samples other than the policy's own."""

from rlhf_ray.rollout.types import SamplingParams


def test_plain_sampling_is_the_policy():
    assert SamplingParams(n=4, max_tokens=96, seed=3).reshaping() == []


def test_each_departure_is_named():
    moss = SamplingParams(temperature=0.8, top_p=0.9, repetition_penalty=1.1)
    assert moss.reshaping() == ["temperature 0.8", "top-p 0.9", "repetition penalty 1.1"]
    assert SamplingParams(top_k=50).reshaping() == ["top-k 50"]
