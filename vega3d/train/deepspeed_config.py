"""DeepSpeed configuration dicts built from ``TrainConfig`` (SPEC.md section 6).

One function turns the training settings into the JSON config ``deepspeed.initialize`` takes:

- ZeRO stage 0 (plain data parallel), 2 (optimizer states + gradients sharded) or 3 (parameters sharded too,
  ``overlap_comm`` and ``stage3_gather_16bit_weights_on_model_save`` so a plain model can be saved), and
  ZeRO-3 with CPU offload of optimizer states and parameters (``train.offload``).
- bf16 on GPU by default; on CPU bf16 or fp32 (DeepSpeed's fp16 loss scaling does not run on CPU, and the
  config has no fp16 option at all).
- micro batch per device x gradient accumulation x world size = global batch (DeepSpeed checks the identity).
- gradient clipping by global norm.

The optimizer and scheduler are built by :mod:`vega3d.train.optim` and passed to ``deepspeed.initialize``,
so the config holds no ``optimizer``/``scheduler`` section (a client torch optimizer needs no op compile).
"""

from __future__ import annotations

from typing import Any

from vega3d.config import TrainConfig

# Bucket sizes (elements) for gradient reduction / parameter gathering; DeepSpeed's defaults are 5e8, which
# allocates needlessly large buffers on CPU for small models, so they are bounded here.
_BUCKET = 50_000_000


def global_batch_size(train: TrainConfig, world_size: int) -> int:
    """Samples per optimiser step: micro batch x accumulation x processes."""
    return train.per_device_batch_size * train.gradient_accumulation_steps * world_size


def zero_section(train: TrainConfig, on_gpu: bool) -> dict[str, Any]:
    """The ``zero_optimization`` section for ``train.zero_stage`` and ``train.offload``."""
    stage = train.zero_stage
    if train.offload and stage != 3:
        raise ValueError(
            f"train.offload=true needs train.zero_stage=3 (got {stage}); set train.zero_stage=3 or train.offload=false"
        )
    section: dict[str, Any] = {"stage": stage}
    if stage == 2:
        section.update(
            contiguous_gradients=True,
            overlap_comm=on_gpu,
            reduce_scatter=True,
            reduce_bucket_size=_BUCKET,
            allgather_bucket_size=_BUCKET,
        )
    elif stage == 3:
        section.update(
            contiguous_gradients=True,
            overlap_comm=True,
            reduce_bucket_size=_BUCKET,
            stage3_prefetch_bucket_size=_BUCKET,
            stage3_param_persistence_threshold=10_000,
            stage3_gather_16bit_weights_on_model_save=True,
        )
        if train.offload:
            section["offload_optimizer"] = {"device": "cpu", "pin_memory": on_gpu}
            section["offload_param"] = {"device": "cpu", "pin_memory": on_gpu}
    return section


def build_deepspeed_config(train: TrainConfig, world_size: int, on_gpu: bool) -> dict[str, Any]:
    """The full DeepSpeed config for ``world_size`` processes on GPU (``on_gpu``) or CPU."""
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    config: dict[str, Any] = {
        "train_micro_batch_size_per_gpu": train.per_device_batch_size,
        "gradient_accumulation_steps": train.gradient_accumulation_steps,
        "train_batch_size": global_batch_size(train, world_size),
        "gradient_clipping": train.max_grad_norm,
        "zero_optimization": zero_section(train, on_gpu),
        "bf16": {"enabled": train.precision == "bf16"},
        "fp16": {"enabled": False},
        # A torch.optim optimizer with offload is slower than DeepSpeedCPUAdam, but needs no op compile.
        "zero_force_ds_cpu_optimizer": False,
        "zero_allow_untested_optimizer": True,
        "steps_per_print": 10**9,
        "wall_clock_breakdown": False,
    }
    return config
