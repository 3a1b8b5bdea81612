"""Grounding: patch selection, object features, InfoNCE loss, ScanRefer / Multi3DRefer selection rules."""

import math

import pytest
import torch

from vega3d.model.grounding import (
    InfoNCEGroundHead,
    caption_box,
    infonce_loss,
    object_features,
    patch_box_membership,
    select_multi3drefer,
    select_scanrefer,
)
from vega3d.model.position_encoding import encode_positions


def pixel_grid_world() -> tuple[torch.Tensor, torch.Tensor]:
    """One 4x4 frame (2x2 patches of 2x2 pixels); pixel (r, c) sits at world (c + .5, r + .5, 0)."""
    rows, cols = torch.meshgrid(torch.arange(4.0), torch.arange(4.0), indexing="ij")
    world = torch.stack([cols + 0.5, rows + 0.5, torch.zeros(4, 4)], dim=-1).unsqueeze(0)  # [1, 4, 4, 3]
    return world, torch.ones(1, 4, 4, dtype=torch.bool)


# Box A covers x in [0, 3], y in [0, 2]: all 4 pixels of patch (0,0), 2 of 4 of patch (0,1), none else.
BOX_A = [1.5, 1.0, 0.0, 3.0, 2.0, 1.0]
BOX_EMPTY = [10.0, 10.0, 0.0, 1.0, 1.0, 1.0]


def test_patch_membership_needs_half_the_pixels():
    world, valid = pixel_grid_world()
    member = patch_box_membership(world, valid, torch.tensor([BOX_A, BOX_EMPTY]), patch=2, patch_grid=2)
    assert member.tolist() == [[True, True, False, False], [False, False, False, False]]
    valid[0, 0, 2] = False  # patch (0,1) now has 1 of 4 pixels inside -> excluded
    member = patch_box_membership(world, valid, torch.tensor([BOX_A]), patch=2, patch_grid=2)
    assert member.tolist() == [[True, False, False, False]]


def test_patch_membership_margin_keeps_points_on_the_box_faces():
    # A 2x2-pixel patch on the face x = 3 of a box spanning x in [1, 3]: depth quantisation puts the
    # back-projected points 0.4 mm either side of the face, two of them outside the box.
    world = torch.tensor([[[[3.0004, 0.5, 0.5], [2.9996, 1.5, 0.5]], [[3.0004, 0.5, 1.5], [3.0004, 1.5, 1.5]]]])
    valid = torch.ones(1, 2, 2, dtype=torch.bool)
    box = torch.tensor([[2.0, 1.0, 1.0, 2.0, 2.0, 2.0]])
    assert patch_box_membership(world, valid, box, patch=2, patch_grid=1).tolist() == [[False]]  # 1 of 4 inside
    assert patch_box_membership(world, valid, box, patch=2, patch_grid=1, margin=0.001).tolist() == [[True]]
    feats = torch.ones(1, 1, 6)
    empty, kept = (object_features(feats, world, valid, box, patch=2, margin=m) for m in (0.0, 0.001))
    assert torch.equal(empty, torch.zeros(1, 6))
    torch.testing.assert_close(kept[0], 1.0 + encode_positions(box[0, :3], 6))


def test_object_features_mean_plus_centre_encoding_and_zero_when_empty():
    world, valid = pixel_grid_world()
    dim = 6
    feats = torch.arange(4 * dim, dtype=torch.float32).reshape(1, 4, dim)  # E of patches 0..3
    got = object_features(feats, world, valid, torch.tensor([BOX_A, BOX_EMPTY]), patch=2)
    expected_a = (feats[0, 0] + feats[0, 1]) / 2 + encode_positions(torch.tensor(BOX_A[:3]), dim)
    torch.testing.assert_close(got[0], expected_a)
    assert torch.equal(got[1], torch.zeros(dim))


