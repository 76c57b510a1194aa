"""Methods vLLM mixes into each of its workers (LLM(worker_extension_cls=...)), called via llm.collective_rpc."""

from ..weight_sync import unpack_state_dict


class WeightSyncExtension:
    """Weight updates into a live engine. Blob transport now; a torch.distributed group transport goes here later."""

    def reload_from_blob(self, blob: bytes) -> None:
        # collective_rpc turns tensors into lists, so weights travel as safetensors bytes.
        state_dict = unpack_state_dict(blob)
        # In place and in checkpoint names: vLLM re-applies its own repacking (plain load_weights fails on CPU).
        self.reload_weights(weights_iterator=iter(state_dict.items()), is_checkpoint_format=True)
