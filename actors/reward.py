"""RewardActor: scores (prompt, response) token pairs with a reward model or a programmatic reward."""

from rlhf_ray.models import load_reward_model, load_tokenizer, score_sequences
from rlhf_ray.rewards import load_reward_function
from rlhf_ray.weight_sync import unpack_state_dict

from .precision import NodePrecision


class RewardActor(NodePrecision):
    def __init__(self, model_dir: str | None = None, function: str | None = None, function_kwargs: dict | None = None,
                 dtype: str = "float32", mixed_precision: str = "auto", batch_size: int = 16, rank: int = 0):
        if (model_dir is None) == (function is None):
            raise ValueError("a RewardActor needs exactly one of model_dir and function")
        self.function = load_reward_function(function, function_kwargs) if function else None
        if model_dir is not None:
            self.tokenizer = load_tokenizer(model_dir)
            self.model = load_reward_model(model_dir, dtype)
        self.batch_size = batch_size
        self.mixed_precision = self._resolve_precision(mixed_precision).mode  # auto: decided for this node

    def ready(self) -> bool:
        return True

    def score(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        """Rewards for (prompt_ids, response_ids) pairs; the RM reads each sequence at a final EOS."""
        if self.function is not None:
            return [float(self.function(p, r)) for p, r in pairs]
        eos = self.tokenizer.eos_token_id
        sequences = [list(p) + list(r) + ([] if r and r[-1] == eos else [eos]) for p, r in pairs]
        return score_sequences(self.model, sequences, self.tokenizer.pad_token_id, self.batch_size,
                               self.mixed_precision).tolist()

    def update_weights(self, blob: bytes) -> None:
        """New RM weights (a safetensors blob from the object store), e.g. after a MetaRM round."""
        self.model.load_state_dict(unpack_state_dict(blob))
