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


def test_released_siglip_square_crop_at_1280x720_equals_a_hand_built_tensor():
    """A 384x384 frame is its own SigLIP frame; bilinear 384 -> 1280 (align_corners False) samples source
    coordinate s(j) = (j + 0.5) * 0.3 - 0.5, clamped to [0, 383]; the middle 720 rows are rows 280..999.
    Channel 0 = row / 383 (rows 280..999 read s in 83.65..299.35, inside, so exactly linear);
    channel 1 = column / 383 (columns 0 and 1279 clamp to 0 and 1); channel 2 = 0.25 everywhere."""
    index = torch.arange(384, dtype=torch.float64) / 383
    frame = torch.stack([index.view(384, 1).expand(384, 384), index.view(1, 384).expand(384, 384),
                         torch.full((384, 384), 0.25, dtype=torch.float64)]).unsqueeze(0).float()  # [1, 3, 384, 384]
    out = resize_frames(frame, (1280, 720), "siglip_square", siglip_size=384)
    rows = ((torch.arange(280, 1000, dtype=torch.float64) + 0.5) * 0.3 - 0.5) / 383  # [720]
    cols = (((torch.arange(1280, dtype=torch.float64) + 0.5) * 0.3 - 0.5).clamp(0, 383)) / 383  # [1280]
    expected = torch.stack([rows.view(720, 1).expand(720, 1280), cols.view(1, 1280).expand(720, 1280),
                            torch.full((720, 1280), 0.25, dtype=torch.float64)]).unsqueeze(0)
    assert out.shape == (1, 3, 720, 1280)
    torch.testing.assert_close(out.double(), expected, atol=2e-6, rtol=0)
    assert out[0, 0, 0, 0].item() == pytest.approx(83.65 / 383, abs=1e-6)  # first kept row reads source 83.65
    # a 640x480 frame is first squashed to 384x384 like SigLIP's input, then upsampled: the top 280 and bottom
    # 280 of the 1280 rows (the top and bottom 21.9% of the field of view) are lost
    ramp = resize_frames(rows_frame(), (1280, 720), "siglip_square")
    assert ramp[0, 0, 0, 0].item() == pytest.approx(0.2178, abs=0.002) and ramp[0, 0, -1, 0].item() == pytest.approx(0.7822, abs=0.002)
    with pytest.raises(ValueError, match="width >= height"):
        resize_frames(frame, (480, 832), "siglip_square")


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
