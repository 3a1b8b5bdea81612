"""Fusion of semantic (SigLIP) and generative tokens: every method of SPEC.md section 2, item 5.

Each module maps sem [V, g, g, d] and gen [V, g, g, d] (both already projected to the LLM width)
to fused [V', g, g, d]: V' = V for every method except ``none``, which keeps both token sets and
appends the generative frames after the semantic ones (V' = 2V; the model adds the 3D position to the
semantic frames only). The ablations follow the released code (SPEC.md Parity 9). The two instruction-aware
fusions (``uses_context = True``) also take ``context`` [d], the mean embedding of the sample's instruction
(the user text after ``<image>``). Build one with ``build_fusion(name, dim)``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class TokenGatedFusion(nn.Module):
    """a = LN1(sem), b = LN2(gen), g = sigmoid(w . [a; b] + c) (one scalar per token), out = g a + (1 - g) b."""

    def __init__(self, dim: int) -> None:
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

    def __init__(self, dim: int) -> None:
        super().__init__()

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        return sem + gen


class ConcatFusion(nn.Module):
    """out = Linear(2d -> d)([LN(sem); LN(gen)])."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_sem = nn.LayerNorm(dim)
        self.norm_gen = nn.LayerNorm(dim)
        self.proj = nn.Linear(2 * dim, dim)

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        return self.proj(torch.cat([self.norm_sem(sem), self.norm_gen(gen)], dim=-1))


class WeightedFusion(nn.Module):
    """Convex: out = (w_sem sem + w_gen gen) / (w_sem + w_gen), two learned scalars starting at 0.5."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w_sem = nn.Parameter(torch.tensor(0.5))
        self.w_gen = nn.Parameter(torch.tensor(0.5))

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        w_sem, w_gen = self.w_sem.to(sem.dtype), self.w_gen.to(sem.dtype)
        return (w_sem * sem + w_gen * gen) / (w_sem + w_gen)


class GatedFusion(nn.Module):
    """Per-channel gate on normalised inputs: a = LN1(sem), b = LN2(gen), g = sigmoid(Linear(2d -> d)([a; b])),
    out = g a + (1 - g) b."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_sem = nn.LayerNorm(dim)
        self.norm_gen = nn.LayerNorm(dim)
        self.gate = nn.Linear(2 * dim, dim)

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        a, b = self.norm_sem(sem), self.norm_gen(gen)
        g = torch.sigmoid(self.gate(torch.cat([a, b], dim=-1)))
        return g * a + (1 - g) * b


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


CROSS_ATTENTION_HEADS = 8
CROSS_ATTENTION_DROPOUT = 0.1


class CrossAttentionFusion(nn.Module):
    """Semantic queries attend to generative keys/values of the same frame, then a residual MLP.

    q = LN_q(sem) + P, k = LN_k(gen) + P, v = LN_v(gen) with P the 2D sin-cos positions of the token grid
    (three separate LayerNorms); 8 heads, attention dropout 0.1; x = sem + Attn(q, k, v); out = x + MLP(LN(x)).
    """

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_q = nn.LayerNorm(dim)
        self.norm_k = nn.LayerNorm(dim)
        self.norm_v = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, CROSS_ATTENTION_HEADS, dropout=CROSS_ATTENTION_DROPOUT, batch_first=True)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        frames, grid, _, dim = sem.shape
        pos = sincos_2d(grid, dim, sem.device).to(sem.dtype)  # [g*g, d]
        s = sem.reshape(frames, grid * grid, dim)  # [V, g*g, d]
        kv = gen.reshape(frames, grid * grid, dim)
        attended, _ = self.attn(self.norm_q(s) + pos, self.norm_k(kv) + pos, self.norm_v(kv), need_weights=False)
        x = s + attended
        x = x + self.mlp(self.norm_mlp(x))
        return x.reshape(frames, grid, grid, dim)


class OnlyGenerativeFusion(nn.Module):
    """out = gen (the semantic tokens are dropped)."""

    def __init__(self, dim: int) -> None:
        super().__init__()

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        return gen


class AppendFusion(nn.Module):
    """No fusion: the generative frames follow the semantic frames, out [2V, g, g, d]."""

    def __init__(self, dim: int) -> None:
        super().__init__()

    def forward(self, sem: torch.Tensor, gen: torch.Tensor) -> torch.Tensor:
        return torch.cat([sem, gen], dim=0)


class InstructionTokenGatedFusion(TokenGatedFusion):
    """token_gated whose scalar gate also sees the instruction: c = LN3(context) broadcast to every token,
    g = sigmoid(w . [a; b; c] + bias), out = g a + (1 - g) b."""

    uses_context = True

    def __init__(self, dim: int) -> None:
        super().__init__(dim)
        self.norm_ctx = nn.LayerNorm(dim)
        self.gate = nn.Linear(3 * dim, 1)

    def forward(self, sem: torch.Tensor, gen: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        a, b = self.norm_sem(sem), self.norm_gen(gen)
        c = self.norm_ctx(context.to(sem.dtype)).expand_as(a)
        g = torch.sigmoid(self.gate(torch.cat([a, b, c], dim=-1)))
        return g * a + (1 - g) * b


class ContextGatedFusion(nn.Module):
    """A per-channel gate from the instruction alone, shared by every token of the sample:
    g = sigmoid(Linear(d -> d)(LN3(context))), out = g LN1(sem) + (1 - g) LN2(gen)."""

    uses_context = True

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm_sem = nn.LayerNorm(dim)
        self.norm_gen = nn.LayerNorm(dim)
        self.norm_ctx = nn.LayerNorm(dim)
        self.gate = nn.Linear(dim, dim)

    def forward(self, sem: torch.Tensor, gen: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        g = torch.sigmoid(self.gate(self.norm_ctx(context.to(sem.dtype))))  # [d]
        return g * self.norm_sem(sem) + (1 - g) * self.norm_gen(gen)


FUSIONS: dict[str, Callable[[int], nn.Module]] = {
    "token_gated": TokenGatedFusion,
    "add": AddFusion,
    "concat": ConcatFusion,
    "weighted": WeightedFusion,
    "gated": GatedFusion,
    "cross_attention": CrossAttentionFusion,
    "only": OnlyGenerativeFusion,
    "none": AppendFusion,
    "instruction_token_gated": InstructionTokenGatedFusion,
    "context_gated": ContextGatedFusion,
}


def build_fusion(name: str, dim: int) -> nn.Module:
    """The fusion module called ``name`` (one of ``FUSIONS``) for width ``dim``."""
    if name not in FUSIONS:
        raise ValueError(f"unknown fusion {name!r}: choose one of {sorted(FUSIONS)}")
    return FUSIONS[name](dim)


def uses_context(fusion: nn.Module) -> bool:
    """Whether a fusion module takes the instruction context as a third input."""
    return bool(getattr(fusion, "uses_context", False))


def frames_multiplier(name: str) -> int:
    """V' / V of a fusion method: 2 for ``none`` (append), else 1."""
    return 2 if name == "none" else 1
