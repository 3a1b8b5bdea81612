"""Fusion methods: parameter counts and outputs by hand, gradients for every method, frame layout of `none`."""

import math

import pytest
import torch

from tests.model.helpers import GROUND, IM_END, IMAGE, collate, frames, tiny_model
from vega3d.model.fusion import FUSIONS, TokenGatedFusion, build_fusion, sincos_2d, uses_context


def test_token_gated_gate_is_sigmoid_of_bias_for_zero_inputs():
    fusion = TokenGatedFusion(16)
    with torch.no_grad():
        fusion.gate.bias.fill_(0.7)
        fusion.gate.weight.normal_()
    zeros = torch.zeros(2, 3, 3, 16)
    a, b, g = fusion.gate_values(zeros, zeros)
    assert torch.equal(g, torch.full((2, 3, 3, 1), torch.sigmoid(torch.tensor(0.7)).item()))
    # LN of a zero vector is its bias (0 at init): the output is g*0 + (1-g)*0
    assert torch.equal(fusion(zeros, zeros), torch.zeros(2, 3, 3, 16))


def test_token_gated_mixes_normalised_inputs():
    torch.manual_seed(0)
    fusion = TokenGatedFusion(8)
    sem, gen = torch.randn(1, 2, 2, 8), torch.randn(1, 2, 2, 8)
    a = torch.nn.functional.layer_norm(sem, (8,))
    b = torch.nn.functional.layer_norm(gen, (8,))
    g = torch.sigmoid(torch.cat([a, b], -1) @ fusion.gate.weight.T + fusion.gate.bias)
    torch.testing.assert_close(fusion(sem, gen), g * a + (1 - g) * b)


def test_registry_has_every_spec_method():
    assert set(FUSIONS) == {"token_gated", "add", "concat", "weighted", "gated", "cross_attention", "only", "none",
                            "instruction_token_gated", "context_gated"}
    with pytest.raises(ValueError, match="unknown fusion"):
        build_fusion("mean", 8)


def test_add_only_none_values():
    sem, gen = torch.randn(2, 3, 3, 8), torch.randn(2, 3, 3, 8)
    assert torch.equal(build_fusion("add", 8)(sem, gen), sem + gen)
    assert torch.equal(build_fusion("only", 8)(sem, gen), gen)
    appended = build_fusion("none", 8)(sem, gen)
    assert appended.shape == (4, 3, 3, 8) and torch.equal(appended[:2], sem) and torch.equal(appended[2:], gen)


def test_sincos_2d_rows_and_columns():
    pos = sincos_2d(3, 8)
    assert pos.shape == (9, 8)
    # token (row 1, col 2): first half encodes row 1, second half column 2
    omega = 1.0 / 10000.0 ** (torch.arange(2) / 2)
    row = torch.cat([torch.sin(1 * omega), torch.cos(1 * omega)])
    col = torch.cat([torch.sin(2 * omega), torch.cos(2 * omega)])
    torch.testing.assert_close(pos[1 * 3 + 2], torch.cat([row, col]))


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_every_fusion_trains_end_to_end(name):
    model = tiny_model(fusion=name).train()
    batch = collate([frames(model, 2, seed=1)])
    ids = torch.tensor([[5, 6, IMAGE, 7, 8, 9]])
    labels = torch.tensor([[-100, -100, -100, -100, 8, 9]])
    out = model(ids, torch.ones_like(ids), labels=labels, **batch)
    out.loss.backward()
    g = model.config.pooled_grid
    multiplier = 2 if name == "none" else 1
    assert out.logits.shape[1] == 5 + multiplier * 2 * g * (g + 1)
    assert model.generative_projector[0].weight.grad.abs().sum() > 0
    for pname, param in model.fusion.named_parameters():
        assert param.grad is not None and param.grad.abs().sum() > 0, f"{name}.{pname} got no gradient"
    if name != "only":  # `only` drops the semantic tokens by definition
        assert model.mm_projector[0].weight.grad.abs().sum() > 0


