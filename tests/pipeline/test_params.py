"""vega3d.params: the declared settings -> dotted overrides (what setup_run applies), typed and in order."""

import pytest

from vega3d.config import load_config
from vega3d.params import SETTINGS, ParamError, pipeline_overrides, setting, settings_for, to_overrides


def test_unset_settings_give_nothing_but_pipeline_defaults_apply():
    assert to_overrides({}) == []
    assert to_overrides({}, ["eval.max_samples=3"]) == ["eval.max_samples=3"]
    assert to_overrides({"fusion": None, "backbone": "", "frames": "{{$.inputs.parameters['frames']}}"}) == []
    # the pipeline passes num_gpus (default 1) always, as train.nproc; nothing else unless set
    assert pipeline_overrides({}) == ["train.nproc=1"]
    assert pipeline_overrides({"num_gpus": 2, "overrides": ["train.seed=1"]}) == ["train.nproc=2", "train.seed=1"]


def test_every_setting_in_declaration_order():
    values = {"backbone": "sd21", "fusion": "add", "sampling": "mc-ratio95", "frames": 16, "timestep": 200,
              "block": 5, "lr": 1e-4, "vision_lr": 2e-6, "epochs": 0.5, "max_steps": 10, "num_gpus": 2}
    assert to_overrides(dict(reversed(values.items())), ["eval.batch_size=4", "train.seed=1"]) == [
        "generative.backbone=sd21",
        "model.fusion=add",
        "data.sampling=mc-ratio95",
        "data.frames_upbound=16",
        "generative.timestep=200",
        "generative.block=5",
        "train.lr=0.0001",
        "train.vision_lr=2e-06",
        "train.epochs=0.5",
        "train.max_steps=10",
        "train.nproc=2",
        "eval.batch_size=4",
        "train.seed=1",
    ]
    assert [s.name for s in SETTINGS] == list(values)


def test_zero_is_a_value_and_pipeline_numbers_are_typed():
    # kfp.local hands integers over as floats or text ("8.0"); 0 is a real value (timestep 0, block 0)
    overrides = to_overrides({"fusion": "gated", "timestep": 0, "block": "0", "frames": "8.0", "epochs": "1"})
    assert overrides == ["model.fusion=gated", "data.frames_upbound=8", "generative.timestep=0",
                         "generative.block=0", "train.epochs=1.0"]
    cfg = load_config("tiny", overrides)
    assert (cfg.model.fusion, cfg.generative.timestep, cfg.generative.block, cfg.data.frames_upbound) == (
        "gated", 0, 0, 8)
    assert cfg.train.lr == load_config("tiny").train.lr


def test_overrides_load_back_as_typed_values():
    # "1e-05" is a string to YAML 1.1 (no dot); the config must still read it as the float
    overrides = to_overrides({"lr": 1e-05, "vision_lr": 2e-06, "epochs": 3.0, "frames": 8, "sampling": "max-coverage"})
    cfg = load_config("tiny", overrides)
    assert (cfg.train.lr, cfg.train.vision_lr, cfg.train.epochs) == (1e-05, 2e-06, 3.0)
    assert (cfg.data.frames_upbound, cfg.data.sampling) == (8, "max-coverage")


def test_bad_values_name_the_parameter():
    with pytest.raises(ParamError, match=r"frames='8.5': expected int \(data.frames_upbound\)"):
        to_overrides({"frames": "8.5"})
    with pytest.raises(ParamError, match="unknown setting.*'fusoin'"):
        to_overrides({"fusoin": "add"})
    with pytest.raises(KeyError, match="no setting 'x'"):
        setting("x")


def test_surfaces_and_flags():
    assert {s.name for s in settings_for("eval")} == {"backbone", "fusion", "sampling", "frames", "timestep", "block"}
    assert setting("vision_lr").flag == "--vision-lr" and setting("num_gpus").aliases == ("--nproc",)
    assert setting("fusion").description.endswith("Default: the preset's (model.fusion).")
    assert setting("num_gpus").description.endswith("Default: 1 (train.nproc).")