def test_infonce_loss_by_hand():
    # tau = 1 and scores ln(4), ln(3), ln(2), zero-target ln(1): e^s = 4, 3, 2, 1 (sum 10)
    scores = torch.tensor([math.log(4), math.log(3), math.log(2), 0.0])
    loss = infonce_loss(scores, torch.tensor([True, False, True]), temperature=1.0)
    assert loss.item() == pytest.approx(-math.log(6 / 10), abs=1e-6)
    no_target = infonce_loss(scores, torch.tensor([False, False, False]), temperature=1.0)
    assert no_target.item() == pytest.approx(-math.log(1 / 10), abs=1e-6)
    scaled = infonce_loss(scores * 0.07, torch.tensor([True, False, False]), temperature=0.07)
    assert scaled.item() == pytest.approx(-math.log(4 / 10), abs=1e-5)


def test_scanrefer_takes_best_real_proposal_even_if_zero_target_wins():
    assert select_scanrefer(torch.tensor([0.1, 0.5, 0.3, 0.9])) == 1


def test_multi3drefer_zero_target_wins_predicts_nothing():
    assert select_multi3drefer(torch.tensor([0.2, 0.8, 0.85]), temperature=0.07, threshold=0.4) == []


@pytest.mark.parametrize(("threshold", "expected"), [(0.35, [0]), (0.5, [0, 1]), (0.85, [0, 1, 2])])
def test_multi3drefer_cumulative_threshold(threshold, expected):
    # tau = 1: p = 0.4, 0.3, 0.2 for the proposals and 0.1 for the zero-target
    scores = torch.tensor([math.log(4), math.log(3), math.log(2), 0.0])
    assert select_multi3drefer(scores, temperature=1.0, threshold=threshold) == expected


def test_multi3drefer_orders_by_probability():
    scores = torch.tensor([math.log(2), math.log(4), math.log(3), 0.0])
    assert select_multi3drefer(scores, temperature=1.0, threshold=0.6) == [1, 2]


def test_head_scores_are_cosines_with_zero_target_last():
    torch.manual_seed(0)
    head = InfoNCEGroundHead(8)
    objects, query = torch.randn(3, 8), torch.randn(8)
    scores = head(objects, query)
    assert scores.shape == (4,)
    objs = head.object_mlp(torch.cat([objects, head.zero_target[None]]))
    q = head.query_mlp(query[None])
    torch.testing.assert_close(scores, torch.nn.functional.cosine_similarity(objs, q))
    assert scores.abs().max() <= 1.0


def test_empty_object_gets_a_finite_gradient_from_the_initialised_head():
    """A zero object feature must not land on the cosine's singular point (MLP output exactly 0)."""
    from tests.model.helpers import tiny_model

    model = tiny_model()
    head = model.ground_head
    dim = head.zero_target.numel()
    assert head.object_mlp[0].bias.abs().max() > 0  # torch's default bias init, not zeros
    assert head.object_mlp(torch.zeros(1, dim)).norm() > 0.1
    objects = torch.cat([torch.zeros(1, dim), torch.randn(2, dim) * 5.0])  # one object no patch qualified for
    loss = infonce_loss(head(objects, torch.randn(dim)), torch.tensor([False, True, False]), temperature=0.07)
    loss.backward()
    grad_norm = torch.cat([p.grad.reshape(-1) for p in head.parameters()]).norm()
    assert torch.isfinite(grad_norm) and grad_norm < 1e3, grad_norm  # ~1e8 with zero biases
    with torch.no_grad():
        head.object_mlp[0].bias.zero_()  # the transformers default: 0 maps to exactly 0 -> singular cosine
    head.zero_grad()
    infonce_loss(head(objects, torch.randn(dim)), torch.tensor([False, True, False]), 0.07).backward()
    assert torch.cat([p.grad.reshape(-1) for p in head.parameters()]).norm() > 1e5


def test_caption_box_best_proposal_above_iou():
    gt = torch.tensor([0.0, 0.0, 0.0, 2.0, 2.0, 2.0])
    # IoU with gt: identical box 1.0; half-shifted box 4 / (8 + 8 - 4) = 1/3
    proposals = torch.tensor([[1.0, 0.0, 0.0, 2.0, 2.0, 2.0], [0.0, 0.0, 0.0, 2.0, 2.0, 2.0]])
    assert torch.equal(caption_box(gt, proposals), proposals[1])
    assert caption_box(gt, proposals[:1]) is None  # 1/3 < 0.5
    assert torch.equal(caption_box(gt, proposals[:1], min_iou=0.3), proposals[0])
    assert caption_box(gt, torch.zeros(0, 6)) is None
