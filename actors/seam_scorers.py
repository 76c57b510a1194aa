"""The stages of offline SEAM scoring as Ray Data callable classes (`map_batches` over an actor pool each), so
`rlhf-ray seam score` scales out on a cluster as Ray Data places the pools.

Each stage wraps the actor class that does the same work online (RolloutActor, RewardActor) in its own process.
Batches are pandas frames (batch_format="pandas"): list-valued columns stay Python lists of any length.
"""

from .reward import RewardActor
from .rollout import RolloutActor


def _lists(column) -> list[list[int]]:
    return [[int(t) for t in row] for row in column]


class PolicyAnswerScorer:
    """Adds `logprob_sum` and `length`: the policy's teacher-forced log-prob of each (prompt, answer + EOS) row."""

    def __init__(self, model_dir: str, engine: str, dtype: str, max_model_len: int, kv_cache_gib: float):
        self.actor = RolloutActor(model_dir, engine=engine, dtype=dtype, max_model_len=max_model_len,
                                  kv_cache_gib=kv_cache_gib)

    def __call__(self, batch):
        lps = self.actor.answer_logprobs(list(zip(_lists(batch["prompt_ids"]), _lists(batch["policy_answer_ids"]))))
        batch["logprob_sum"] = [float(sum(lp)) for lp in lps]
        batch["length"] = [len(lp) for lp in lps]
        return batch


class RewardAnswerScorer:
    """Adds `reward`: the RM's score of each (prompt, answer) row."""

    def __init__(self, model_dir: str, mixed_precision: str, batch_size: int):
        self.actor = RewardActor(model_dir, mixed_precision=mixed_precision, batch_size=batch_size)

    def __call__(self, batch):
        batch["reward"] = self.actor.score(list(zip(_lists(batch["prompt_ids"]), _lists(batch["answer_ids"]))))
        return batch


class Degrader:
    """Adds `samples`: SEAM-GPT raw degrader samples (the driver drops empty ones and gold copies, counting them),
    each question under its own seed."""

    def __init__(self, model_dir: str, engine: str, dtype: str, max_model_len: int, kv_cache_gib: float, k: int,
                 max_tokens: int, temperature: float):
        from rlhf_ray.models import load_tokenizer

        self.actor = RolloutActor(model_dir, engine=engine, dtype=dtype, max_model_len=max_model_len,
                                  kv_cache_gib=kv_cache_gib)
        self.tokenizer = load_tokenizer(model_dir)
        self.k, self.max_tokens, self.temperature = k, max_tokens, temperature
        self.room = max_model_len - max_tokens

    def __call__(self, batch):
        from rlhf_ray.seam.degrade import sample_degraded

        samples = sample_degraded(self.actor.engine, self.tokenizer, [str(q) for q in batch["question"]],
                                  [str(g) for g in batch["gold"]], self.k, [int(s) for s in batch["seed"]],
                                  self.max_tokens, self.temperature, max_prompt_tokens=self.room)
        batch["samples"] = samples
        return batch
