"""docs/fidelity.md against the presets: paper = released switches, improved = ours, nothing else differs."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
import torch
import yaml

from vega3d.config import ConfigError, load_config

ROOT = Path(__file__).parents[2]
FIDELITY = ROOT / "docs" / "fidelity.md"
COLUMNS = ["#", "item", "released", "ours", "field", "paper", "improved", "test"]


def fidelity_rows() -> list[dict[str, str]]:
    """The table of docs/fidelity.md as one dict per row (cells stripped, escaped pipes kept)."""
    lines = [line for line in FIDELITY.read_text().splitlines() if line.startswith("|")]
    split = [[cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]] for line in lines]
    assert split[0] == COLUMNS and set("".join(split[1])) <= {"-", "|"}
    return [dict(zip(COLUMNS, cells, strict=True)) for cells in split[2:]]


def _code(cell: str) -> str | None:
    match = re.fullmatch(r"`([^`]+)`", cell)
    return match.group(1) if match else None


def _resolved(config, dotted: str):
    node = config.model_dump(mode="json")
    for key in dotted.split("."):
        node = node[key]
    return node


def test_improved_differs_from_paper_exactly_in_the_fields_of_the_table():
    paper, improved = load_config("paper"), load_config("improved")
    flat_paper, flat_improved = paper.to_flat_dict(), improved.to_flat_dict()
    differing = {key for key in flat_paper if flat_paper[key] != flat_improved[key]} - {"preset"}
    switched = set()
    for row in fidelity_rows():
        field = _code(row["field"])
        if field is None:
            assert row["field"] == row["paper"] == row["improved"] == "—", f"row {row['#']}: no field, no values"
            continue
        values = yaml.safe_load(_code(row["paper"])), yaml.safe_load(_code(row["improved"]))
        assert (_resolved(paper, field), _resolved(improved, field)) == values, f"row {row['#']} ({field})"
        if values[0] != values[1]:
            switched.add(field)
    assert differing == switched
    assert switched == {"data.scanqa_train_records", "data.sqa3d_train_records", "data.mask_invalid_depth",
                        "model.loss_tokens", "model.spatial_instruction_at_eval", "generative.crop",
                        "generative.svd_mode", "generative.vace_layout", "generative.vjepa2_input", "train.last_step"}


def test_every_row_names_an_existing_test():
    for row in fidelity_rows():
        cell = row["test"]
        path, _, name = (_code(cell) or "").partition("::")
        assert path and name, f"row {row['#']}: the test cell must be `path::test_name`, got {cell!r}"
        tree = ast.parse((ROOT / path).read_text())
        assert name in {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}, f"row {row['#']}: {cell}"


@pytest.mark.parametrize("preset", ["paper", "wan_t2v", "wan_t2v_small", "wan_vace", "sd21", "baseline"])
def test_paper_presets_keep_every_released_switch(preset):
    paper = load_config("paper").to_flat_dict()
    resolved = load_config(preset).to_flat_dict()
    for row in fidelity_rows():
        field = _code(row["field"])
        if field and field != "generative.resolution":
            assert resolved[field] == paper[field], f"{preset}: {field}"


def test_wan_presets_resolve_the_released_resolutions():
    assert load_config("wan_t2v").generative.resolution == (1280, 720)
    assert load_config("wan_t2v_small").generative.resolution == (832, 480)
    assert load_config("wan_vace").generative.resolution == (832, 480)
    with pytest.raises(ConfigError, match=r"siglip_size \(384\) must equal model.vision.image_size \(112\)"):
        load_config("tiny", ["generative.crop=siglip_square"])
    assert load_config("tiny", ["generative.crop=siglip_square", "generative.siglip_size=112"]).generative.crop \
        == "siglip_square"


def test_paper_hyper_parameters_are_the_released_ones():
    cfg = load_config("paper")
    t = cfg.train
    assert (t.lr, t.vision_lr, t.weight_decay, t.warmup_ratio, t.lr_scheduler, t.epochs) == (1e-5, 2e-6, 0.0, 0.03,
                                                                                          "cosine", 1.0)
    assert (t.per_device_batch_size, t.gradient_accumulation_steps, t.zero_stage, t.precision, t.max_grad_norm) == (
        1, 16, 3, "bf16", 1.0)
    assert cfg.model.max_length == 32768 and cfg.model.multi3drefer_threshold == 0.4


def test_readme_names_the_dinov3_sat493m_repository():
    row = next(line for line in (ROOT / "README.md").read_text().splitlines()
               if line.startswith("| `vit_large_patch16_dinov3`"))
    assert "facebook/dinov3-vitl16-pretrain-sat493m" in row and "SAT-493M" in row


@pytest.mark.parametrize("preset", ["paper", "improved"])
def test_paper_and_improved_build_on_the_meta_device(preset):
    """The whole paper model and its Wan encoder at 1280x720 on meta: shapes without weights or downloads."""
    from vega3d.generative.registry import PAPER_CHANNELS, build_encoder
    from vega3d.model.configuration import build_hf_config
    from vega3d.model.modeling_vega3d import Vega3DModel

    cfg = load_config(preset)
    with torch.device("meta"):
        model = Vega3DModel(build_hf_config(cfg.model, PAPER_CHANNELS[cfg.generative.backbone]))
    assert model.fusion.gate.in_features == 2 * 3584
    encoder = build_encoder(cfg.generative.model_copy(update={"checkpoint": "/nonexistent"}), cfg.model.pooled_grid,
                            "meta")
    assert (encoder.resolution, encoder.crop, encoder.channels) == ((1280, 720), cfg.generative.crop, 1536)
    pixels = encoder.preprocess(torch.empty(2, 3, 480, 640, device="meta"))
    assert pixels.shape == (2, 3, 720, 1280)