def test_state_dict_has_no_generative_tower():
    model = tiny_model()
    tops = {key.split(".")[0] for key in model.state_dict()}
    assert tops == {"vision_tower", "mm_projector", "generative_projector", "fusion", "image_newline",
                    "language_model", "ground_head"}
    baseline = tiny_model(generative_channels=0)
    assert {key.split(".")[0] for key in baseline.state_dict()} == tops - {"generative_projector", "fusion"}
    assert GROUND  # grounding token id shared by the helpers


# d = 8 (LayerNorm: 2d; Linear(i -> o): i o + o; MultiheadAttention: 3 d d + 3 d + d d + d)
HAND_PARAMETERS = {
    "token_gated": 2 * 16 + (16 + 1),  # 49
    "add": 0, "only": 0, "none": 0,
    "concat": 2 * 16 + (16 * 8 + 8),  # 168
    "weighted": 2,  # w_sem, w_gen
    "gated": 2 * 16 + (16 * 8 + 8),  # 168
    "cross_attention": 3 * 16 + (3 * 64 + 24 + 64 + 8) + 16 + (8 * 32 + 32) + (32 * 8 + 8),  # 904
    "instruction_token_gated": 3 * 16 + (24 + 1),  # 73
    "context_gated": 3 * 16 + (8 * 8 + 8),  # 120
}
LN3 = math.log(3.0)  # sigmoid(ln 3) = 0.75
SEM = torch.tensor([1.0, -1, 1, -1, 1, -1, 1, -1])  # mean 0, variance 1: LN(SEM) = SEM
GEN = torch.tensor([2.0, 2, -2, -2, 2, 2, -2, -2])  # variance 4: LN(GEN) = B
B = torch.tensor([1.0, 1, -1, -1, 1, 1, -1, -1])
CTX = torch.tensor([3.0, 3, 3, 3, -3, -3, -3, -3])  # LN(CTX) = [1, 1, 1, 1, -1, -1, -1, -1]


def _tokens(vector):
    return vector.expand(1, 2, 2, 8).clone()  # [V=1, g=2, g=2, d=8], every token the same


def _set(fusion, **values):
    with torch.no_grad():
        for name, value in values.items():
            module, _, attr = name.rpartition(".")
            getattr(fusion.get_submodule(module) if module else fusion, attr).copy_(torch.as_tensor(value))


@pytest.mark.parametrize("name", sorted(FUSIONS))
def test_parameter_count_by_hand(name):
    assert sum(p.numel() for p in build_fusion(name, 8).parameters()) == HAND_PARAMETERS[name]


def _hand_case(name):
    """(fusion with hand-set weights, expected output of one token) for SEM / GEN (/ CTX)."""
    fusion = build_fusion(name, 8).eval()
    three_quarters = 0.75 * SEM + 0.25 * B  # [1, -0.5, 0.5, -1, 1, -0.5, 0.5, -1]
    if name == "token_gated":
        _set(fusion, **{"gate.weight": torch.zeros(1, 16), "gate.bias": [LN3]})
        return fusion, three_quarters
    if name == "add":
        return fusion, torch.tensor([3.0, 1, -1, -3, 3, 1, -1, -3])
    if name == "only":
        return fusion, GEN
    if name == "concat":  # proj = [I | I]: LN(sem) + LN(gen)
        _set(fusion, **{"proj.weight": torch.cat([torch.eye(8), torch.eye(8)], 1), "proj.bias": torch.zeros(8)})
        return fusion, torch.tensor([2.0, 0, 0, -2, 2, 0, 0, -2])
    if name == "weighted":  # convex with w_sem = 3, w_gen = 1: (3 SEM + GEN) / 4
        _set(fusion, w_sem=3.0, w_gen=1.0)
        return fusion, torch.tensor([1.25, -0.25, 0.25, -1.25, 1.25, -0.25, 0.25, -1.25])
    if name == "gated":  # per-channel g = sigmoid([ln3, 0, -ln3, 0, ...]) = [.75, .5, .25, .5, ...]
        _set(fusion, **{"gate.weight": torch.zeros(8, 16), "gate.bias": [LN3, 0, -LN3, 0] * 2})
        return fusion, torch.tensor([1.0, 0, -0.5, -1, 1, 0, -0.5, -1])
    if name == "cross_attention":  # q, k projections 0 -> uniform attention; v, out = I; last MLP layer 0
        in_proj = torch.cat([torch.zeros(16, 8), torch.eye(8)])
        _set(fusion, **{"attn.in_proj_weight": in_proj, "attn.in_proj_bias": torch.zeros(24),
                        "attn.out_proj.weight": torch.eye(8), "attn.out_proj.bias": torch.zeros(8),
                        "mlp.2.weight": torch.zeros(8, 32), "mlp.2.bias": torch.zeros(8)})
        return fusion, SEM + B  # sem + mean over tokens of LN_v(gen)
    if name == "instruction_token_gated":  # w . LN(ctx) = 2, bias ln3 - 2 -> g = 0.75 only through the context
        weight = torch.cat([torch.zeros(16), torch.tensor([0.25] * 4 + [-0.25] * 4)]).view(1, 24)
        _set(fusion, **{"gate.weight": weight, "gate.bias": [LN3 - 2.0]})
        return fusion, three_quarters
    if name == "context_gated":  # g = sigmoid(diag(ln3) LN(ctx)) = [.75] * 4 + [.25] * 4
        _set(fusion, **{"gate.weight": LN3 * torch.eye(8), "gate.bias": torch.zeros(8)})
        return fusion, torch.tensor([1.0, -0.5, 0.5, -1, 1, 0.5, -0.5, -1])
    raise AssertionError(name)


