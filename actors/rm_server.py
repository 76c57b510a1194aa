"""RewardModelServer: one reward model as a Ray Serve deployment. Single sequences from any number of concurrent
callers are gathered into one forward pass (serve.batch); replicas share the load.

Two doors to the same batches:
- `score_ids(prompt_ids, response_ids)`, through a DeploymentHandle: RewardActors with reward.remote: serve.
- HTTP POST /<app> {"pairs": [{"prompt": str, "response": str} | {"prompt_ids": [int], "response_ids": [int]}, ...]}
  -> {"scores": [float, ...]} in the order of the pairs. Text prompts are rendered with the chat template and cut to
  model.max_len exactly as RM training encodes pairs (rlhf_ray.data.tokenize); send ids for the sequences a policy made.
"""

import asyncio
import math

from ray import serve
from starlette.requests import Request
from starlette.responses import JSONResponse

from rlhf_ray.config import Config
from rlhf_ray.data.tokenize import encode_sequence, render_prompt
from rlhf_ray.models import load_reward_model, load_tokenizer, rm_sequence, score_sequences

from .group import with_threads
from .precision import NodePrecision


class BadRequest(ValueError):
    """A malformed pair; the message names it."""


@serve.deployment
class RewardModelServer(NodePrecision):
    def __init__(self, model_dir: str, max_batch_size: int = 16, batch_wait_s: float = 0.01,
                 mixed_precision: str = "auto", max_len: int = 512, max_response_len: int = 128,
                 chat_template: bool = True):
        self.model_dir = model_dir
        self.tokenizer = load_tokenizer(model_dir)
        self.model = load_reward_model(model_dir)
        self.mixed_precision = self._resolve_precision(mixed_precision).mode
        self.max_len, self.max_response_len, self.chat_template = max_len, max_response_len, chat_template
        self.largest_batch = 0  # what batching achieved, for info()
        self.score_batch.set_max_batch_size(max_batch_size)
        self.score_batch.set_batch_wait_timeout_s(batch_wait_s)

    @serve.batch
    async def score_batch(self, sequences: list[list[int]]) -> list[float]:
        self.largest_batch = max(self.largest_batch, len(sequences))
        # In a thread: the event loop keeps taking requests, so the next batch fills while this one computes.
        return await asyncio.to_thread(self._score, sequences)

    def _score(self, sequences: list[list[int]]) -> list[float]:
        pad = self.tokenizer.pad_token_id
        try:
            return score_sequences(self.model, sequences, pad, len(sequences), self.mixed_precision).tolist()
        except FloatingPointError:  # one bad sequence must not fail its batch-mates: score each alone
            return [_score_or_nan(self.model, s, pad, self.mixed_precision) for s in sequences]

    async def score_ids(self, prompt_ids: list[int], response_ids: list[int]) -> float:
        """The RM's score of one (prompt, response) token pair, batched with whatever else is in flight."""
        score = await self.score_batch(rm_sequence(prompt_ids, response_ids, self.tokenizer.eos_token_id))
        if math.isnan(score):
            raise FloatingPointError(f"the reward model at {self.model_dir} gave NaN for this sequence")
        return score

    def info(self) -> dict:
        return {"model": self.model_dir, "mixed_precision": self.mixed_precision, "largest_batch": self.largest_batch}

    def _sequence(self, i: int, pair) -> tuple[list[int], bool]:
        """pairs[i] as the sequence the RM reads, and whether it was cut to fit."""
        if not isinstance(pair, dict):
            raise BadRequest(f"pairs[{i}] must be an object, got {type(pair).__name__}")
        if "prompt_ids" in pair or "response_ids" in pair:
            ids = [pair.get("prompt_ids"), pair.get("response_ids")]
            if not all(isinstance(x, list) and all(isinstance(t, int) and t >= 0 for t in x) for x in ids):
                raise BadRequest(f"pairs[{i}]: prompt_ids and response_ids must both be lists of token ids")
            vocab = self.model.config.vocab_size
            if any(t >= vocab for x in ids for t in x):
                raise BadRequest(f"pairs[{i}]: a token id is outside the RM's vocabulary of {vocab}")
            return rm_sequence(ids[0], ids[1], self.tokenizer.eos_token_id), False
        if not (isinstance(pair.get("prompt"), str) and isinstance(pair.get("response"), str)):
            raise BadRequest(f"pairs[{i}] needs string keys prompt and response (or prompt_ids and response_ids)")
        prompt = render_prompt(self.tokenizer, pair["prompt"], pair.get("format", "plain"), self.chat_template)
        ids, cut = encode_sequence(self.tokenizer, prompt, pair["response"], self.max_len, self.max_response_len)
        return ids, bool(cut)

    async def __call__(self, request: Request) -> JSONResponse:
        if request.method == "GET":
            return JSONResponse(self.info())
        try:
            body = await request.json()
        except ValueError as e:
            return JSONResponse({"error": f"the body is not JSON: {e}"}, 400)
        try:
            pairs = body.get("pairs") if isinstance(body, dict) else None
            if not isinstance(pairs, list) or not pairs:
                raise BadRequest('the body must be {"pairs": [...]} with at least one pair')
            encoded = [self._sequence(i, pair) for i, pair in enumerate(pairs)]
        except BadRequest as e:
            return JSONResponse({"error": str(e)}, 400)
        scores = await asyncio.gather(*(self.score_batch(ids) for ids, _ in encoded))
        nan = [i for i, s in enumerate(scores) if math.isnan(s)]
        if nan:
            return JSONResponse({"error": f"the reward model gave NaN for pairs {nan}"}, 500)
        return JSONResponse({"scores": scores, "truncated": sum(cut for _, cut in encoded)})


def _score_or_nan(model, sequence: list[int], pad: int, mixed_precision: str) -> float:
    try:
        return score_sequences(model, [sequence], pad, 1, mixed_precision).item()
    except FloatingPointError:
        return math.nan


def rm_application(cfg: Config, model_dir: str):
    """The Serve application of `model_dir` as reward.serve and the model section ask (replicas, batching, precision,
    the encoding of text pairs)."""
    serve_cfg, res = cfg.reward.serve, cfg.reward.serve.resources
    actor_options = {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus}
    if res.memory_gib:
        actor_options["memory"] = res.memory_gib * 2**30
    if env := with_threads(res):
        actor_options["runtime_env"] = env
    return RewardModelServer.options(
        num_replicas=serve_cfg.replicas, max_ongoing_requests=serve_cfg.max_ongoing_requests,
        ray_actor_options=actor_options,
    ).bind(str(model_dir), serve_cfg.max_batch_size, serve_cfg.batch_wait_s, cfg.model.mixed_precision,
           cfg.model.max_len, cfg.model.max_response_len, cfg.data.chat_template)
