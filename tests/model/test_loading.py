"""Model loading: tiny LLaVA-Video layout written and loaded back, our own format, key errors."""

import json

import pytest
import torch
from safetensors.torch import load_file, save_file

from tests.model.helpers import collate, frames, tiny_model_config
from vega3d.model.configuration import build_hf_config
from vega3d.model.loading import (
    INDEX_FILE,
    CheckpointError,
    load_llava_video,
    load_model,
    save_model,
    to_llava,
    to_ours,
)
from vega3d.model.modeling_vega3d import Vega3DModel
from vega3d.model.tokenizer import IMAGE_TOKEN, add_special_tokens, load_tokenizer
from vega3d.testing.tiny_llava import write_llava_video, write_tiny_llava_video


@pytest.fixture()
def tiny_folder(tmp_path):
    return write_tiny_llava_video(tmp_path / "tiny-llava-video", tiny_model_config())


def test_layout_matches_llava_video(tiny_folder):
    files = sorted(p.name for p in tiny_folder.iterdir())
    assert files == ["config.json", "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                     INDEX_FILE, "tokenizer.json", "tokenizer_config.json"]
    index = json.loads((tiny_folder / INDEX_FILE).read_text())
    keys = set(index["weight_map"])
    cfg = tiny_model_config()
    kept_layers = cfg.vision.num_hidden_layers - 1
    tower = "model.vision_tower.vision_tower.vision_model."
    assert f"{tower}encoder.layers.{kept_layers - 1}.mlp.fc1.weight" in keys
    assert f"{tower}encoder.layers.{kept_layers}.mlp.fc1.weight" not in keys  # last layer dropped
    assert {"model.mm_projector.0.weight", "model.mm_projector.2.bias", "model.image_newline", "lm_head.weight",
            "model.embed_tokens.weight", "model.norm.weight", f"{tower}post_layernorm.weight"} <= keys
    assert not any(k.startswith(("generative_projector", "fusion", "ground_head")) for k in keys)
    stored = {}
    for shard in set(index["weight_map"].values()):
        stored.update(load_file(str(tiny_folder / shard)))
    assert set(stored) == keys and index["metadata"]["total_size"] == sum(
        t.numel() * t.element_size() for t in stored.values())
    config = json.loads((tiny_folder / "config.json").read_text())
    assert config["architectures"] == ["LlavaQwenForCausalLM"] and config["mm_projector_type"] == "mlp2x_gelu"
    assert config["hidden_size"] == cfg.llm.hidden_size and config["mm_hidden_size"] == cfg.vision.hidden_size


def test_key_mapping_round_trip():
    for ours in ["vision_tower.encoder.layers.0.self_attn.q_proj.weight", "mm_projector.2.weight", "image_newline",
                 "language_model.model.layers.1.mlp.up_proj.weight", "language_model.lm_head.weight"]:
        assert to_ours(to_llava(ours)) == ours
    assert to_llava("ground_head.zero_target") is None


def test_written_then_loaded_gives_identical_logits(tmp_path):
    cfg = tiny_model_config()
    torch.manual_seed(3)
    original = Vega3DModel(build_hf_config(cfg, 0)).eval()
    folder = write_llava_video(original, tmp_path / "llava", cfg)
    loaded, tokenizer = load_llava_video(folder, cfg, generative_channels=0)
    loaded.eval()
    # loading adds <image>/<ground>/<coord> (rows = mean of the others): do the same in memory
    add_special_tokens(load_tokenizer(folder), original)
    assert original.config.image_token_id == loaded.config.image_token_id
    text = f"<|im_start|>user\n{IMAGE_TOKEN}\nwhat is on the table?<|im_end|>\n"
    ids = tokenizer(text, return_tensors="pt").input_ids
    inputs = collate([frames(original, 2, seed=1, with_generative=False)])
    with torch.no_grad():
        a = original(ids, torch.ones_like(ids), **inputs).logits
        b = loaded(ids, torch.ones_like(ids), **inputs).logits
    assert torch.equal(a, b)


def test_new_token_rows_start_at_the_mean(tiny_folder):
    loaded, tokenizer = load_llava_video(tiny_folder, tiny_model_config(), generative_channels=8)
    new_ids = [loaded.config.image_token_id, loaded.config.ground_token_id, loaded.config.coord_token_id]
    assert new_ids == [len(tokenizer) - 3, len(tokenizer) - 2, len(tokenizer) - 1]
    for matrix in (loaded.get_input_embeddings().weight, loaded.get_output_embeddings().weight):
        mean = matrix[: len(tokenizer) - 3].mean(0)
        for token in new_ids:
            torch.testing.assert_close(matrix[token], mean)
    assert tokenizer.convert_ids_to_tokens(new_ids) == ["<image>", "<ground>", "<coord>"]


def test_vega3d_additions_are_initialised_on_load(tiny_folder):
    loaded, _ = load_llava_video(tiny_folder, tiny_model_config(), generative_channels=8)
    d = tiny_model_config().llm.hidden_size
    for name, param in loaded.named_parameters():
        assert torch.isfinite(param).all(), name
    weight = loaded.generative_projector[0].weight
    assert 0.01 < weight.std().item() < 0.03  # std 0.02 init
    assert torch.equal(loaded.generative_projector[0].bias, torch.zeros(d))
    assert torch.equal(loaded.fusion.norm_sem.weight, torch.ones(d))
    assert torch.equal(loaded.fusion.gate.bias, torch.zeros(1))
    assert loaded.ground_head.zero_target.abs().sum() > 0
    bound = d**-0.5  # the head's first layers keep torch's U(-1/sqrt(d), 1/sqrt(d)) bias (see _init_weights)
    for first in (loaded.ground_head.object_mlp[0], loaded.ground_head.query_mlp[0]):
        assert 0 < first.bias.abs().max() <= bound
    assert torch.equal(loaded.ground_head.object_mlp[3].bias, torch.zeros(d))


def test_tiny_projector_output_layer_is_drawn_wider(tiny_folder):
    """write_tiny_llava_video: projector output std 0.6, every other matrix the transformers std 0.02."""
    from vega3d.testing.tiny_llava import TINY_PROJECTOR_OUTPUT_STD

    stored = {}
    for shard in tiny_folder.glob("*.safetensors"):
        stored.update(load_file(str(shard)))
    assert stored["model.mm_projector.2.weight"].std().item() == pytest.approx(TINY_PROJECTOR_OUTPUT_STD, rel=0.1)
    assert stored["model.mm_projector.0.weight"].std().item() == pytest.approx(0.02, rel=0.1)
    assert stored["model.layers.0.mlp.up_proj.weight"].std().item() == pytest.approx(0.02, rel=0.1)


def test_missing_and_unexpected_keys_fail_with_their_names(tiny_folder):
    index = json.loads((tiny_folder / INDEX_FILE).read_text())
    key = "model.mm_projector.2.bias"
    shard = tiny_folder / index["weight_map"][key]
    tensors = load_file(str(shard))
    tensors.pop(key)
    tensors["model.mystery.weight"] = torch.zeros(2)
    save_file(tensors, str(shard))
    with pytest.raises(CheckpointError) as error:
        load_llava_video(tiny_folder, tiny_model_config())
    assert "mm_projector.2.bias" in str(error.value) and "model.mystery.weight" in str(error.value)


def test_a_stored_last_vision_layer_is_the_dropped_one(tiny_folder):
    index = json.loads((tiny_folder / INDEX_FILE).read_text())
    kept = tiny_model_config().vision.num_hidden_layers - 1
    tower = "model.vision_tower.vision_tower.vision_model.encoder.layers."
    shard = tiny_folder / index["weight_map"][f"{tower}0.mlp.fc1.weight"]
    tensors = load_file(str(shard))
    tensors[f"{tower}{kept}.mlp.fc1.weight"] = torch.zeros(3)  # the published tower's 27th layer
    save_file(tensors, str(shard))
    load_llava_video(tiny_folder, tiny_model_config())  # skipped, no error
    tensors[f"{tower}{kept + 1}.mlp.fc1.weight"] = torch.zeros(3)  # a layer beyond it is a mismatch
    save_file(tensors, str(shard))
    with pytest.raises(CheckpointError, match=f"layers.{kept + 1}.mlp.fc1.weight"):
        load_llava_video(tiny_folder, tiny_model_config())


def test_config_mismatch_names_the_field(tiny_folder):
    cfg = tiny_model_config()
    wrong = cfg.model_copy(update={"llm": cfg.llm.model_copy(update={"num_hidden_layers": 5})})
    with pytest.raises(CheckpointError, match="model.llm.num_hidden_layers: checkpoint 2, run config 5"):
        load_llava_video(tiny_folder, wrong)


def test_own_format_round_trip(tiny_folder, tmp_path):
    cfg = tiny_model_config()
    model, tokenizer = load_llava_video(tiny_folder, cfg, generative_channels=8)
    model.eval()
    save_model(model, tokenizer, tmp_path / "ours")
    assert not (tmp_path / "ours.tmp").exists()
    again, tokenizer2 = load_model(tmp_path / "ours", cfg, generative_channels=8)
    again.eval()
    assert again.config.image_token_id == model.config.image_token_id and len(tokenizer2) == len(tokenizer)
    ids = tokenizer(f"hello {IMAGE_TOKEN} world", return_tensors="pt").input_ids
    inputs = collate([frames(model, 2, seed=4)])
    with torch.no_grad():
        assert torch.equal(model(ids, torch.ones_like(ids), **inputs).logits,
                           again(ids, torch.ones_like(ids), **inputs).logits)
    with pytest.raises(CheckpointError, match="generative_channels=8"):
        load_model(tmp_path / "ours", cfg, generative_channels=0)


def test_transformers_floor_is_the_major_version_whose_layout_the_loader_maps():
    """The loader imports transformers.initialization and DINOv3ViTModel (transformers 5): pyproject.toml's
    floor must not admit a 4.x that lacks them."""
    from pathlib import Path

    import tomllib
    import transformers
    from packaging.requirements import Requirement

    project = tomllib.loads((Path(__file__).parents[2] / "pyproject.toml").read_text())["project"]
    requirement = next(Requirement(r) for r in project["dependencies"] if Requirement(r).name == "transformers")
    floors = [spec.version for spec in requirement.specifier if spec.operator == ">="]
    assert floors and int(floors[0].split(".")[0]) == 5 == int(transformers.__version__.split(".")[0])
    assert not requirement.specifier.contains("4.57.0") and requirement.specifier.contains(transformers.__version__)
