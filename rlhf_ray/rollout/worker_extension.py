"""Methods vLLM mixes into each of its workers (LLM(worker_extension_cls=...)), called via llm.collective_rpc."""

from ..weight_codec import make_weight_group, receive_state_dict, unpack_state_dict
from .vllm_logging import quiet_vllm_logs

quiet_vllm_logs()  # in whichever process vLLM runs its worker (the actor's, or its own with multiprocessing)


class WeightSyncExtension:
    """Weight updates into a live engine: from a safetensors blob, or from a broadcast over a weight group."""

    def reload_from_blob(self, blob: bytes) -> None:
        # collective_rpc turns tensors into lists, so weights travel as safetensors bytes.
        self._reload(unpack_state_dict(blob))

    def init_weight_group(self, addr: str, port: int, rank_offset: int, world_size: int) -> None:
        # One group rank per vLLM worker (tensor-parallel workers each hold a shard and each receive).
        self._weight_group = make_weight_group(addr, port, rank_offset + self.rank, world_size)

    def receive_weights(self, meta: list, bucket_bytes: int) -> None:
        self._reload(receive_state_dict(self._weight_group, meta, bucket_bytes))

    def _reload(self, state_dict: dict) -> None:
        # In place and in checkpoint names: vLLM re-applies its own repacking (plain load_weights fails on CPU).
        self.reload_weights(weights_iterator=iter(state_dict.items()), is_checkpoint_format=True)
