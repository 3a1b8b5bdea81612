"""Wan2.1 T2V / VACE encoders: early exit, seeding, both checkpoint layouts, paper shapes on meta."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from tests.generative.conftest import wan_config
from vega3d.generative.base import frame_seed
from vega3d.generative.wan import build_wan, flow_match_timestep, tap_block_output
from vega3d.generative.weights import CheckpointError

SCENE = "scene0000_00"


def frames(count: int = 3, seed: int = 0) -> torch.Tensor:
    """Random frames [V, 3, 96, 128] in [0, 1] (non-square like ScanNet's 4:3)."""
    return torch.rand(count, 3, 96, 128, generator=torch.Generator().manual_seed(seed))


def block_calls(transformer: torch.nn.Module) -> tuple[list[int], list]:
    """Record which DiT blocks (by index) and whether the head ran."""
    called: list[int] = []
    handles = [b.register_forward_hook(lambda m, a, o, i=i: called.append(i)) for i, b in enumerate(transformer.blocks)]
    handles.append(transformer.proj_out.register_forward_hook(lambda m, a, o: called.append(-1)))
    return called, handles


def test_early_exit_is_bit_identical_to_a_full_forward_with_a_hook(tiny_wan):
    encoder = build_wan(wan_config(tiny_wan[0], block=1), grid=4, device="cpu", variant="t2v")
    pixels = encoder.preprocess(frames())
    inputs = encoder.dit_inputs(pixels, SCENE, [0, 10, 20])

    # Reference: the unmodified full forward pass, block 1's output taken by an ordinary forward hook.
    taken: list[torch.Tensor] = []
    handle = encoder.transformer.blocks[1].register_forward_hook(lambda m, a, o: taken.append(o))
    called, handles = block_calls(encoder.transformer)
    with torch.inference_mode():
        encoder.transformer(**inputs, return_dict=False)
    handle.remove()
    assert called == [0, 1, 2, 3, -1]
    called.clear()
    with torch.inference_mode():
        early = encoder.dit_features(inputs, early_exit=True)  # [V, D, 7, 7]
    for h in handles:
        h.remove()
    assert called == [0, 1]  # no later block, no head
    reference = taken[0].unflatten(1, (1, 7, 7))[:, 0].permute(0, 3, 1, 2)
    assert early.shape == (3, 32, 7, 7)
    assert torch.equal(early, reference)
    with torch.inference_mode():
        assert torch.equal(encoder.dit_features(inputs, early_exit=False), reference)


def test_vace_early_exit_matches_full_forward_and_skips_later_control_blocks(tiny_vace):
    encoder = build_wan(wan_config(tiny_vace[0], block=2), grid=4, device="cpu", variant="vace")
    inputs = encoder.dit_inputs(encoder.preprocess(frames()), SCENE, [0, 10, 20])
    # VACE layers are 0 and 2; block 2's output includes its hint = what block 3 receives.
    taken: list[torch.Tensor] = []
    handle = encoder.transformer.blocks[3].register_forward_pre_hook(lambda m, a: taken.append(a[0]))
    with torch.inference_mode():
        encoder.transformer(**inputs, return_dict=False)
    handle.remove()
    control_calls: list[int] = []
    hooks = [b.register_forward_hook(lambda m, a, o, i=i: control_calls.append(i))
             for i, b in enumerate(encoder.transformer.vace_blocks)]
    with torch.inference_mode():
        early = encoder.dit_features(inputs, early_exit=True)
    for h in hooks:
        h.remove()
    reference = taken[0].unflatten(1, (2, 7, 7))[:, 1].permute(0, 3, 1, 2)  # slot 1 = the frame, 0 = reference
    assert torch.equal(early, reference)
    assert control_calls == [0, 1]
    assert len(encoder.transformer.vace_blocks) == 2  # restored after the early exit


def test_vace_block_before_a_later_hint_skips_that_control_block(tiny_vace):
    encoder = build_wan(wan_config(tiny_vace[0], block=1), grid=4, device="cpu", variant="vace")
    calls: list[int] = []
    hooks = [b.register_forward_hook(lambda m, a, o, i=i: calls.append(i))
             for i, b in enumerate(encoder.transformer.vace_blocks)]
    features = encoder.encode(frames(2), SCENE, [0, 10])
    for h in hooks:
        h.remove()
    assert calls == [0]
    assert features.shape == (2, 32, 4, 4)


def test_same_seed_same_features_and_noise_depends_on_scene_frame_and_seed(tiny_wan):
    encoder = build_wan(wan_config(tiny_wan[0]), grid=4, device="cpu", variant="t2v")
    clip = frames(2)
    first = encoder.encode(clip, SCENE, [0, 10])
    assert torch.equal(first, encoder.encode(clip, SCENE, [0, 10]))
    # Per-frame noise: a frame's features do not depend on its batch neighbours (up to float summation order).
    torch.testing.assert_close(first[1:], encoder.encode(clip[1:], SCENE, [10]), atol=1e-5, rtol=1e-5)
    assert not torch.equal(first, encoder.encode(clip, SCENE, [0, 20]))
    assert not torch.equal(first, encoder.encode(clip, "scene0001_00", [0, 10]))
    other_seed = build_wan(wan_config(tiny_wan[0], seed=1), grid=4, device="cpu", variant="t2v")
    assert not torch.equal(first, other_seed.encode(clip, SCENE, [0, 10]))


def test_original_and_diffusers_layouts_give_identical_features(tiny_wan):
    diffusers_folder, original_folder = tiny_wan
    clip = frames(3)
    a = build_wan(wan_config(diffusers_folder), 4, "cpu", "t2v").encode(clip, SCENE, [0, 10, 20])
    original = build_wan(wan_config(original_folder, config_dir=str(diffusers_folder)), 4, "cpu", "t2v")
    assert torch.equal(a, original.encode(clip, SCENE, [0, 10, 20]))
    assert original.text.abs().sum() > 0  # the umT5 embedding came from the converted .pth


def test_original_vace_layout_loads_like_diffusers(tiny_vace):
    clip = frames(2)
    a = build_wan(wan_config(tiny_vace[0]), 4, "cpu", "vace").encode(clip, SCENE, [0, 10])
    cfg = wan_config(tiny_vace[1], config_dir=str(tiny_vace[0]))
    assert torch.equal(a, build_wan(cfg, 4, "cpu", "vace").encode(clip, SCENE, [0, 10]))


@pytest.mark.parametrize("variant", ["t2v", "vace"])
def test_paper_setting_shapes_on_meta(variant):
    cfg = wan_config("/nonexistent/Wan2.1", block=20, resolution=(832, 480))
    encoder = build_wan(cfg, grid=14, device="meta", variant=variant)
    assert encoder.channels == 1536
    assert len(encoder.transformer.blocks) == 30
    out = encoder.encode(torch.empty(4, 3, 480, 640, device="meta"), SCENE, [0, 10, 20, 30])
    assert out.shape == (4, 1536, 14, 14)


def test_flow_matching_timestep_nearest_300_with_shift_5():
    timestep, sigma = flow_match_timestep(300, 5.0)
    assert abs(timestep - 300) < 2.0
    assert sigma == pytest.approx(timestep / 1000, abs=1e-6)
    # Shifted schedule: sigma = 5 s / (1 + 4 s) for an unshifted s on the 1/1000 grid.
    s = round(sigma / (5 - 4 * sigma) * 1000) / 1000
    assert sigma == pytest.approx(5 * s / (1 + 4 * s), abs=1e-6)
    assert sigma == pytest.approx(0.30, abs=0.003)


def test_missing_original_file_names_the_path(tiny_wan, tmp_path):
    broken = tmp_path / "wan"
    shutil.copytree(tiny_wan[1], broken)
    (broken / "Wan2.1_VAE.pth").unlink()
    with pytest.raises(CheckpointError, match=r"Wan2.1_VAE.pth: missing; expected the original Wan VAE"):
        build_wan(wan_config(broken, config_dir=str(tiny_wan[0])), 4, "cpu", "t2v")


def test_mismatched_original_config_names_both_files(tiny_wan, tmp_path):
    broken = tmp_path / "wan"
    shutil.copytree(tiny_wan[1], broken)
    config = json.loads((broken / "config.json").read_text())
    (broken / "config.json").write_text(json.dumps({**config, "num_layers": 30}))
    with pytest.raises(CheckpointError, match=r"num_layers=30 but the config folder expects 4"):
        build_wan(wan_config(broken, config_dir=str(tiny_wan[0])), 4, "cpu", "t2v")


def test_original_weights_missing_blocks_fail_naming_the_file(tiny_wan, tmp_path):
    from vega3d.testing.tiny_generative import write_tiny_wan

    _, shallow = write_tiny_wan(tmp_path / "shallow", num_layers=2)
    broken = tmp_path / "wan"
    shutil.copytree(tiny_wan[1], broken)
    shutil.copy(shallow / "diffusion_pytorch_model.safetensors", broken)  # 2 blocks where the config has 4
    with pytest.raises(CheckpointError, match=r"diffusion_pytorch_model.safetensors: does not match .*: 54 weights missing"):
        build_wan(wan_config(broken, config_dir=str(tiny_wan[0])), 4, "cpu", "t2v")


def test_not_a_checkpoint_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="not a Wan2.1 checkpoint; expected either the diffusers layout"):
        build_wan(wan_config(tmp_path / "empty"), 4, "cpu", "t2v")


