"""Grounding (ScanRefer, Multi3DRefer): object features, the ``infonce`` head and the selection rules.

SPEC.md section 2, "Grounding". Scores are a vector [K + 1]: the K proposals, then the learned
zero-target ("no object") at the end.

A batch is scored in tensor ops (``batch_ground_scores``): samples that share a scene's tensors (the same
E, world-map and valid-mask objects, as the samples of one scene in an evaluation batch do) and equal
proposals form one group; the groups are padded to a common frame and box count; patch membership, object
features and the object MLP run once per group, the query MLP and the cosine scores for the whole batch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from vega3d.model.position_encoding import encode_positions

# Pixel tests per chunk of boxes in ``patch_box_membership`` (bounded memory: 64M booleans).
MEMBERSHIP_CHUNK_ELEMENTS = 1 << 26


def patch_box_membership(
    world: torch.Tensor,
    valid: torch.Tensor,
    boxes: torch.Tensor,
    patch: int,
    patch_grid: int,
    margin: float = 0.0,
    chunk_elements: int = MEMBERSHIP_CHUNK_ELEMENTS,
) -> torch.Tensor:
    """Which vision patches belong to which box.

    world [(U,) V, S, S, 3] metres, valid [(U,) V, S, S] bool, boxes [(U,) K, 6] (cx, cy, cz, dx, dy, dz) ->
    member [(U,) K, V * patch_grid * patch_grid] bool: at least half of the patch's patch x patch pixels
    have valid world coordinates inside the box grown by ``margin`` metres on every side (an integer count,
    so the half is exact). The optional leading U is a batch of scenes, each with its own K boxes. fp32, all
    boxes of all scenes in one tensor op per chunk of at most ``chunk_elements`` pixel tests.
    """
    single = world.dim() == 4
    if single:
        world, valid, boxes = world[None], valid[None], boxes[None]
    groups, frames = world.shape[:2]
    num_boxes = boxes.shape[1]
    covered = patch_grid * patch
    planes = world[:, :, :covered, :covered].float().permute(4, 0, 1, 2, 3).unsqueeze(2)  # [3, U, 1, V, s, s]
    ok = valid[:, :, :covered, :covered].unsqueeze(1)  # [U, 1, V, s, s]
    low = (boxes[..., :3] - boxes[..., 3:] / 2 - margin).float()  # [U, K, 3]
    high = (boxes[..., :3] + boxes[..., 3:] / 2 + margin).float()
    bounds = torch.stack([low, high], dim=-1).reshape(groups, num_boxes, 1, 1, 1, 3, 2)
    member = torch.zeros(groups, num_boxes, frames, patch_grid, patch_grid, dtype=torch.bool, device=world.device)
    step = max(1, chunk_elements // max(1, groups * frames * covered * covered))
    for start in range(0, num_boxes, step):  # chunks of boxes (memory), not a loop per box or per sample
        chunk = bounds[:, start : start + step]  # [U, k, 1, 1, 1, 3, 2]
        inside = ok
        for axis in range(3):
            inside = inside & (planes[axis] >= chunk[..., axis, 0]) & (planes[axis] <= chunk[..., axis, 1])
        k = inside.shape[1]  # inside [U, k, V, s, s]
        count = inside.reshape(groups, k, frames, patch_grid, patch, patch_grid, patch).sum(dim=(4, 6))
        member[:, start : start + k] = 2 * count >= patch * patch
    member = member.reshape(groups, num_boxes, frames * patch_grid * patch_grid)
    return member[0] if single else member


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

    patch_features E [(U,) V, P*P, d], world [(U,) V, S, S, 3], valid [(U,) V, S, S], boxes [(U,) K, 6]
    -> [(U,) K, d] in E's dtype. A box that no patch qualifies for gets zero + sin3d(centre) (the released
    rule, SPEC.md section 7 item 5), the centre discretised as the position encoding does.
    ``margin``: see ``patch_box_membership``.
    """
    single = patch_features.dim() == 3
    if single:
        patch_features, world, valid, boxes = patch_features[None], world[None], valid[None], boxes[None]
    groups, frames, tokens, dim = patch_features.shape
    patch_grid = int(round(tokens**0.5))
    member = patch_box_membership(world, valid, boxes, patch, patch_grid, margin)  # [U, K, V*P*P]
    count = member.sum(dim=-1, keepdim=True).float()  # [U, K, 1]
    flat = patch_features.reshape(groups, frames * tokens, dim)  # [U, V*P*P, d]
    mean = torch.bmm(member.to(flat.dtype), flat).float() / count.clamp_min(1.0)  # [U, K, d] fp32, 0 if no patch
    feats = (mean + encode_positions(boxes[..., :3], dim, discrete)).to(patch_features.dtype)
    return feats[0] if single else feats


def _mlp(dim: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.LayerNorm(dim), nn.Linear(dim, dim))


