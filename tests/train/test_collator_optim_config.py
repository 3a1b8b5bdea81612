"""Collator padding, DeepSpeed config sections, parameter groups and the warmup/cosine schedule."""

from __future__ import annotations

import math

import pytest
import torch

from tests.train.helpers import ToyModel
from vega3d.config import load_config
from vega3d.train.collator import IGNORE_INDEX, Vega3DCollator, model_inputs
from vega3d.train.deepspeed_config import build_deepspeed_config, global_batch_size
from vega3d.train.optim import build_optimizer, build_scheduler, warmup_steps


def _sample(length: int, frames: int, task: str, proposals: int | None = None) -> dict:
    sample = {
        "id": f"{task}-{length}",
        "task": task,
        "input_ids": torch.arange(1, length + 1),
        "labels": torch.full((length,), 7),
        "pixel_values": torch.zeros(frames, 3, 4, 4),
        "world_coords": torch.zeros(frames, 4, 4, 3),
        "coord_valid": torch.ones(frames, 4, 4, dtype=torch.bool),
    }
    if proposals:
        sample["proposals"] = torch.zeros(proposals, 6)
        sample["ground_positives"] = torch.zeros(proposals, dtype=torch.bool)
    return sample


def test_collator_pads_tokens_and_keeps_frame_lists() -> None:
    batch = Vega3DCollator(pad_token_id=0)([_sample(3, 2, "scanqa"), _sample(5, 4, "sqa3d")])
    assert batch["input_ids"].tolist() == [[1, 2, 3, 0, 0], [1, 2, 3, 4, 5]]
    assert batch["labels"].tolist() == [[7, 7, 7, IGNORE_INDEX, IGNORE_INDEX], [7] * 5]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]]
    assert [p.shape[0] for p in batch["pixel_values"]] == [2, 4]
    assert batch["proposals"] is None and batch["generative_features"] is None and batch["coord_boxes"] is None
    assert batch["tasks"] == ["scanqa", "sqa3d"]
    assert "tasks" not in model_inputs(batch) and "ids" not in model_inputs(batch)


def test_collator_grounding_lists() -> None:
    batch = Vega3DCollator(pad_token_id=0)([_sample(2, 1, "scanrefer", 3), _sample(2, 1, "multi3drefer", 5)])
    assert [p.shape for p in batch["proposals"]] == [torch.Size([3, 6]), torch.Size([5, 6])]
    assert [g.shape[0] for g in batch["ground_positives"]] == [3, 5]


@pytest.mark.parametrize("stage", [0, 2, 3])
def test_deepspeed_config_sections(stage: int) -> None:
    train = load_config("tiny", [f"train.zero_stage={stage}", "train.gradient_accumulation_steps=4"]).train
    config = build_deepspeed_config(train, world_size=2, on_gpu=False)
    assert config["train_batch_size"] == 2 * 4 * 2 == global_batch_size(train, 2)
    assert config["train_micro_batch_size_per_gpu"] == 2 and config["gradient_accumulation_steps"] == 4
    assert config["zero_optimization"]["stage"] == stage
    assert config["bf16"]["enabled"] is False and config["fp16"]["enabled"] is False
    assert config["gradient_clipping"] == 1.0
    if stage == 3:
        assert config["zero_optimization"]["overlap_comm"] is True
        assert config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
        assert "offload_optimizer" not in config["zero_optimization"]


def test_deepspeed_offload_and_bf16() -> None:
    train = load_config("paper", ["train.offload=true"]).train
    config = build_deepspeed_config(train, world_size=8, on_gpu=True)
    assert config["train_batch_size"] == 1 * 16 * 8 == 128  # the paper's global batch
    assert config["bf16"]["enabled"] is True
    assert config["zero_optimization"]["offload_optimizer"] == {"device": "cpu", "pin_memory": True}
    assert config["zero_optimization"]["offload_param"]["device"] == "cpu"
    bad = load_config("paper", ["train.offload=true", "train.zero_stage=2"]).train
    with pytest.raises(ValueError, match="train.zero_stage=3"):
        build_deepspeed_config(bad, world_size=1, on_gpu=False)


def test_parameter_groups_and_trainable_parts() -> None:
    model = ToyModel()
    train = load_config("paper").train
    optimizer = build_optimizer(model, train)
    lrs = {g["name"]: (g["lr"], g["weight_decay"], sum(p.numel() for p in g["params"])) for g in optimizer.param_groups}
    assert lrs["vision"] == (2e-6, 0.0, 3 * 8 * 8 * 16 + 16)
    assert lrs["default"][0] == 1e-5
    only_head = load_config("paper", ["train.trainable=[ground_head]"]).train
    optimizer = build_optimizer(model, only_head)
    assert [g["name"] for g in optimizer.param_groups] == ["default"]
    assert [n for n, p in model.named_parameters() if p.requires_grad] == ["ground_head.weight", "ground_head.bias"]
    frozen_all = load_config("paper", ["train.trainable=[fusion]"]).train  # the toy has no fusion
    with pytest.raises(ValueError, match="no trainable parameters"):
        build_optimizer(model, frozen_all)


def test_cosine_schedule_with_three_percent_warmup() -> None:
    train = load_config("paper").train  # lr 1e-5, warmup 0.03, cosine
    model = ToyModel()
    optimizer = build_optimizer(model, train)
    scheduler = build_scheduler(optimizer, train, total_steps=100)
    assert warmup_steps(100, 0.03) == 3
    lrs = []
    for _ in range(100):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert lrs[0] == 0.0 and lrs[1] == pytest.approx(1e-5 / 3) and lrs[3] == pytest.approx(1e-5)
    step = 50  # cosine: 0.5 (1 + cos(pi * (50 - 3) / 97))
    assert lrs[step] == pytest.approx(1e-5 * 0.5 * (1 + math.cos(math.pi * (step - 3) / 97)))
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.0)  # the vision group decays to 0 too


def test_gradient_norm_by_hand() -> None:
    from vega3d.train.trainer import gradient_norm

    layer = torch.nn.Linear(2, 1)
    assert gradient_norm(layer) is None  # no backward yet
    layer.weight.grad = torch.tensor([[3.0, 0.0]])
    layer.bias.grad = torch.tensor([4.0])
    assert gradient_norm(layer) == pytest.approx(5.0)  # sqrt(3^2 + 4^2)
