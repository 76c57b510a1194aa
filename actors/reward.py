"""RewardActor: scores (prompt, response) token pairs with a reward model, a programmatic reward, or a reward model
served by Ray Serve (reward.remote: serve; actors/rm_server.py)."""

import math

from rlhf_ray.fault_injection import die_if_asked
from rlhf_ray.memory import trims_host_memory
from rlhf_ray.models import load_reward_model, load_tokenizer, rm_sequence, score_sequences
from rlhf_ray.rewards import load_reward_function

from .precision import NodePrecision
from .process_stats import PeakMemory
from .weight_sync import WeightTarget


class RewardActor(NodePrecision, WeightTarget, PeakMemory):
    def __init__(self, model_dir: str | None = None, function: str | None = None, function_kwargs: dict | None = None,
                 dtype: str = "float32", mixed_precision: str = "auto", batch_size: int = 16, rank: int = 0,
                 serve_app: str | None = None, non_finite: str = "error"):
        if sum(x is not None for x in (model_dir, function, serve_app)) != 1:
            raise ValueError("a RewardActor needs exactly one of model_dir, function and serve_app")
        self.function = load_reward_function(function, function_kwargs) if function else None
        self.source = (f"reward.function {function}" if function else f"the Serve app {serve_app}" if serve_app
                       else f"the reward model {model_dir}")
        self.served = None
        if serve_app is not None:
            from ray import serve

            self.served = serve.get_app_handle(serve_app)
        if model_dir is not None:
            self.tokenizer = load_tokenizer(model_dir)
            self.model = load_reward_model(model_dir, dtype)
        self.batch_size, self.rank, self.calls, self.non_finite = batch_size, rank, 0, non_finite
        self.mixed_precision = self._resolve_precision(mixed_precision).mode  # auto: decided for this node

    def ready(self) -> bool:
        return True

    @trims_host_memory
    def score(self, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
        """Rewards for (prompt_ids, response_ids) pairs; the RM reads each sequence at a final EOS. A non-finite reward
        raises, or (non_finite=skip) comes back as NaN for the driver to drop."""
        self.calls += 1
        die_if_asked("reward", self.rank, self.calls)
        if self.function is not None:
            scores = [float(self.function(p, r)) for p, r in pairs]
        elif self.served is not None:  # one call per pair: the deployment batches them with every other caller's
            calls = [self.served.score_ids.remote(list(p), list(r)) for p, r in pairs]
            scores = [call.result() for call in calls]
        else:
            sequences = [rm_sequence(p, r, self.tokenizer.eos_token_id) for p, r in pairs]
            scores = score_sequences(self.model, sequences, self.tokenizer.pad_token_id, self.batch_size,
                                     self.mixed_precision).tolist()
        bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
        if bad and self.non_finite == "skip":
            return [s if math.isfinite(s) else math.nan for s in scores]
        if bad:  # before any advantage is computed from it
            raise FloatingPointError(f"{self.source} gave a non-finite reward to {len(bad)} of {len(pairs)} responses "
                                     f"(positions {bad[:10]} of this actor's batch: {[scores[i] for i in bad[:10]]})")
        return scores

    def load_state_dict(self, state: dict) -> None:
        """New RM weights from an RM learner (weight sync), e.g. after a MetaRM round."""
        if self.function is not None or self.served is not None:
            raise TypeError("this RewardActor scores with a reward function or a Serve app: it has no model to update")
        self.model.load_state_dict(state)
