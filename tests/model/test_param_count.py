"""The paper model on the meta device: Qwen2-7B + SigLIP so400m minus one layer + the VEGA-3D modules,
each part against its size computed from the architecture (and Qwen2-7B against the published 7.6B)."""

import json
from importlib import resources

import pytest
import torch
from transformers import SiglipVisionConfig, SiglipVisionModel

from vega3d.config import ModelConfig
from vega3d.model.configuration import build_hf_config
from vega3d.model.loading import SIGLIP_ASSET, asset_config
from vega3d.model.modeling_vega3d import Vega3DModel

WAN_CHANNELS = 1536  # width of a Wan2.1-T2V-1.3B DiT block output


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def linear(i: int, o: int, bias: bool = True) -> int:
    return i * o + (o if bias else 0)


def qwen2_7b() -> int:
    vocab, d, inter, layers, kv = 152064, 3584, 18944, 28, 4 * 128
    attn = linear(d, d) + 2 * linear(d, kv) + linear(d, d, bias=False)  # q, k, v with bias; o without
    mlp = 3 * linear(d, inter, bias=False)  # gate, up, down
    layer = attn + mlp + 2 * d  # two RMSNorms
    return 2 * vocab * d + layers * layer + d  # embeddings + untied lm_head, layers, final norm


def siglip_layer(d: int = 1152, inter: int = 4304) -> int:
    return 4 * linear(d, d) + linear(d, inter) + linear(inter, d) + 2 * 2 * d


def siglip_embeddings(d: int = 1152) -> int:
    return 3 * 14 * 14 * d + d + 729 * d  # patch conv + bias, 27 x 27 position embeddings


@pytest.fixture(scope="module")
def paper_model():
    config = build_hf_config(ModelConfig(), WAN_CHANNELS)
    with torch.device("meta"):
        return Vega3DModel(config)


def test_qwen2_7b_formula_is_the_published_size():
    total = qwen2_7b()
    assert total == 7_615_616_512
    assert round(total / 1e9, 1) == 7.6  # Qwen2-7B: 7.6B parameters (7.61B)
    assert round((total - 2 * 152064 * 3584) / 1e9, 2) == 6.53  # published non-embedding 6.53B


def test_llm_part(paper_model):
    assert count(paper_model.language_model) == qwen2_7b()


def test_vision_part_is_so400m_minus_one_layer(paper_model):
    assert count(paper_model.vision_tower) == siglip_embeddings() + 26 * siglip_layer()
    # the published tower (27 layers, post-layernorm, pooling head) from the shipped config
    published = SiglipVisionConfig(**asset_config(SIGLIP_ASSET)["vision_config"])
    with torch.device("meta"):
        full = SiglipVisionModel(published)
    d = 1152
    head = d + linear(d, 3 * d) + linear(d, d) + 2 * d + linear(d, 4304) + linear(4304, d)  # probe, MHA, LN, MLP
    assert count(full) == siglip_embeddings() + 27 * siglip_layer() + 2 * d + head
    assert count(full) - count(paper_model.vision_tower) == siglip_layer() + 2 * d + head
    assert round(count(full) / 1e6) == 428  # SigLIP so400m vision tower: 428M


def test_vega3d_modules(paper_model):
    d = 3584
    assert count(paper_model.mm_projector) == linear(1152, d) + linear(d, d)
    assert count(paper_model.generative_projector) == linear(WAN_CHANNELS, d) + linear(d, d)
    assert count(paper_model.fusion) == 2 * 2 * d + linear(2 * d, 1)  # two affine LNs + scalar gate
    assert paper_model.image_newline.numel() == d
    mlp = linear(d, d) + 2 * d + linear(d, d)
    assert count(paper_model.ground_head) == d + 2 * mlp


def paper_total() -> int:
    """Parameters of the paper model by hand: Qwen2-7B, SigLIP minus one layer, the VEGA-3D additions."""
    d = 3584
    additions = (linear(1152, d) + linear(d, d) + linear(WAN_CHANNELS, d) + linear(d, d) + 4 * d + linear(2 * d, 1)
                 + d + d + 2 * (2 * linear(d, d) + 2 * d))
    return qwen2_7b() + siglip_embeddings() + 26 * siglip_layer() + additions


def test_total(paper_model):
    assert count(paper_model) == paper_total()
    assert paper_model.config.tokens_per_frame == 14 * 15 and paper_model.config.patch_grid == 27


def test_shipped_llava_config_matches_the_defaults():
    llava = json.loads((resources.files("vega3d") / "assets" / "LLaVA-Video-7B-Qwen2" / "config.json").read_text())
    llm = ModelConfig().llm
    assert (llava["hidden_size"], llava["intermediate_size"], llava["num_hidden_layers"], llava["num_attention_heads"],
            llava["num_key_value_heads"], llava["vocab_size"]) == (
        llm.hidden_size, llm.intermediate_size, llm.num_hidden_layers, llm.num_attention_heads,
        llm.num_key_value_heads, llm.vocab_size)
    assert llava["mm_hidden_size"] == ModelConfig().vision.hidden_size
    assert llava["mm_projector_type"] == "mlp2x_gelu" and llava["mm_vision_tower"].endswith("siglip-so400m-patch14-384")
