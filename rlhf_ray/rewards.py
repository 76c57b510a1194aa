"""Programmatic rewards (for tests, sanity runs and rule-based tasks): f(prompt_ids, response_ids, **kw) -> float."""

import importlib
from collections.abc import Callable
from functools import partial


def target_token_fraction(prompt_ids: list[int], response_ids: list[int], target_ids: list[int]) -> float:
    """Share of response tokens in target_ids: a reward a policy can only raise by learning."""
    targets = set(target_ids)
    return sum(t in targets for t in response_ids) / max(len(response_ids), 1)


def load_reward_function(spec: str, kwargs: dict | None = None) -> Callable[[list[int], list[int]], float]:
    """'package.module:name' -> the callable with its keyword arguments bound."""
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"reward.function={spec!r} must look like 'package.module:function'")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"reward.function={spec!r} cannot be loaded: {e}") from e
    return partial(fn, **(kwargs or {}))
