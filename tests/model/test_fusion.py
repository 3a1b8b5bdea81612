"""Fusion methods: token_gated at init, gradients for every method, frame layout of `none`."""

import pytest
import torch

from tests.model.helpers import GROUND, IMAGE, collate, frames, tiny_model
from vega3d.model.fusion import FUSIONS, TokenGatedFusion, build_fusion, sincos_2d


def test_token_gated_gate_is_sigmoid_of_bias_for_zero_inputs():
    fusion = TokenGatedFusion(16, 2)
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
    fusion = TokenGatedFusion(8, 2)
    sem, gen = torch.randn(1, 2, 2, 8), torch.randn(1, 2, 2, 8)
    a = torch.nn.functional.layer_norm(sem, (8,))
    b = torch.nn.functional.layer_norm(gen, (8,))
    g = torch.sigmoid(torch.cat([a, b], -1) @ fusion.gate.weight.T + fusion.gate.bias)
    torch.testing.assert_close(fusion(sem, gen), g * a + (1 - g) * b)


def test_registry_has_every_spec_method():
    assert set(FUSIONS) == {"token_gated", "add", "concat", "weighted", "gated", "cross_attention", "only", "none"}
    with pytest.raises(ValueError, match="unknown fusion"):
        build_fusion("mean", 8, 2)


def test_add_only_none_values():
    sem, gen = torch.randn(2, 3, 3, 8), torch.randn(2, 3, 3, 8)
    assert torch.equal(build_fusion("add", 8, 2)(sem, gen), sem + gen)
    assert torch.equal(build_fusion("only", 8, 2)(sem, gen), gen)
    appended = build_fusion("none", 8, 2)(sem, gen)
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
