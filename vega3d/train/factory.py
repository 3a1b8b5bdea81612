"""The Trainer of a resolved config: model and tokenizer from ``model.checkpoint``, the train records of
``data.tasks``, the generative feature source, and the writer of the final model."""

from __future__ import annotations

from typing import Any

import torch

from vega3d.config import Vega3DConfig
from vega3d.train.trainer import SaveModelFn, Trainer, TrainTracker, dist_env, seed_everything


def save_vega3d_model(tokenizer: Any) -> SaveModelFn:
    """Writer of the final model in our format (``save_pretrained`` folder + tokenizer) from gathered weights."""

    def save(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], folder: str) -> None:
        model.save_pretrained(folder, state_dict=state_dict, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    return save


def build_training(cfg: Vega3DConfig, tracker: TrainTracker | None = None) -> Trainer:
    """The Trainer of a resolved config: model (+ tokenizer) from ``model.checkpoint``, the train records of
    ``data.tasks``, generative features per ``generative`` (none for ``backbone: none``)."""
    from vega3d.data.layout import DataLayout
    from vega3d.model.loading import load_model
    from vega3d.train.collator import Vega3DCollator
    from vega3d.train.dataset import Vega3DDataset, load_records

    features = None
    if cfg.generative.backbone != "none":
        from vega3d.generative.source import open_feature_source

        device = f"cuda:{dist_env()[2]}" if torch.cuda.is_available() else "cpu"
        features = open_feature_source(cfg.generative, cfg.model.pooled_grid, device, cfg.data.root)
    # Modules new to the checkpoint (generative projector, fusion, grounding head) are initialised from the
    # RNG, seeded right here: every rank starts identical (ZeRO-3 partitions each rank's own copy), and the
    # start does not depend on what built the feature source (an online encoder consumes random numbers).
    seed_everything(cfg.train.seed)
    model, tokenizer = load_model(cfg.model.checkpoint, cfg.model, features.channels if features else 0)
    records = load_records(DataLayout(cfg.data.root), cfg.data.tasks, "train")
    from vega3d.model.length import enforce_max_length
    from vega3d.model.prompts import use_spatial_instruction

    enforce_max_length(tokenizer, records, "train", use_spatial_instruction(cfg.model, training=True),
                       cfg.model.max_length, model.tokens_for_frames(cfg.data.frames_upbound), "training records")
    dataset = Vega3DDataset(cfg, tokenizer, records, features)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return Trainer(cfg, model, dataset, Vega3DCollator(pad_id), dataset.tasks, save_vega3d_model(tokenizer), tracker)
