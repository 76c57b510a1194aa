"""RewardActor: scores (prompt, response) token pairs with a reward model or a programmatic reward."""

from rlhf_ray.memory import trims_host_memory
from rlhf_ray.models import load_reward_model, load_tokenizer, rm_sequence, score_sequences
from rlhf_ray.rewards import load_reward_function

from .precision import NodePrecision
from .weight_sync import WeightTarget


class RewardActor(NodePrecision, WeightTarget):
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

    @trims_host_memory
    def score(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        """Rewards for (prompt_ids, response_ids) pairs; the RM reads each sequence at a final EOS."""
        if self.function is not None:
            return [float(self.function(p, r)) for p, r in pairs]
        sequences = [rm_sequence(p, r, self.tokenizer.eos_token_id) for p, r in pairs]
        return score_sequences(self.model, sequences, self.tokenizer.pad_token_id, self.batch_size,
                               self.mixed_precision).tolist()

    def load_state_dict(self, state: dict) -> None:
        """New RM weights from an RM learner (weight sync), e.g. after a MetaRM round."""
        if self.function is not None:
            raise TypeError("this RewardActor scores with a reward function: it has no model to update")
        self.model.load_state_dict(state)
