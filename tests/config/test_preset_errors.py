"""A malformed or self-inheriting YAML preset is a one-line error naming the file (issue 16)."""

from __future__ import annotations

import pytest

from vega3d.config import ConfigError, load_config


def test_malformed_yaml_names_the_file_and_line(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("inherit: tiny\ntrain:\n  lr: [0.1\n  epochs: 2\n")
    with pytest.raises(ConfigError) as error:
        load_config(str(path))
    message = str(error.value)
    assert message.startswith(f"{path}: not valid YAML at line ") and "fix the file" in message
    assert "\n" not in message


def test_a_preset_inheriting_itself_is_named(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text(f"inherit: {path}\ntrain:\n  lr: 0.1\n")
    with pytest.raises(ConfigError, match=f"preset '{path}' inherits from itself: {path} -> {path}"):
        load_config(str(path))


def test_a_longer_inheritance_cycle_is_named(tmp_path):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    a.write_text(f"inherit: {b}\n")
    b.write_text(f"inherit: {a}\n")
    with pytest.raises(ConfigError, match=f"{a} -> {b} -> {a}"):
        load_config(str(a))


def test_a_preset_that_is_not_a_mapping_names_the_file(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- train\n- lr\n")
    with pytest.raises(ConfigError, match=f"{path}: a preset must be a YAML mapping, got list"):
        load_config(str(path))


def test_a_valid_user_preset_still_inherits(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("inherit: tiny\ntrain:\n  lr: 0.005\n")
    cfg = load_config(str(path))
    assert cfg.train.lr == 0.005 and cfg.data.frames_upbound == load_config("tiny").data.frames_upbound