def test_block_out_of_range(tiny_wan):
    with pytest.raises(ValueError, match="generative.block=7: the DiT has 4 blocks"):
        build_wan(wan_config(tiny_wan[0], block=7), 4, "cpu", "t2v")


def test_resolution_must_fit_the_latent_patch_grid(tiny_wan):
    with pytest.raises(ValueError, match=r"generative.resolution=\[120, 112\]: width and height must be multiples of 16"):
        build_wan(wan_config(tiny_wan[0], resolution=(120, 112)), 4, "cpu", "t2v")


@pytest.mark.parametrize(("extra", "shipped"), [
    ({"vace_layers": list(range(0, 30, 2)), "vace_in_dim": 96}, "Wan2.1-VACE-1.3B"),
    ({}, "Wan2.1-T2V-1.3B"),
])
def test_original_config_is_chosen_by_vace_layers_not_model_type(tmp_path, extra, shipped):
    """Third-party copies of Wan2.1-VACE write model_type "t2v": the shipped config follows vace_layers."""
    from vega3d.generative import weights as ckpt

    (tmp_path / ckpt.WAN_ORIGINAL_TRANSFORMER).write_bytes(b"")
    (tmp_path / "config.json").write_text(json.dumps({
        "model_type": "t2v", "dim": 1536, "ffn_dim": 8960, "freq_dim": 256, "in_dim": 16, "out_dim": 16,
        "num_heads": 12, "num_layers": 30, **extra}))
    assert ckpt.wan_config_dir(tmp_path, "vace" if extra else "t2v", None) == ckpt.assets_dir(shipped)


