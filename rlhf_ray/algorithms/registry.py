"""Name -> function registries, so configs pick an algorithm by name (as verl's core_algos does)."""

from collections.abc import Callable


class Registry(dict):
    """A dict of named functions with a decorator to fill it and an error that lists the choices."""

    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind
        self.traits: dict[str, dict] = {}  # what the callers need to know of an entry (an estimator's critic use)

    def register(self, name: str, **traits) -> Callable:
        def add(fn: Callable) -> Callable:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self[name], self.traits[name] = fn, traits
            return fn

        return add

    def get(self, name: str) -> Callable:  # type: ignore[override]
        if name not in self:
            raise KeyError(f"unknown {self.kind} {name!r}; choose one of {sorted(self)}")
        return self[name]

    def trait(self, name: str, key: str):
        self.get(name)  # the unknown-name error
        return self.traits[name][key]


ADVANTAGE_ESTIMATORS = Registry("advantage estimator")
POLICY_LOSSES = Registry("policy loss")
KL_ESTIMATORS = Registry("KL estimator")
