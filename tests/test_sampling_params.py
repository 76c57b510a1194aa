"""SamplingParams.departures_from_policy: which sampling settings make the samples other than the policy's own."""

from rlhf_ray.rollout.types import SamplingParams


def test_plain_sampling_is_the_policy():
    assert SamplingParams(n=4, max_tokens=96, seed=3).departures_from_policy() == []


def test_each_departure_is_named():
    moss = SamplingParams(temperature=0.8, top_p=0.9, repetition_penalty=1.1)
    assert moss.departures_from_policy() == ["temperature 0.8", "top-p 0.9", "repetition penalty 1.1"]
    assert SamplingParams(top_k=50).departures_from_policy() == ["top-k 50"]
    assert SamplingParams(top_k=0).departures_from_policy() == []  # vLLM: 0 is off, as -1
