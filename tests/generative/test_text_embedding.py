"""The empty-prompt text embedding: Wan's recipe, computed once, cached to a file, corruption recomputed."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from transformers import UMT5EncoderModel

from vega3d.generative import weights as ckpt
from vega3d.generative.text_embedding import cache_root, empty_prompt_embedding


def test_umt5_empty_prompt_embedding_is_cached_and_reused(tiny_wan, tmp_path, monkeypatch):
    monkeypatch.setenv("VEGA3D_CACHE", str(tmp_path))
    folder = tiny_wan[0]
    fingerprint = ckpt.weights_fingerprint(ckpt.wan_text_paths(folder))
    loads: list[int] = []

    def loader():
        loads.append(1)
        return ckpt.load_wan_text_encoder(folder, "t2v", None, torch.device("cpu"))

    embedding = empty_prompt_embedding("umt5", fingerprint, 512, trim=True, load_text_encoder=loader)
    # By hand: the empty prompt is just </s> (id 1) then <pad>; row 0 is the encoder output, the rest zero.
    encoder = UMT5EncoderModel.from_pretrained(str(folder / "text_encoder")).eval()
    ids = torch.zeros(1, 512, dtype=torch.long)
    ids[0, 0] = 1
    mask = (ids == 1).long()
    with torch.no_grad():
        expected = encoder(ids, attention_mask=mask).last_hidden_state[0, 0]
    assert embedding.shape == (512, 32)
    torch.testing.assert_close(embedding[0], expected)
    assert embedding[1:].abs().sum() == 0
    path = cache_root() / f"umt5-{fingerprint}-512.safetensors"
    assert path.is_file() and str(path).startswith(str(tmp_path))

    def forbidden():
        raise AssertionError("the text encoder must not be loaded on a cache hit")

    assert torch.equal(empty_prompt_embedding("umt5", fingerprint, 512, True, forbidden), embedding)
    path.write_bytes(b"broken")
    assert torch.equal(empty_prompt_embedding("umt5", fingerprint, 512, True, loader), embedding)
    assert len(loads) == 2


def test_missing_tokenizer_of_original_layout_names_it(tiny_wan, tmp_path):
    import shutil

    broken = tmp_path / "wan"
    shutil.copytree(tiny_wan[1], broken)
    shutil.rmtree(broken / "google")
    with pytest.raises(ckpt.CheckpointError, match=r"google/umt5-xxl: missing; expected the google/umt5-xxl tokenizer"):
        ckpt.load_wan_text_encoder(broken, "t2v", tiny_wan[0], torch.device("cpu"))
    assert not any(Path(os.environ["VEGA3D_CACHE"]).glob("*.tmp*"))
