"""Batch samples with different frame counts and sequence lengths for ``Vega3DModel.forward``.

Token fields are right-padded to the longest sample: ``input_ids`` with the pad id, ``labels`` with -100 (ignored
by the loss), ``attention_mask`` 1 on real tokens. Visual and per-sample fields stay lists of per-sample tensors
(frame counts differ between samples); a list field is ``None`` when no sample in the batch has it, e.g.
``proposals`` outside grounding batches or ``generative_features`` for the baseline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from vega3d.model.configuration import IGNORE_INDEX

# Per-sample list fields passed to the model (sample key -> forward argument).
LIST_FIELDS: dict[str, str] = {
    "pixel_values": "pixel_values",
    "world_coords": "world_coords",
    "coord_valid": "coord_valid",
    "generative_features": "generative_features",
    "proposals": "proposals",
    "ground_positives": "ground_positives",
    "coord_box": "coord_boxes",
}


def pad_right(sequences: list[torch.Tensor], value: int) -> torch.Tensor:
    """[L_i] tensors -> [B, max L_i] right-padded with ``value``."""
    return torch.nn.utils.rnn.pad_sequence(sequences, batch_first=True, padding_value=value)


@dataclass
class Vega3DCollator:
    """Turns a list of dataset samples into model inputs plus ``ids`` and ``tasks``."""

    pad_token_id: int

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        if not samples:
            raise ValueError("cannot collate an empty batch")
        input_ids = [s["input_ids"] for s in samples]
        lengths = torch.tensor([len(ids) for ids in input_ids])
        batch: dict[str, Any] = {
            "input_ids": pad_right(input_ids, self.pad_token_id),  # [B, L]
            "labels": pad_right([s["labels"] for s in samples], IGNORE_INDEX),  # [B, L]
            # [B, L]: 1 where the position is a real token
            "attention_mask": (torch.arange(int(lengths.max()))[None, :] < lengths[:, None]).long(),
        }
        for key, arg in LIST_FIELDS.items():
            values = [s.get(key) for s in samples]
            batch[arg] = None if all(v is None for v in values) else values
        batch["ids"] = [s["id"] for s in samples]
        batch["tasks"] = [s["task"] for s in samples]
        return batch


def model_inputs(batch: dict[str, Any]) -> dict[str, Any]:
    """The subset of a collated batch that ``Vega3DModel.forward`` takes."""
    return {k: v for k, v in batch.items() if k not in ("ids", "tasks")}
