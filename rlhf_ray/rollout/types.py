"""What a rollout engine takes and returns, independent of vLLM or HF."""

from dataclasses import dataclass, field, fields
from typing import Protocol

import torch


@dataclass
class SamplingParams:
    n: int = 1
    max_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = -1  # -1 = off
    repetition_penalty: float = 1.0
    seed: int | None = None

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def departures_from_policy(self) -> list[str]:
        """How sampling departs from the policy's own distribution (temperature 1, nothing cut or penalised): each
        departure in words; empty when the samples are the policy's."""
        return [f"{name} {value}" for name, value, plain in (
            ("temperature", self.temperature, 1.0), ("top-p", self.top_p, 1.0),
            ("top-k", self.top_k if self.top_k > 0 else -1, -1),  # 0 and -1 both mean off
            ("repetition penalty", self.repetition_penalty, 1.0)) if value != plain]


@dataclass
class Rollouts:
    """n samples per prompt, grouped in prompt order; logprobs are of each sampled token (see engines)."""

    prompt_index: list[int] = field(default_factory=list)
    prompt_ids: list[list[int]] = field(default_factory=list)
    response_ids: list[list[int]] = field(default_factory=list)
    response_logprobs: list[list[float]] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    finish_reasons: list[str] = field(default_factory=list)  # "stop" (EOS) or "length" (max_tokens)
    seconds: float = 0.0  # the engines' wall time generating these (the slowest engine's, once joined)

    def __len__(self) -> int:
        return len(self.response_ids)

    def select(self, rows: list[int]) -> "Rollouts":
        """These rows only, in the order given (prompt_index unchanged)."""
        lists = {f.name: [getattr(self, f.name)[i] for i in rows] for f in fields(self) if f.name != "seconds"}
        return Rollouts(**lists, seconds=self.seconds)

    def append(self, index: int, prompt: list[int], response: list[int], logprobs: list[float],
               text: str, finish_reason: str) -> None:
        self.prompt_index.append(index)
        self.prompt_ids.append(list(prompt))
        self.response_ids.append(list(response))
        self.response_logprobs.append(list(logprobs))
        self.texts.append(text)
        self.finish_reasons.append(finish_reason)


def concat(parts: list[Rollouts]) -> Rollouts:
    """Join rollouts from several engines; prompt_index is offset so it keeps pointing at distinct prompts."""
    out, offset = Rollouts(), 0
    for part in parts:
        out.prompt_index += [i + offset for i in part.prompt_index]
        out.prompt_ids += part.prompt_ids
        out.response_ids += part.response_ids
        out.response_logprobs += part.response_logprobs
        out.texts += part.texts
        out.finish_reasons += part.finish_reasons
        offset += max(part.prompt_index, default=-1) + 1
        out.seconds = max(out.seconds, part.seconds)
    return out


def drop_non_finite_prompts(rollouts: Rollouts, scores: torch.Tensor) -> tuple[Rollouts, torch.Tensor, int]:
    """Every sample of a prompt that has a non-finite score leaves (a prompt's group stays whole, as group estimators
    need); returns the rest, their scores and how many samples left."""
    bad = {rollouts.prompt_index[i] for i in torch.nonzero(~torch.isfinite(scores)).flatten().tolist()}
    keep = [i for i, p in enumerate(rollouts.prompt_index) if p not in bad]
    return rollouts.select(keep), scores[keep], len(rollouts) - len(keep)


class RolloutEngine(Protocol):
    def generate(self, prompt_ids: list[list[int]], sampling: SamplingParams,
                 prompt_seeds: list[int] | None = None) -> Rollouts: ...

    def answer_logprobs(self, prompt_ids: list[list[int]], answer_ids: list[list[int]]) -> list[list[float]]: ...

    def load_weights(self, state_dict: dict[str, torch.Tensor]) -> None: ...

    def load_weights_blob(self, blob: bytes) -> None: ...