def test_vace_released_layout_reads_the_padded_slot(tiny_vace):
    """Released: hidden_states = [(1 - σ) z + σ ε, 0] (the frame, then zero padding to the context's two slots),
    the context unchanged, the feature = the block output at slot 1."""
    clip, ids = frames(2), [0, 10]
    released = build_wan(wan_config(tiny_vace[0], vace_layout="released"), 4, "cpu", "vace")
    ours = build_wan(wan_config(tiny_vace[0]), 4, "cpu", "vace")
    with torch.inference_mode():
        pixels = released.preprocess(clip)
        inputs, our_inputs = released.dit_inputs(pixels, SCENE, ids), ours.dit_inputs(pixels, SCENE, ids)
        z = released.latents(pixels)  # [2, 16, 1, h, w]
        eps = torch.stack([torch.randn(z.shape[1:], generator=torch.Generator().manual_seed(frame_seed(SCENE, f, 0)))
                           for f in ids])
        hidden = inputs["hidden_states"]
        assert hidden.shape == our_inputs["hidden_states"].shape == (2, 16, 2, *z.shape[-2:])
        torch.testing.assert_close(hidden[:, :, :1], (1 - released.sigma) * z + released.sigma * eps)
        assert torch.equal(hidden[:, :, 1], torch.zeros_like(hidden[:, :, 1]))
        assert torch.equal(inputs["control_hidden_states"], our_inputs["control_hidden_states"])
        tapped = tap_block_output(released.transformer, released.block, False, **inputs)  # [2, 2*h'*w', D]
        grid = tapped.unflatten(1, (2, z.shape[-2] // 2, z.shape[-1] // 2))[:, 1].permute(0, 3, 1, 2)
    torch.testing.assert_close(released.encode(clip, SCENE, ids), torch.nn.functional.adaptive_avg_pool2d(grid, 4))
