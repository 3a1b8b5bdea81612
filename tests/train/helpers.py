"""A toy model and data set with the Vega3DModel call contract, for testing the training machinery fast, and
the runner of ``tests/train/worker.py`` processes.

ToyModel takes the same forward arguments as ``Vega3DModel`` (lists of per-sample visual tensors, proposals
and ground positives for grounding samples) and returns ``loss`` plus ``sample_losses`` [B]. Its parameter
names follow the real model's parts (``vision_tower``, ``language_model``, ``ground_head``). No dropout, so fp32
runs are deterministic. ToyDataset draws every sample from a generator seeded by its index.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vega3d.config import ALL_TASKS

ROOT = Path(__file__).resolve().parents[2]
WORKER = ROOT / "tests" / "train" / "worker.py"
VOCAB = 32
IMAGE = 8


@dataclass
class ToyOutput:
    loss: torch.Tensor
    sample_losses: torch.Tensor


class ToyModel(nn.Module):
    """Mean-pooled 'vision' feature added to token embeddings; next-token LM loss or box-scoring loss."""

    def __init__(self, width: int = 16) -> None:
        super().__init__()
        self.vision_tower = nn.Linear(3 * IMAGE * IMAGE, width)
        self.language_model = nn.ModuleDict({"embed": nn.Embedding(VOCAB, width), "mlp": nn.Linear(width, width),
                                  "head": nn.Linear(width, VOCAB)})
        self.ground_head = nn.Linear(6, width)

    def forward(self, input_ids, attention_mask, labels=None, pixel_values=None, world_coords=None,
                coord_valid=None, generative_features=None, proposals=None, ground_positives=None,
                coord_boxes=None):
        visual = torch.stack([self.vision_tower(p.flatten(1)).mean(0) for p in pixel_values])  # [B, W]
        hidden = torch.tanh(self.language_model["mlp"](self.language_model["embed"](input_ids) + visual[:, None]))  # [B, L, W]
        logits = self.language_model["head"](hidden)  # [B, L, V]
        token_loss = nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), labels[:, 1:], ignore_index=-100, reduction="none"
        )  # [B, L-1]
        counts = (labels[:, 1:] != -100).sum(1).clamp(min=1)
        sample_losses = token_loss.sum(1) / counts  # [B]
        if proposals is not None:
            query = hidden[torch.arange(len(input_ids)), attention_mask.sum(1) - 1]  # [B, W]
            ground = []
            for b, (boxes, positive) in enumerate(zip(proposals, ground_positives, strict=True)):
                scores = self.ground_head(boxes) @ query[b]  # [K]
                ground.append(torch.logsumexp(scores, 0) - torch.logsumexp(scores[positive], 0))
            sample_losses = torch.stack(ground)
        return ToyOutput(loss=sample_losses.mean(), sample_losses=sample_losses)


class ToyDataset(torch.utils.data.Dataset):
    """``size`` samples cycling over the five tasks; learnable targets (next token = token + 1)."""

    def __init__(self, size: int = 40) -> None:
        self.tasks = [ALL_TASKS[i % len(ALL_TASKS)] for i in range(size)]

    def __len__(self) -> int:
        return len(self.tasks)

    def __getitem__(self, index: int) -> dict:
        gen = torch.Generator().manual_seed(1000 + index)
        length = int(torch.randint(5, 12, (1,), generator=gen))
        start = int(torch.randint(0, VOCAB, (1,), generator=gen))
        input_ids = (start + torch.arange(length)) % VOCAB
        labels = input_ids.clone()
        labels[:2] = -100
        frames = int(torch.randint(1, 4, (1,), generator=gen))
        task = self.tasks[index]
        sample = {
            "id": f"toy-{index}",
            "task": task,
            "input_ids": input_ids,
            "labels": labels,
            "pixel_values": torch.rand(frames, 3, IMAGE, IMAGE, generator=gen),
            "world_coords": torch.rand(frames, IMAGE, IMAGE, 3, generator=gen),
            "coord_valid": torch.ones(frames, IMAGE, IMAGE, dtype=torch.bool),
        }
        if task in ("scanrefer", "multi3drefer"):
            boxes = torch.rand(5, 6, generator=gen)
            sample["proposals"] = boxes
            sample["ground_positives"] = boxes[:, 0] == boxes[:, 0].max()  # learnable: the box with largest x
        return sample


def run_worker(tmp: Path, name: str, nproc: int, overrides: list[str], env: dict | None = None,
               check: bool = True) -> dict | None:
    """Run ``tests/train/worker.py`` with ``nproc`` processes, output under ``tmp/name``; returns its result
    JSON (None when it died and ``check`` is False)."""
    result = tmp / f"{name}.json"
    if nproc == 1:
        command = [sys.executable, str(WORKER)]
    else:
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", str(WORKER)]
    full_env = {**os.environ, "TORCH_EXTENSIONS_DIR": str(ROOT / ".cache" / "torch_extensions"), **(env or {})}
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        full_env.pop(key, None)
    args = [str(result), f"train.output_uri={tmp / name}", *overrides]
    proc = subprocess.run(command + args, env=full_env, capture_output=True, text=True, timeout=600)
    if check:
        assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads(result.read_text()) if result.exists() else None