class InfoNCEGroundHead(nn.Module):
    """Scores = cosine(MLP_obj([objects; zero_target]), MLP_query(query)), shape [..., K + 1]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.zero_target = nn.Parameter(torch.zeros(dim))
        self.object_mlp = _mlp(dim)
        self.query_mlp = _mlp(dim)

    def embed_objects(self, objects: torch.Tensor) -> torch.Tensor:
        """objects [..., K, d] -> MLP_obj([objects; zero_target]) [..., K + 1, d] fp32."""
        zero = self.zero_target.to(objects.dtype).expand(*objects.shape[:-2], 1, objects.shape[-1])
        return self.object_mlp(torch.cat([objects, zero], dim=-2)).float()

    def embed_query(self, query: torch.Tensor) -> torch.Tensor:
        """query [..., d] -> MLP_query(query) [..., d] fp32."""
        return self.query_mlp(query).float()

    def forward(self, objects: torch.Tensor, query: torch.Tensor) -> torch.Tensor:
        """objects [..., K, d], query [..., d] -> scores [..., K + 1] fp32 (last = zero-target)."""
        return F.cosine_similarity(self.embed_objects(objects), self.embed_query(query).unsqueeze(-2), dim=-1)


def infonce_loss(
    scores: torch.Tensor, positives: torch.Tensor, temperature: float, valid: torch.Tensor | None = None
) -> torch.Tensor:
    """-log(sum_pos e^{s/t} / sum_all e^{s/t}); scores [..., K + 1], positives [..., K] bool -> loss [...].

    The zero-target (last score) is the positive when no proposal is. ``valid`` [..., K] marks real proposals
    of a padded batch (padding takes no part in either sum).
    """
    real = torch.ones_like(positives, dtype=torch.bool) if valid is None else valid.bool()
    pos = torch.cat([positives.bool() & real, torch.zeros_like(real[..., :1])], dim=-1)  # [..., K + 1]
    pos[..., -1] = ~pos.any(dim=-1)
    logits = scores.float() / temperature
    every = torch.cat([real, torch.ones_like(real[..., :1])], dim=-1)
    return torch.logsumexp(logits.masked_fill(~every, -torch.inf), dim=-1) - torch.logsumexp(
        logits.masked_fill(~pos, -torch.inf), dim=-1
    )


def _pad_stack(tensors: Sequence[torch.Tensor], length: int) -> torch.Tensor:
    """Tensors [n_i, ...] -> [len, length, ...], zero-padded along the first dimension."""
    if all(t.shape[0] == length for t in tensors):
        return torch.stack(list(tensors))
    out = tensors[0].new_zeros(len(tensors), length, *tensors[0].shape[1:])
    for row, tensor in enumerate(tensors):  # padding copies, one per group
        out[row, : tensor.shape[0]] = tensor
    return out


def scene_groups(
    patch_features: Sequence[torch.Tensor], world: Sequence[torch.Tensor], valid: Sequence[torch.Tensor],
    boxes: Sequence[torch.Tensor],
) -> tuple[list[int], torch.Tensor]:
    """Samples with the same E, world and valid tensor objects and equal boxes share a group.

    -> (the first sample of each group, group index per sample [B] long).
    """
    firsts: list[int] = []
    group = []
    for i in range(len(boxes)):
        match = next((g for g, j in enumerate(firsts) if patch_features[j] is patch_features[i]
                      and world[j] is world[i] and valid[j] is valid[i] and boxes[j].shape == boxes[i].shape
                      and torch.equal(boxes[j], boxes[i])), None)
        if match is None:
            match = len(firsts)
            firsts.append(i)
        group.append(match)
    return firsts, torch.tensor(group, dtype=torch.long)


def batch_ground_scores(
    head: InfoNCEGroundHead,
    patch_features: Sequence[torch.Tensor],
    world: Sequence[torch.Tensor],
    valid: Sequence[torch.Tensor],
    boxes: Sequence[torch.Tensor],
    queries: torch.Tensor,
    patch: int,
    discrete: bool = True,
    margin: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores of a batch of B grounding samples in tensor ops.

    Per sample: E [V_i, P*P, d], world [V_i, S, S, 3], valid [V_i, S, S], boxes [K_i, 6]; queries [B, d]
    (hidden state at ``<ground>``) -> (scores [B, K_max + 1] fp32, last column = zero-target; real [B, K_max]
    bool, the real proposals of each row). Sample i's scores are ``cat(scores[i, :K_i], scores[i, -1:])``.
    """
    firsts, group = scene_groups(patch_features, world, valid, boxes)
    frames = max(patch_features[i].shape[0] for i in firsts)
    most = max(boxes[i].shape[0] for i in firsts)
    objects = object_features(
        _pad_stack([patch_features[i] for i in firsts], frames), _pad_stack([world[i] for i in firsts], frames),
        _pad_stack([valid[i] for i in firsts], frames), _pad_stack([boxes[i] for i in firsts], most),
        patch, discrete, margin,
    )  # [U, K_max, d]; padded frames have no valid pixel, padded boxes are masked below
    embedded = head.embed_objects(objects)[group.to(objects.device)]  # [B, K_max + 1, d]
    scores = F.cosine_similarity(embedded, head.embed_query(queries).unsqueeze(1), dim=-1)  # [B, K_max + 1]
    counts = torch.tensor([b.shape[0] for b in boxes], device=scores.device)
    real = torch.arange(most, device=scores.device) < counts[:, None]  # [B, K_max]
    return scores, real


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
