"""Fusion of semantic (SigLIP) and generative tokens: every method of SPEC.md section 2, item 5.

Each module maps sem [V, g, g, d] and gen [V, g, g, d] (both already projected to the LLM width)
to fused [V', g, g, d]: V' = V for every method except ``none``, which keeps both token sets and
appends the generative frames after the semantic ones (V' = 2V). Build one with
``build_fusion(name, dim, heads)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class TokenGatedFusion(nn.Module):
    """a = LN1(sem), b = LN2(gen), g = sigmoid(w . [a; b] + c) (one scalar per token), out = g a + (1 - g) b."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_sem = nn.LayerNorm(dim)
        self.norm_gen = nn.LayerNorm(dim)
        self.gate = nn.Linear(2 * dim, 1)

    def gate_values(self, sem: torch.Tensor, gen: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """-> (a, b, g [..., 1])."""
        a, b = self.norm_sem(sem), self.norm_gen(gen)
        return a, b, torch.sigmoid(self.gate(torch.cat([a, b], dim=-1)))

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        a, b, g = self.gate_values(sem, gen)
        return g * a + (1 - g) * b


class AddFusion(nn.Module):
    """out = sem + gen (no parameters)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        return sem + gen


class ConcatFusion(nn.Module):
    """out = Linear(2d -> d)([LN(sem); LN(gen)])."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_sem = nn.LayerNorm(dim)
        self.norm_gen = nn.LayerNorm(dim)
        self.proj = nn.Linear(2 * dim, dim)

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([self.norm_sem(sem), self.norm_gen(gen)], dim=-1))


class WeightedFusion(nn.Module):
    """out = alpha sem + beta gen with two learned scalars (alpha starts at 1, beta at 0.5)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        # Start as the semantic path plus half the generative one, so a pretrained LLM sees familiar tokens.
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.beta = nn.Parameter(torch.tensor(0.5))

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        return self.alpha.to(sem.dtype) * sem + self.beta.to(sem.dtype) * gen


class GatedFusion(nn.Module):
    """Per-channel gate: g = sigmoid(Linear(2d -> d)([sem; gen])), out = g sem + (1 - g) gen."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.gate = nn.Linear(2 * dim, dim)

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(torch.cat([sem, gen], dim=-1)))
        return g * sem + (1 - g) * gen


def sincos_2d(grid: int, dim: int, device: torch.device | None = None) -> torch.Tensor:
    """Fixed 2D sin-cos positions [grid * grid, dim]: half the channels for rows, half for columns."""
    if dim % 4:
        raise ValueError(f"2D sin-cos positions need dim divisible by 4, got {dim}")
    quarter = dim // 4
    omega = 1.0 / (10000.0 ** (torch.arange(quarter, device=device, dtype=torch.float32) / quarter))  # [d/4]
    pos = torch.arange(grid, device=device, dtype=torch.float32)
    rows, cols = torch.meshgrid(pos, pos, indexing="ij")  # [g, g]

    def encode(p: torch.Tensor) -> torch.Tensor:
        angles = p.reshape(-1, 1) * omega  # [g*g, d/4]
        return torch.cat([torch.sin(angles), torch.cos(angles)], dim=-1)  # [g*g, d/2]

    return torch.cat([encode(rows), encode(cols)], dim=-1)  # [g*g, d]


class CrossAttentionFusion(nn.Module):
    """Semantic queries attend to generative keys/values of the same frame, then a residual MLP.

    q = LN(sem) + P, k = LN(gen) + P, v = LN(gen) with P the 2D sin-cos positions of the token grid;
    x = sem + Attn(q, k, v); out = x + MLP(LN(x)).
    """

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_kv = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        frames, grid, _, dim = sem.shape
        pos = sincos_2d(grid, dim, sem.device).to(sem.dtype)  # [g*g, d]
        s = sem.reshape(frames, grid * grid, dim)  # [V, g*g, d]
        kv = self.norm_kv(gen.reshape(frames, grid * grid, dim))
        attended, _ = self.attn(self.norm_q(s) + pos, kv + pos, kv, need_weights=False)
        x = s + attended
        x = x + self.mlp(self.norm_mlp(x))
        return x.reshape(frames, grid, grid, dim)


class OnlyGenerativeFusion(nn.Module):
    """out = gen (the semantic tokens are dropped)."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        return gen


class AppendFusion(nn.Module):
    """No fusion: the generative frames follow the semantic frames, out [2V, g, g, d]."""

    def __init__(self, dim: int, heads: int) -> None:
        super().__init__()

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        return torch.cat([sem, gen], dim=0)


FUSIONS: dict[str, Callable[[int, int], nn.Module]] = {
    "token_gated": TokenGatedFusion,
    "add": AddFusion,
    "concat": ConcatFusion,
    "weighted": WeightedFusion,
    "gated": GatedFusion,
    "cross_attention": CrossAttentionFusion,
    "only": OnlyGenerativeFusion,
    "none": AppendFusion,
}


def build_fusion(name: str, dim: int, heads: int) -> nn.Module:
    """The fusion module called ``name`` (one of ``FUSIONS``) for width ``dim``."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}: choose one of {sorted(FUSIONS)}")
    return FUSIONS[name](dim, heads)


def frames_multiplier(name: str) -> int:
    """V' / V of a fusion method: 2 for ``none`` (append), else 1."""
    return 2 if name == "none" else 1


