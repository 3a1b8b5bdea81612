"""Grounding (ScanRefer, Multi3DRefer): object features, the ``infonce`` head and the selection rules.

SPEC.md section 2, "Grounding". Scores are a vector [K + 1]: the K proposals, then the learned
zero-target ("no object") at the end.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from vega3d.model.position_encoding import encode_positions


def patch_box_membership(
    world: torch.Tensor, valid: torch.Tensor, boxes: torch.Tensor, patch: int, patch_grid: int, margin: float = 0.0
) -> torch.Tensor:
    """Which vision patches belong to which box.

    world [V, S, S, 3] metres, valid [V, S, S] bool, boxes [K, 6] (cx, cy, cz, dx, dy, dz) ->
    member [K, V * patch_grid * patch_grid] bool: at least half of the patch's patch x patch pixels
    have valid world coordinates inside the box grown by ``margin`` metres on every side. Computed in fp32,
    one box at a time (bounded memory).
    """
    covered = patch_grid * patch
    frames = world.shape[0]
    x, y, z = world[:, :covered, :covered].float().permute(3, 0, 1, 2).contiguous()  # 3 x [V, s, s] planes
    ok = valid[:, :covered, :covered]
    low = (boxes[:, :3] - boxes[:, 3:] / 2 - margin).float().tolist()
    high = (boxes[:, :3] + boxes[:, 3:] / 2 + margin).float().tolist()
    rows = []
    for lo, hi in zip(low, high, strict=True):  # K iterations over contiguous planes (bounded memory)
        inside = ok & (x >= lo[0]) & (x <= hi[0]) & (y >= lo[1]) & (y <= hi[1]) & (z >= lo[2]) & (z <= hi[2])
        frac = inside.float().reshape(frames, patch_grid, patch, patch_grid, patch).mean(dim=(2, 4))
        rows.append((frac >= 0.5).reshape(-1))  # [V * P * P]
    if not rows:
        return torch.zeros(0, frames * patch_grid * patch_grid, dtype=torch.bool, device=world.device)
    return torch.stack(rows)


def object_features(
    patch_features: torch.Tensor,
    world: torch.Tensor,
    valid: torch.Tensor,
    boxes: torch.Tensor,
    patch: int,
    discrete: bool = True,
    margin: float = 0.0,
) -> torch.Tensor:
    """Feature per box: mean of the pre-pooling projector features E over its patches + sin3d(centre).

    patch_features E [V, P*P, d], world [V, S, S, 3], valid [V, S, S], boxes [K, 6] -> [K, d] in E's dtype.
    A box that no patch qualifies for gets the zero vector. ``margin``: see ``patch_box_membership``.
    """
    frames, tokens, dim = patch_features.shape
    patch_grid = int(round(tokens**0.5))
    member = patch_box_membership(world, valid, boxes, patch, patch_grid, margin).float()  # [K, V*P*P]
    count = member.sum(dim=1, keepdim=True)  # [K, 1]
    flat = patch_features.reshape(frames * tokens, dim)  # [V*P*P, d]
    mean = (member.to(flat.dtype) @ flat).float() / count.clamp_min(1.0)  # [K, d] fp32
    feats = mean + encode_positions(boxes[:, :3], dim, discrete)  # [K, d]
    feats = torch.where(count > 0, feats, torch.zeros_like(feats))
    return feats.to(patch_features.dtype)


def _mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.LayerNorm(dim), nn.Linear(dim, dim))


class InfoNCEGroundHead(nn.Module):
    """Scores = cosine(MLP_obj([objects; zero_target]), MLP_query(query)), shape [K + 1]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.zero_target = nn.Parameter(torch.zeros(dim))
        self.object_mlp = _mlp(dim)
        self.query_mlp = _mlp(dim)

    def forward(self, objects: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """objects [K, d], query [d] -> scores [K + 1] fp32 (last = zero-target)."""
        objs = torch.cat([objects, self.zero_target.to(objects.dtype).unsqueeze(0)], dim=0)  # [K+1, d]
        obj = self.object_mlp(objs).float()
        q = self.query_mlp(query.unsqueeze(0)).float()  # [1, d]
        return F.cosine_similarity(obj, q, dim=-1)  # [K+1]


def infonce_loss(scores: torch.Tensor, positives: torch.Tensor, temperature: float) -> torch.Tensor:
    """-log(sum_pos e^{s/t} / sum_all e^{s/t}); scores [K + 1], positives [K] bool.

    The zero-target (last score) is the positive when no proposal is.
    """
    pos = torch.cat([positives.bool(), positives.new_zeros(1, dtype=torch.bool)])
    if not pos.any():
        pos[-1] = True
    logits = scores.float() / temperature
    return torch.logsumexp(logits, dim=0) - torch.logsumexp(logits[pos], dim=0)


def select_scanrefer(scores: torch.Tensor) -> int:
    """ScanRefer: index of the best real proposal (the zero-target is ignored)."""
    return int(torch.argmax(scores[:-1]).item())


def select_multi3drefer(scores: torch.Tensor, temperature: float, threshold: float) -> list[int]:
    """Multi3DRefer: [] when the zero-target scores highest; otherwise, with p = softmax(s / t) over
    proposals + zero-target, add proposals in descending p until their cumulative p reaches ``threshold``.
    """
    if int(torch.argmax(scores).item()) == scores.numel() - 1:
        return []
    probs = torch.softmax(scores.double() / temperature, dim=0)[:-1]
    order = torch.argsort(probs, descending=True)
    chosen: list[int] = []
    total = 0.0
    for index in order.tolist():
        chosen.append(index)
        total += float(probs[index])
        if total >= threshold:
            break
    return chosen


def caption_box(gt_box: torch.Tensor, proposals: torch.Tensor, min_iou: float = 0.5) -> torch.Tensor | None:
    """Scan2Cap evaluation: the proposal [6] with the highest IoU to the ground-truth box when that IoU
    is >= ``min_iou``, else None (the object then gets an empty caption and still counts)."""
    from vega3d.data.boxes import box_iou_matrix

    if proposals.numel() == 0:
        return None
    ious = torch.from_numpy(box_iou_matrix(gt_box.reshape(1, 6).cpu().numpy(), proposals.cpu().numpy()))[0]
    best = int(torch.argmax(ious))
    return proposals[best] if float(ious[best]) >= min_iou else None
