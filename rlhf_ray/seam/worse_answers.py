"""Worse answers for SEAM, built once and cached on disk, keyed by prompt, gold answer, variant, seed and the
builder's settings (ALGORITHMS.md §6.3-6.6).

A cache is one JSONL file per variant; each row holds one prompt's answers. Rows are appended as prompts are first
seen (the online SEAM actor builds for each iteration's new prompts), so a run that stops keeps what it built.
A torn last line (a killed writer) is skipped and counted.
"""

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

from ..config import Config
from ..models.assets import resolve_model
from .adv import adv_answers
from .contrast import contrast_answers

log = logging.getLogger("rlhf_ray.seam")

VARIANTS = ("contrast", "gpt", "adv")


def _digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def cache_key(variant: str, seed: int, prompt: str, gold: str, settings: dict) -> str:
    return _digest(variant, seed, prompt, gold, settings)


def prompt_seed(seed: int, variant: str, prompt: str) -> int:
    """A prompt's own seed, so its answers do not depend on which other prompts are built with it."""
    return int(_digest(seed, variant, prompt)[:15], 16)


class WorseAnswerCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.rows: dict[str, list[str]] = {}
        self.torn = 0
        if self.path.exists():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.rows[row["key"]] = row["answers"]
                except (ValueError, KeyError, TypeError):
                    self.torn += 1
            if self.torn:
                log.warning("%s: skipped %d unreadable cache rows (a writer stopped mid-line); they are rebuilt",
                            self.path, self.torn)

    def get(self, key: str) -> list[str] | None:
        return self.rows.get(key)

    def put(self, entries: dict[str, list[str]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a", encoding="utf-8") as f:
            for key, answers in entries.items():
                f.write(json.dumps({"key": key, "answers": answers}, ensure_ascii=False) + "\n")
        self.rows |= entries


def builder_settings(cfg: Config) -> dict:
    """The knobs that change a variant's answers: part of the cache key."""
    s = cfg.seam
    if s.variant == "adv":
        return {"fraction": s.adv_fraction}
    if s.variant == "contrast":
        return {"max_cosine": s.contrast_max_cosine, "encoder": s.encoder}
    sampling = {"max_tokens": s.degrader_max_tokens, "temperature": s.degrader_temperature}
    if s.degrader_endpoint:
        return sampling | {"endpoint": s.degrader_endpoint, "model": s.degrader}
    # A local degrader's text depends on its weights, the engine and dtype, and the prompt room (the context).
    r = cfg.rollout
    return sampling | {"degrader": weights_id(resolve_model(s.degrader or cfg.model.policy)), "engine": r.engine,
                       "dtype": r.dtype, "max_model_len": r.max_model_len}


def weights_id(model_dir: Path) -> dict:
    """What identifies a model folder's weights without reading them: its path and its weight files' sizes and times."""
    files = sorted(p for p in Path(model_dir).iterdir() if p.suffix in (".safetensors", ".bin", ".gguf"))
    return {"path": str(Path(model_dir).resolve()),
            "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]}


# A degrader takes (questions, golds, k, per-question seeds) and returns k (or fewer) worse answers per question.
Degrader = Callable[[list[str], list[str], int, list[int]], list[list[str]]]


def build_worse_answers(variant: str, prompts: list[str], golds: list[str], k: int, seed: int,
                        cache: WorseAnswerCache | None = None, settings: dict | None = None,
                        degrader: Degrader | None = None, encoder_dir: str | Path | None = None,
                        pool: tuple[list[str], list[str]] | None = None) -> list[list[str]]:
    """Up to k worse answers per prompt, none equal to its gold answer; cached answers are reused, the rest built.

    settings: the builder's knobs that change its output (adv `fraction`, contrast `max_cosine`, the degrader's
    model and sampling); they are part of the cache key. Contrast retrieves neighbours from `pool` (all prompts and
    golds of the set; default: these prompts), so a prompt's neighbours do not depend on the batch it came in.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown SEAM variant {variant!r}; choose one of {VARIANTS}")
    settings = dict(settings or {}) | {"k": k}
    if variant == "contrast":
        pool_prompts, pool_golds = pool or (prompts, golds)
        settings["pool"] = _digest(pool_prompts, pool_golds)
    keys = [cache_key(variant, seed, p, g, settings) for p, g in zip(prompts, golds)]
    out: list[list[str] | None] = [cache.get(key) if cache else None for key in keys]
    todo = [i for i, answers in enumerate(out) if answers is None]
    if todo:
        built = _build(variant, [prompts[i] for i in todo], [golds[i] for i in todo], k, seed, settings, degrader,
                       encoder_dir, pool)
        for i, answers in zip(todo, built):
            out[i] = answers
        if cache:
            cache.put({keys[i]: out[i] for i in todo})
    return out  # type: ignore[return-value]


def _build(variant, prompts, golds, k, seed, settings, degrader, encoder_dir, pool) -> list[list[str]]:
    if variant == "adv":
        fraction = settings.get("fraction", 0.3)
        built = [adv_answers(g, k, prompt_seed(seed, variant, p), fraction) if g.split() else []
                 for p, g in zip(prompts, golds)]
    elif variant == "contrast":
        if encoder_dir is None:
            raise ValueError("SEAM-Contrast needs a sentence encoder (seam.encoder)")
        pool_prompts, pool_golds = pool or (prompts, golds)
        where = {p: i for i, p in enumerate(pool_prompts)}
        missing = [p for p in prompts if p not in where]
        if missing:
            raise ValueError(f"{len(missing)} prompts are not in the contrast pool, e.g. {missing[0][:80]!r}")
        answers = contrast_answers(pool_prompts, pool_golds, k, encoder_dir, settings.get("max_cosine", 0.9))
        built = [answers[where[p]] for p in prompts]
    else:
        if degrader is None:
            raise ValueError("SEAM-GPT needs a degrader (a local model through the rollout engine, or an endpoint)")
        built = degrader(prompts, golds, k, [prompt_seed(seed, variant, p) for p in prompts])
    # One rule for every variant: a worse answer is never the gold answer.
    return [[a for a in answers if a.strip() != g.strip()] for answers, g in zip(built, golds, strict=True)]
