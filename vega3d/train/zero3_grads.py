"""Workaround for stale ZeRO-3 gradients of parameters that get no gradient in a step (DeepSpeed 0.19).

Measured (tests/train/test_zero3_offload.py, and the minimal reproduction in ``reproduce``): ZeRO-3 keeps each
parameter's reduced gradient partition in one flat buffer (``grad_partitions_flat_buffer``) that is never
cleared between optimizer steps. A step whose micro-batches give a parameter no gradient (the task-grouped
sampler: a grounding step leaves the LM head unused, a caption step the grounding head) copies nothing into
that parameter's slot, and without offload the optimizer step reads the slot's value from the last step that
did touch it: the stale gradient is applied again (its norm shows in the global gradient norm). With CPU
offload only the parameters used in the window are copied to the fp32 gradients, and the slots of the others
keep whatever they held before. ZeRO-0 and ZeRO-2 give unused parameters a zero gradient.

:func:`clear_stale_zero3_gradients`, called after every optimizer step, zeroes both buffers, so that a
parameter without gradient in a step gets exactly zero under ZeRO-3 with or without offload, as under
ZeRO-0/2. It is a no-op for other stages.
"""

from __future__ import annotations

from typing import Any


def clear_stale_zero3_gradients(engine: Any) -> None:
    """Zero ZeRO-3's gradient partition buffer and its fp32 (offloaded) gradients after an optimizer step."""
    if engine.zero_optimization_stage() != 3:
        return
    optimizer = engine.optimizer
    buffer = getattr(optimizer, "grad_partitions_flat_buffer", None)
    if buffer is not None:
        buffer.zero_()
    for flat in getattr(optimizer, "fp32_partitioned_groups_flat", None) or []:
        if flat.grad is not None:
            flat.grad.zero_()
