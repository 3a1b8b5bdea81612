"""The fixed empty-prompt text embedding of a generative model, computed once and cached to a file.

Wan conditions on umT5 (the diffusers Wan pipelines' recipe: tokenise to ``max_length`` with padding, keep the
first ``attention_mask.sum()`` rows of the encoder output and zero the rest); SD on CLIP (all 77 rows of
the final hidden state). The result only depends on the text encoder files, so it is cached under
``$VEGA3D_CACHE`` (default ``~/.cache/vega3d``) keyed by their fingerprint, and the (large) text encoder is
loaded only when the cache misses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from vega3d.storage import atomic_local_path

logger = logging.getLogger(__name__)


def cache_root() -> Path:
    """Folder of cached text embeddings."""
    return Path(os.environ.get("VEGA3D_CACHE", "~/.cache/vega3d")).expanduser() / "text_embeddings"


def encode_empty_prompt(tokenizer: Any, encoder: torch.nn.Module, max_length: int, trim: bool) -> torch.Tensor:
    """Empty prompt -> [max_length, D] float32; ``trim`` zeroes rows past the real tokens (Wan's recipe)."""
    device = next(encoder.parameters()).device
    tokens = tokenizer(
        [""], padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True,
        return_attention_mask=True, return_tensors="pt",
    )
    ids, mask = tokens.input_ids.to(device), tokens.attention_mask.to(device)  # [1, L]
    with torch.inference_mode():
        if trim:
            hidden = encoder(ids, attention_mask=mask).last_hidden_state[0].float()  # [L, D]
            hidden[int(mask.sum()) :] = 0
        else:
            hidden = encoder(ids).last_hidden_state[0].float()  # [L, D]
    return hidden.cpu()


def empty_prompt_embedding(
    kind: str,
    fingerprint: str,
    max_length: int,
    trim: bool,
    load_text_encoder: Callable[[], tuple[Any, torch.nn.Module]],
) -> torch.Tensor:
    """The cached [max_length, D] embedding for (kind, fingerprint); computed and written on a miss."""
    from safetensors.torch import load_file, save_file

    path = cache_root() / f"{kind}-{fingerprint}-{max_length}.safetensors"
    if path.exists():
        try:
            return load_file(str(path))["embedding"]
        except Exception as error:  # noqa: BLE001 - a broken cache file is recomputed
            logger.warning("%s: unreadable cached text embedding (%s); recomputing", path, error)
    logger.info("computing the empty-prompt %s embedding (cached to %s)", kind, path)
    tokenizer, encoder = load_text_encoder()
    embedding = encode_empty_prompt(tokenizer, encoder, max_length, trim)
    del encoder
    with atomic_local_path(path) as tmp:
        save_file({"embedding": embedding.contiguous()}, tmp, metadata={"kind": kind, "fingerprint": fingerprint})
    return embedding
