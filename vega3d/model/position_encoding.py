"""3D position encoding ``avg-discrete-sin3d`` (SPEC.md section 2, item 6) and world-map pooling.

Everything here runs in float32 whatever the model dtype: coordinates in metres lose the 0.1 m
resolution in bf16 (8 mantissa bits) long before 15 m. No learned parameters.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# Clamp range of the aligned scene frame in metres: x, y in [-15, 15], z in [-5, 5].
COORD_MIN = (-15.0, -15.0, -5.0)
COORD_MAX = (15.0, 15.0, 5.0)
VOXEL = 0.1


def discretize(coords: torch.Tensor, discrete: bool = True) -> torch.Tensor:
    """[..., 3] metres -> [..., 3] fp32 grid coordinates: clamp, shift by the minimum, / 0.1, round.

    ``discrete=False`` (the continuous option ``avg-sin3d``) skips the rounding.
    """
    coords = coords.float()
    low = coords.new_tensor(COORD_MIN)
    high = coords.new_tensor(COORD_MAX)
    scaled = (torch.minimum(torch.maximum(coords, low), high) - low) / VOXEL
    return torch.round(scaled) if discrete else scaled


def sin3d(grid_coords: torch.Tensor, dim: int) -> torch.Tensor:
    """[..., 3] grid coordinates -> [..., dim] fp32 encoding.

    Per axis F = dim // 3 features, f_i = 10000^(2 floor(i/2) / F); even i -> sin(c / f_i), odd i ->
    cos(c / f_i); x, y, z concatenated (3F) and zero-padded to ``dim``.
    """
    per_axis = dim // 3
    if per_axis == 0:
        raise ValueError(f"sin3d needs dim >= 3, got {dim}")
    index = torch.arange(per_axis, device=grid_coords.device, dtype=torch.float32)
    freq = torch.pow(10000.0, 2.0 * torch.div(index, 2, rounding_mode="floor") / per_axis)  # [F]
    phase = grid_coords.float().unsqueeze(-1) / freq  # [..., 3, F]
    even = (torch.arange(per_axis, device=grid_coords.device) % 2 == 0)  # [F]
    enc = torch.where(even, torch.sin(phase), torch.cos(phase))  # [..., 3, F]
    enc = enc.flatten(-2)  # [..., 3F]
    return F.pad(enc, (0, dim - 3 * per_axis))


def encode_positions(coords: torch.Tensor, dim: int, discrete: bool = True) -> torch.Tensor:
    """[..., 3] metres -> [..., dim] fp32: ``sin3d(discretize(coords))``."""
    return sin3d(discretize(coords, discrete), dim)


def pool_world_coords(
    world: torch.Tensor, valid: torch.Tensor, covered: int, grid: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Average the per-pixel world map over each token cell, excluding invalid pixels.

    world [V, S, S, 3] fp32 metres, valid [V, S, S] bool -> (coords [V, grid, grid, 3] fp32,
    token_valid [V, grid, grid] bool). Only the first ``covered`` pixels per side are used
    (= patch_grid * patch, the pixels the vision tower sees: 378 of 384); they are split into
    ``grid`` cells with adaptive average pooling. A cell without any valid pixel is invalid.
    """
    world = world[:, :covered, :covered].float()
    weight = valid[:, :covered, :covered].float().unsqueeze(1)  # [V, 1, s, s]
    summed = F.adaptive_avg_pool2d(world.permute(0, 3, 1, 2) * weight, grid)  # [V, 3, g, g]
    count = F.adaptive_avg_pool2d(weight, grid)  # [V, 1, g, g]
    coords = (summed / count.clamp_min(1e-12)).permute(0, 2, 3, 1)  # [V, g, g, 3]
    token_valid = count[:, 0] > 0  # [V, g, g]
    return torch.where(token_valid.unsqueeze(-1), coords, torch.zeros_like(coords)), token_valid


class Sin3DPositionEncoding(torch.nn.Module):
    """World map -> position embeddings for the token grid (zero where a token has no valid pixel)."""

    def __init__(self, dim: int, covered: int, grid: int, discrete: bool = True) -> None:
        super().__init__()
        self.dim, self.covered, self.grid, self.discrete = dim, covered, grid, discrete

    def forward(self, world: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """world [V, S, S, 3], valid [V, S, S] -> [V, grid, grid, dim] fp32."""
        coords, token_valid = pool_world_coords(world, valid, self.covered, self.grid)
        enc = encode_positions(coords, self.dim, self.discrete)  # [V, g, g, d]
        return enc * token_valid.unsqueeze(-1)
