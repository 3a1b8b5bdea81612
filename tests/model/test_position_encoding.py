"""sin3d against a direct evaluation of SPEC.md's formula, and world-map pooling without invalid pixels."""

import math

import pytest
import torch

from tests.model.helpers import frames, tiny_model
from vega3d.model.position_encoding import discretize, encode_positions, pool_world_coords, sin3d


def formula(point: tuple[float, float, float], dim: int) -> list[float]:
    """SPEC.md, item 6, written out scalar by scalar."""
    low, high = (-15.0, -15.0, -5.0), (15.0, 15.0, 5.0)
    grid = [round((min(max(c, lo), hi) - lo) / 0.1) for c, lo, hi in zip(point, low, high, strict=True)]
    per_axis = dim // 3
    values = []
    for c in grid:
        for i in range(per_axis):
            f = 10000.0 ** (2 * (i // 2) / per_axis)
            values.append(math.sin(c / f) if i % 2 == 0 else math.cos(c / f))
    return values + [0.0] * (dim - 3 * per_axis)


@pytest.mark.parametrize("dim", [10, 64, 3584])
def test_sin3d_matches_formula_at_hand_picked_points(dim):
    points = [(1.23, -20.0, 4.96), (0.0, 0.0, 0.0), (-15.0, 15.0, -5.0), (3.14159, -2.71, 12.0)]
    got = encode_positions(torch.tensor(points, dtype=torch.float64), dim)
    assert got.dtype == torch.float32 and got.shape == (len(points), dim)
    expected = torch.tensor([formula(p, dim) for p in points], dtype=torch.float32)
    # fp32 phases c / f with c up to 300: one ulp of the phase is ~3e-5, so allow 5e-5
    torch.testing.assert_close(got, expected, atol=5e-5, rtol=0)


def test_discretize_clamps_shifts_and_rounds():
    got = discretize(torch.tensor([[1.23, -20.0, 4.96], [20.0, 0.04, -6.0]]))
    assert got.tolist() == [[162.0, 0.0, 100.0], [300.0, 150.0, 0.0]]
    continuous = discretize(torch.tensor([[1.23, 0.0, 0.0]]), discrete=False)
    assert continuous[0, 0].item() == pytest.approx(162.3, abs=1e-4)


def test_sin3d_small_dim_layout():
    # dim 7: F = 2 per axis -> [sin(x), cos(x), sin(y), cos(y), sin(z), cos(z), 0]
    got = sin3d(torch.tensor([2.0, 3.0, 5.0]), 7)
    expected = [math.sin(2), math.cos(2), math.sin(3), math.cos(3), math.sin(5), math.cos(5), 0.0]
    torch.testing.assert_close(got, torch.tensor(expected), atol=1e-6, rtol=0)


def test_pooling_excludes_invalid_pixels():
    world = torch.zeros(1, 4, 4, 3)
    world[0, 0, 0] = torch.tensor([1.0, 2.0, 3.0])
    world[0, 0, 1] = torch.tensor([3.0, 4.0, 5.0])
    world[0, 1, 0] = torch.tensor([100.0, 100.0, 100.0])  # invalid: must not count
    valid = torch.zeros(1, 4, 4, dtype=torch.bool)
    valid[0, 0, 0] = valid[0, 0, 1] = True
    valid[0, 2:, 2:] = True  # bottom-right cell, coordinates 0
    coords, token_valid = pool_world_coords(world, valid, covered=4, grid=2)
    assert token_valid.tolist() == [[[True, False], [False, True]]]
    assert coords[0, 0, 0].tolist() == [2.0, 3.0, 4.0]
    assert coords[0, 1, 1].tolist() == [0.0, 0.0, 0.0]


def test_pooling_uses_only_the_pixels_the_tower_sees():
    world = torch.ones(1, 6, 6, 3)
    world[:, 4:, :] = 50.0  # rows beyond covered=4 are cropped away, like SigLIP's last 6 pixels
    world[:, :, 4:] = 50.0
    coords, _ = pool_world_coords(world, torch.ones(1, 6, 6, dtype=torch.bool), covered=4, grid=2)
    assert torch.equal(coords, torch.ones(1, 2, 2, 3))


def test_tokens_per_frame_is_grid_times_grid_plus_one():
    model = tiny_model()
    g = model.config.pooled_grid
    sample = frames(model, 3, seed=0)
    feats = model.encode_frames(sample["pixel_values"])
    assert feats.shape == (3, model.config.patch_grid**2, model.config.hidden_size)
    tokens = model.visual_tokens(feats, sample["world_coords"], sample["coord_valid"], sample["generative_features"])
    assert tokens.shape == (3 * g * (g + 1), model.config.hidden_size)
    assert model.config.tokens_per_frame == g * (g + 1) == model.tokens_for_frames(1)
    # the newline vector closes every row of every frame
    rows = tokens.reshape(3, g, g + 1, -1)
    assert torch.equal(rows[:, :, -1], model.image_newline.expand(3, g, -1))


def test_geometry_stays_fp32_under_bf16():
    model = tiny_model().to(torch.bfloat16)
    sample = frames(model, 1, seed=0)
    pos = model.position_encoding(sample["world_coords"], sample["coord_valid"])
    assert pos.dtype == torch.float32
    coords, ok = pool_world_coords(sample["world_coords"], sample["coord_valid"], model.position_encoding.covered,
                                   model.config.pooled_grid)
    expected = encode_positions(coords, model.config.hidden_size) * ok.unsqueeze(-1)
    assert torch.equal(pos, expected)
