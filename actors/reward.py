"""RewardActor: scores (prompt + response) token sequences with a reward model; several share the load."""

from rlhf_ray.models import load_reward_model, load_tokenizer, score_sequences
from rlhf_ray.weight_sync import unpack_state_dict


class RewardActor:
    def __init__(self, model_dir: str, dtype: str = "float32", mixed_precision: str = "none", batch_size: int = 16,
                 rank: int = 0):
        self.tokenizer = load_tokenizer(model_dir)
        self.model = load_reward_model(model_dir, dtype)
        self.batch_size, self.mixed_precision = batch_size, mixed_precision

    def ready(self) -> bool:
        return True

    def score(self, sequences: list[list[int]]) -> list[float]:
        return score_sequences(self.model, sequences, self.tokenizer.pad_token_id, self.batch_size,
                               self.mixed_precision).tolist()

    def update_weights(self, blob: bytes) -> None:
        """New RM weights (a safetensors blob from the object store), e.g. after a MetaRM round."""
        self.model.load_state_dict(unpack_state_dict(blob))
