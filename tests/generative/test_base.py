"""The shared encoder pieces: resize/crop modes, input checks, per-frame seeds, pooling."""

from __future__ import annotations

import pytest
import torch

from vega3d.generative.base import (
    SIGNED_UNIT,
    check_frames,
    frame_seed,
    pool_to_grid,
    resize_frames,
    seeded_noise,
)


def rows_frame() -> torch.Tensor:
    """[1, 3, 480, 640] whose value is the row index / 479 (a vertical ramp)."""
    ramp = torch.arange(480, dtype=torch.float32).div(479).view(1, 1, 480, 1)
    return ramp.expand(1, 3, 480, 640).contiguous()


def test_same_keeps_the_whole_frame_and_center_vertical_cuts_top_and_bottom():
    frame = rows_frame()
    same = resize_frames(frame, (832, 480), "same")
    crop = resize_frames(frame, (832, 480), "center_vertical")
    assert same.shape == crop.shape == (1, 3, 480, 832)
    # same: the squashed frame still spans rows 0..479 of the source.
    assert same[0, 0, 0, 0] < 0.01 and same[0, 0, -1, 0] > 0.99
    # center_vertical: 640x480 -> 832x624, rows 72..551 kept -> source rows 55..424 (of 479).
    assert crop[0, 0, 0, 0] == pytest.approx(72 * 480 / 624 / 479, abs=0.01)
    assert crop[0, 0, -1, 0] == pytest.approx((551 + 1) * 480 / 624 / 479, abs=0.01)
    # The same kernel as the SigLIP branch: bicubic with antialiasing, clamped to [0, 1].
    square = resize_frames(frame, (384, 384), "same")
    reference = torch.nn.functional.interpolate(frame, size=(384, 384), mode="bicubic", antialias=True).clamp(0, 1)
    assert torch.equal(square, reference)
    with pytest.raises(ValueError, match="crop must be one of"):
        resize_frames(frame, (64, 64), "left")


def test_input_checks_name_the_problem():
    with pytest.raises(ValueError, match=r"must be \[V, 3, H, W\]"):
        check_frames(torch.zeros(3, 64, 64))
    with pytest.raises(ValueError, match="divide uint8 frames by 255"):
        check_frames(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        check_frames(torch.full((1, 3, 8, 8), 255.0))
    check_frames(torch.rand(2, 3, 8, 8))


def test_signed_unit_normalisation_maps_to_minus_one_one():
    out = SIGNED_UNIT.apply(torch.tensor([0.0, 0.5, 1.0]).view(1, 1, 3, 1).expand(1, 3, 3, 1))
    assert out[0, :, :, 0].tolist() == [[-1.0, 0.0, 1.0]] * 3


def test_frame_seeds_are_stable_distinct_and_63_bit():
    seeds = {frame_seed(s, f, k) for s in ("scene0000_00", "scene0001_00") for f in (0, 10) for k in (0, 1)}
    assert len(seeds) == 8 and all(0 <= s < 2**63 for s in seeds)
    assert frame_seed("scene0000_00", 10, 0) == frame_seed("scene0000_00", 10, 0)
    noise = seeded_noise((2, 3), "scene0000_00", [0, 10, 0], 0, "cpu")
    assert torch.equal(noise[0], noise[2]) and not torch.equal(noise[0], noise[1])
    expected = torch.randn((2, 3), generator=torch.Generator().manual_seed(frame_seed("scene0000_00", 10, 0)))
    assert torch.equal(noise[1], expected)


def test_pooling_averages_uneven_bins():
    grid = torch.arange(6, dtype=torch.float32).view(1, 1, 1, 6).expand(1, 1, 2, 6)
    pooled = pool_to_grid(grid, 2)
    assert pooled.shape == (1, 1, 2, 2) and pooled[0, 0, 0].tolist() == [1.0, 4.0]
    assert pool_to_grid(pooled, 2) is pooled