@pytest.mark.parametrize("name", sorted(set(FUSIONS) - {"none"}))
def test_output_on_a_fixed_input_by_hand(name):
    fusion, expected = _hand_case(name)
    args = (_tokens(SEM), _tokens(GEN)) + ((CTX,) if uses_context(fusion) else ())
    torch.testing.assert_close(fusion(*args), _tokens(expected), atol=1e-4, rtol=0)


def test_released_defaults_of_the_ablations():
    weighted = build_fusion("weighted", 8)
    assert (weighted.w_sem.item(), weighted.w_gen.item()) == (0.5, 0.5)
    torch.testing.assert_close(weighted(_tokens(SEM), _tokens(GEN)), _tokens((SEM + GEN) / 2))
    cross = build_fusion("cross_attention", 8)
    assert cross.attn.num_heads == 8 and cross.attn.dropout == 0.1
    assert {"norm_q", "norm_k", "norm_v"} <= {n for n, _ in cross.named_children()}
    assert uses_context(build_fusion("context_gated", 8)) and not uses_context(build_fusion("token_gated", 8))


def test_none_puts_no_3d_position_on_the_generative_frames():
    model = tiny_model(fusion="none")
    sample = frames(model, 2, seed=3)
    with torch.no_grad():
        feats = model.encode_frames(sample["pixel_values"])
        tokens = model.visual_tokens(feats, sample["world_coords"], sample["coord_valid"], sample["generative_features"])
        g, dim = model.config.pooled_grid, model.config.hidden_size
        grid = tokens.reshape(4, g, g + 1, dim)[:, :, :g]  # [2V, g, g, d] without the newlines
        pos = model.position_encoding(sample["world_coords"], sample["coord_valid"])
        gen = model.generative_projector(sample["generative_features"].permute(0, 2, 3, 1))
        assert pos.abs().sum() > 0
        torch.testing.assert_close(grid[:2], model.pool(feats) + pos)
        torch.testing.assert_close(grid[2:], gen)


def test_context_fusions_pool_the_instruction_up_to_im_end():
    model = tiny_model(fusion="context_gated")
    ids = torch.tensor([[5, IMAGE, 7, 8, IM_END, 9, 10], [5, IMAGE, 11, 12, 13, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0, 0]])
    first, second = model.instruction_context(ids, mask)
    table = model.get_input_embeddings().weight
    torch.testing.assert_close(first, table[[7, 8]].mean(0))  # stops at <|im_end|>
    torch.testing.assert_close(second, table[[11, 12, 13]].mean(0))  # no <|im_end|>: to the last real token
