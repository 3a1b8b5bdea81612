"""Resume loads DeepSpeed checkpoints with ``torch.load(weights_only=True)`` and a short list of allowed types.

DeepSpeed's own checkpoint engine calls ``torch.load(weights_only=False)``: whoever can write the output's
``checkpoints/`` (a shared bucket) could run code in every training pod on resume. :func:`safe_checkpoint_loading`
swaps the engine's loader for the restricted unpickler of ``weights_only=True`` that also admits the few plain
DeepSpeed types a ZeRO checkpoint holds (measured on DeepSpeed 0.19: the ZeRO stage enum, the loss scaler and
the bf16 fragment address). Anything else in a checkpoint file fails the load with an error naming the file.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


class UnsafeCheckpointError(RuntimeError):
    """A checkpoint file holds a type outside the allowed list (refused, nothing of it was run)."""


def allowed_types() -> list[Any]:
    """DeepSpeed's plain data types found in its ZeRO checkpoints, allowed next to tensors and containers."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [ZeroStageEnum, LossScaler, DynamicLossScaler, fragment_address]


def safe_load(path: str, map_location: Any = None) -> Any:
    """``torch.load`` of one checkpoint file with weights_only=True and :func:`allowed_types`."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(allowed_types()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as error:
        raise UnsafeCheckpointError(
            f"{path}: refused to load: it holds something other than tensors and DeepSpeed's plain state "
            f"({str(error).splitlines()[0]}). Delete this checkpoint (or the output's checkpoints/) if you did not "
            "write it") from None


class _SafeEngine:
    """Wraps a DeepSpeed checkpoint engine: ``load`` is :func:`safe_load`, everything else is delegated."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner

    def load(self, path: str, map_location: Any = None) -> Any:
        return safe_load(path, map_location)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


@contextlib.contextmanager
def safe_checkpoint_loading(engine: Any) -> Iterator[None]:
    """Within the block, ``engine.load_checkpoint`` reads every file through :func:`safe_load`."""
    original = engine.checkpoint_engine
    engine.checkpoint_engine = _SafeEngine(original)
    try:
        yield
    finally:
        engine.checkpoint_engine = original
