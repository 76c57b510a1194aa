"""Name -> function registries, so configs pick an algorithm by name (as verl's core_algos does)."""

from collections.abc import Callable


class Registry(dict):
    """A dict of named functions with a decorator to fill it and an error that lists the choices."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable:
        def add(fn: Callable) -> Callable:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name] = fn
            return fn

        return add

    def get(self, name: str) -> Callable:  # type: ignore[override]
        if name not in self:
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of {sorted(self)}")
        return self[name]


ADVANTAGE_ESTIMATORS = Registry("advantage estimator")
POLICY_LOSSES = Registry("policy loss")
KL_ESTIMATORS = Registry("KL estimator")
