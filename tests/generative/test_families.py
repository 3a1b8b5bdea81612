"""Every encoder id: [V, C, g, g] with SPEC.md's C at the paper setting (meta) and a real tiny forward."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vega3d.config import GenerativeConfig
from vega3d.generative.base import capture_input, frame_seed
from vega3d.generative.registry import OFFLINE_ONLY_IDS, ONLINE_IDS, PAPER_CHANNELS, build_encoder

PAPER_INPUT = {"wan_t2v": (832, 480), "wan_vace": (832, 480), "sd21": (896, 896), "vae": (224, 224),
               "svd": (896, 896), "dinov3": (224, 224), "vjepa2": (224, 224)}
TINY_CHANNELS = {"sd21": 64, "vae": 4, "svd": 64, "dinov3": 32, "vjepa2": 32}


def frames(count: int) -> torch.Tensor:
    return torch.rand(count, 3, 96, 128, generator=torch.Generator().manual_seed(count))


@pytest.mark.parametrize("backbone", ONLINE_IDS)
def test_paper_setting_shape_on_meta(backbone):
    cfg = GenerativeConfig(backbone=backbone, checkpoint="/nonexistent", resolution=PAPER_INPUT[backbone],
                           timestep=300 if backbone.startswith("wan") else 250)
    encoder = build_encoder(cfg, grid=14, device="meta")
    count = 32 if backbone == "vjepa2" else 10  # svd: chunks of 8 + 2
    out = encoder.encode(torch.empty(count, 3, 480, 640, device="meta"), "scene0000_00", list(range(count)))
    assert encoder.channels == PAPER_CHANNELS[backbone]
    assert out.shape == (count, PAPER_CHANNELS[backbone], 14, 14)


@pytest.mark.parametrize("backbone", sorted(TINY_CHANNELS))
def test_tiny_forward_shape_and_determinism(backbone, tiny_family):
    cfg = GenerativeConfig(backbone=backbone, checkpoint=str(tiny_family[backbone]), resolution=(112, 112),
                           timestep=250)
    encoder = build_encoder(cfg, grid=4, device="cpu")
    clip = frames(3)
    out = encoder.encode(clip, "scene0000_00", [0, 10, 20])
    assert out.shape == (3, TINY_CHANNELS[backbone], 4, 4) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.abs().sum() > 0
    assert torch.equal(out, encoder.encode(clip, "scene0000_00", [0, 10, 20]))


def test_sd21_features_are_the_mid_block_input_of_the_full_unet(tiny_family):
    cfg = GenerativeConfig(backbone="sd21", checkpoint=str(tiny_family["sd21"]), resolution=(112, 112), timestep=250)
    encoder = build_encoder(cfg, grid=14, device="cpu")
    with torch.inference_mode():
        pixels = encoder.preprocess(frames(2))
        early = encoder.features(pixels, "s", [0, 10])  # stops at the mid block
        z = encoder.latents(pixels)
        noise = torch.stack([torch.randn(z.shape[1:], generator=torch.Generator().manual_seed(frame_seed("s", f, 0)))
                             for f in (0, 10)])
        noisy = encoder.abar**0.5 * z + (1 - encoder.abar) ** 0.5 * noise
        full = capture_input(encoder.unet.mid_block, lambda: encoder.unet(
            noisy, torch.full((2,), 250), encoder_hidden_states=encoder.text.expand(2, -1, -1)), stop=False)
    assert early.shape == (2, 64, 7, 7)  # 112 px -> latent 14 -> one downsampling -> 7
    assert torch.equal(early, full)


def test_sd_schedule_values_computed_by_hand(tiny_family):
    betas = np.linspace(0.00085**0.5, 0.012**0.5, 1000, dtype=np.float64) ** 2
    abar = float(np.prod(1.0 - betas[:251]))
    sd = build_encoder(GenerativeConfig(backbone="sd21", checkpoint=str(tiny_family["sd21"]), timestep=250,
                                        resolution=(112, 112)), 4, "cpu")
    svd = build_encoder(GenerativeConfig(backbone="svd", checkpoint=str(tiny_family["svd"]), timestep=250,
                                         resolution=(112, 112)), 4, "cpu")
    assert sd.abar == pytest.approx(abar, rel=1e-5)
    assert svd.sigma == pytest.approx(((1 - abar) / abar) ** 0.5, rel=1e-5)


def test_vae_features_are_pooled_scaled_latent_means(tiny_family):
    encoder = build_encoder(GenerativeConfig(backbone="vae", checkpoint=str(tiny_family["vae"])), 14, "cpu")
    clip = frames(2)
    with torch.inference_mode():
        pixels = encoder.preprocess(clip)
        assert pixels.shape == (2, 3, 224, 224)  # the vae id always reads 224x224
        expected = torch.nn.functional.avg_pool2d(encoder.vae.encode(pixels).latent_dist.mean * 0.18215, 2)
    assert torch.equal(encoder.encode(clip, "s", [0, 1]), expected)  # [2, 4, 14, 14], no further pooling


def test_svd_chunks_of_8_are_conditioned_on_their_own_first_frame(tiny_family):
    encoder = build_encoder(GenerativeConfig(backbone="svd", checkpoint=str(tiny_family["svd"]), timestep=250,
                                             resolution=(64, 64)), 4, "cpu")
    clip = frames(10)
    ids = list(range(0, 100, 10))
    whole = encoder.encode(clip, "s", ids)
    torch.testing.assert_close(whole[:8], encoder.encode(clip[:8], "s", ids[:8]), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(whole[8:], encoder.encode(clip[8:], "s", ids[8:]), atol=1e-5, rtol=1e-5)
    changed = clip.clone()
    changed[8] = 1 - changed[8]  # the second chunk's conditioning frame
    other = encoder.encode(changed, "s", ids)
    assert torch.equal(other[:8], whole[:8]) and not torch.allclose(other[9], whole[9])


def test_dinov3_takes_the_last_196_patch_tokens(tiny_family):
    encoder = build_encoder(GenerativeConfig(backbone="dinov3", checkpoint=str(tiny_family["dinov3"])), 14, "cpu")
    clip = frames(2)
    with torch.inference_mode():
        hidden = encoder.model(pixel_values=encoder.preprocess(clip)).last_hidden_state
    assert hidden.shape[1] == 1 + 4 + 196  # CLS + 4 registers + 14x14 patches
    expected = hidden[:, 5:].reshape(2, 14, 14, 32).permute(0, 3, 1, 2)
    assert torch.equal(encoder.encode(clip, "s", [0, 1]), expected)


def test_vjepa2_tubelet_tokens_are_repeated_per_frame(tiny_family):
    encoder = build_encoder(GenerativeConfig(backbone="vjepa2", checkpoint=str(tiny_family["vjepa2"])), 14, "cpu")
    out = encoder.encode(frames(5), "s", list(range(5)))  # odd: the last frame is repeated to fill the tubelet
    assert out.shape == (5, 32, 14, 14)
    assert torch.equal(out[0], out[1]) and torch.equal(out[2], out[3])
    assert not torch.equal(out[1], out[2])


@pytest.mark.parametrize("backbone", OFFLINE_ONLY_IDS)
def test_offline_only_ids_explain_how_to_use_them(backbone):
    with pytest.raises(ValueError, match="offline-only"):
        build_encoder(GenerativeConfig(backbone=backbone), 14, "cpu")
    assert PAPER_CHANNELS[backbone] == {"vggt": 2048, "seva": 1280, "vmem": 1280}[backbone]


def test_svd_released_mode_uses_sigma_max_unscaled_latents_and_own_frame(tiny_family):
    """Released: sigma = the scheduler's sigma_max (700), z = the VAE mean without 0.18215, and frame f's
    conditioning latent is its own (augmented) frame's mode, not the chunk's first."""
    cfg = GenerativeConfig(backbone="svd", checkpoint=str(tiny_family["svd"]), timestep=250, resolution=(64, 64),
                           svd_mode="released")
    encoder = build_encoder(cfg, 4, "cpu")
    assert encoder.sigma == 700.0
    clip, ids = frames(3), [0, 10, 20]
    with torch.inference_mode():
        pixels = encoder.preprocess(clip)
        z = encoder.vae.encode(pixels).latent_dist.mean  # no scaling factor
        aug = torch.stack([torch.randn(pixels.shape[1:], generator=torch.Generator().manual_seed(
            frame_seed("s#svd-cond", f, 0))) for f in ids])
        cond = encoder.vae.encode(pixels + 0.02 * aug).latent_dist.mode()  # [3, 4, 8, 8]: each frame its own
        noise = torch.stack([torch.randn(z.shape[1:], generator=torch.Generator().manual_seed(frame_seed("s", f, 0)))
                             for f in ids])
        sample = torch.cat([(z + 700.0 * noise) / (700.0**2 + 1) ** 0.5, cond], dim=1).unsqueeze(0)
        expected = capture_input(encoder.unet.mid_block, lambda: encoder.unet(
            sample, torch.tensor([0.25 * np.log(700.0)]), encoder_hidden_states=encoder.image_embedding(pixels[:1]),
            added_time_ids=torch.tensor([[6.0, 127.0, 0.02]])), stop=True)
    torch.testing.assert_close(encoder.encode(clip, "s", ids), torch.nn.functional.adaptive_avg_pool2d(expected, 4))


def test_vjepa2_released_input_is_384_square_with_linspace_frames(tiny_family):
    """Released: 384x384 squashed frames (24x24 patches of 16); tubelet grids to frames by int(linspace):
    4 frames -> 2 tubelets -> [0, 0, 0, 1]; 6 frames -> 3 tubelets -> linspace(0, 2, 6) = 0, .4, .8, 1.2, 1.6, 2
    -> [0, 0, 0, 1, 1, 2] (ours repeats each tubelet twice: [0, 0, 1, 1, 2, 2])."""
    cfg = GenerativeConfig(backbone="vjepa2", checkpoint=str(tiny_family["vjepa2"]), vjepa2_input="released")
    encoder = build_encoder(cfg, 4, "cpu")
    clip = frames(6)
    with torch.inference_mode():
        pixels = encoder.preprocess(clip)
        assert pixels.shape == (6, 3, 384, 384)
        tokens = encoder.model.get_vision_features(pixels.unsqueeze(0))[0].unflatten(0, (3, 24, 24))  # [3, 24, 24, D]
        grids = torch.nn.functional.adaptive_avg_pool2d(tokens.permute(0, 3, 1, 2), 4)  # [3, D, 4, 4]
    out = encoder.encode(clip, "s", list(range(6)))
    torch.testing.assert_close(out, grids[[0, 0, 0, 1, 1, 2]])
    four = encoder.encode(clip[:4], "s", list(range(4)))
    assert torch.equal(four[0], four[2]) and not torch.equal(four[2], four[3])
