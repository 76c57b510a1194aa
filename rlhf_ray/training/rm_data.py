"""Reward-model training data (Ray-free): the configured preference set loaded, encoded and denoised into the pairs
every RM learner rank holds, and a step count for a number of pairs."""

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..config import Config, RMConfig, SFTConfig
from ..data import load_preferences
from ..data.tokenize import encode_pairs
from ..models import load_tokenizer
from ..models.assets import resolve_model
from .rm_denoise import apply_strength, row_strength
from .strength_report import load_strength

log = logging.getLogger("rlhf_ray.rm")


@dataclass
class RMData:
    """Encoded pairs, train first then eval, as every RM learner holds them; rows are the matching data rows."""

    init_dir: str  # the LM to put a fresh head on (from_lm), or an RM to continue
    from_lm: bool
    pairs: list[dict]
    train_rows: list[dict]
    eval_rows: list[dict]
    denoise: dict = field(default_factory=dict)  # counts of flipped / soft-labelled pairs
    eval_strength: list[float | None] | None = None  # for the confident-subset eval
    reports: list[dict] = field(default_factory=list)  # rows kept / skipped / noted per file

    @property
    def train_index(self) -> list[int]:
        return list(range(len(self.train_rows)))

    @property
    def eval_index(self) -> list[int]:
        return list(range(len(self.train_rows), len(self.pairs)))

    @property
    def eval_sources(self) -> list[str]:
        return [data_source(r) for r in self.eval_rows]


def data_source(row: dict) -> str:
    """A pair's source for per-source metrics: its file's folder and name without extensions (harmless-base/test)."""
    path = Path(row["file"])
    return f"{path.parent.name}/{path.name.split('.')[0]}"


def prepare_rm_data(cfg: Config, denoise: bool = True) -> RMData:
    """Load and encode the configured preference set; with denoise, apply rm.flip / soft_label / margin.
    RMData.reports holds the rows kept, skipped and noted per file (the caller writes them)."""
    data = load_preferences(cfg.data)
    log.info("data:\n%s", data.summary())
    init_dir = cfg.model.reward or str(resolve_model(cfg.model.policy))
    tokenizer = load_tokenizer(init_dir)
    enc = dict(max_len=cfg.model.max_len, max_response_len=cfg.model.max_response_len,
               use_chat_template=cfg.data.chat_template, on_overlong=cfg.model.on_overlong)
    train, train_stats = encode_pairs(tokenizer, data.train, **enc)
    evals, eval_stats = encode_pairs(tokenizer, data.eval, **enc)
    log.info("train: %s; eval: %s", train_stats.summary(), eval_stats.summary())
    if not train:
        raise ValueError("no training pairs left after loading and encoding; see the data report above")
    train_rows = [data.train[p["index"]] for p in train]
    eval_rows = [data.eval[p["index"]] for p in evals]
    strength = load_strength(cfg.rm.strength_file) if cfg.rm.strength_file else None
    rm = cfg.rm if denoise else cfg.rm.model_copy(update={"flip": False, "soft_label": False, "adaptive_margin": False})
    # Re-index into the encoded rows: apply_strength looks pairs up by their `index` into the rows it is given.
    train, counts = apply_strength([p | {"index": i} for i, p in enumerate(train)], train_rows, rm, strength)
    if counts:
        log.info("denoising from %s: %s", cfg.rm.strength_file, counts)
    evals = [p | {"alpha": 0.0, "margin": 0.0} for p in evals]
    return RMData(init_dir, cfg.model.reward is None, train + evals, train_rows, eval_rows, counts,
                  row_strength(eval_rows, strength) if strength else None, [r.to_dict() for r in data.reports])


def total_steps(n_pairs: int, rm: RMConfig | SFTConfig, what: str = "training", section: str = "rm",
                unit: str = "pairs") -> int:
    """Optimizer steps for n_pairs: epochs x full batches, capped by max_steps (of the rm or sft section)."""
    per_epoch = n_pairs // rm.batch_size
    if per_epoch == 0:
        raise ValueError(f"{what}: {n_pairs} {unit}, fewer than one batch ({section}.batch_size={rm.batch_size})")
    return int(min(rm.max_steps or math.inf, per_epoch * rm.epochs))
