"""vega3d.runs: flat pipeline parameters -> one resolved, content-addressed config (and config paths)."""

import re

import pytest

from vega3d import storage
from vega3d.config import Vega3DConfig, load_config
from vega3d.params import to_overrides
from vega3d.runs import (
    config_digest,
    config_from_yaml,
    config_to_yaml,
    resolve_run_config,
)

ROOT = "s3://bucket/prefix"
DATA = "s3://bucket/prefix/data"


def test_resolve_puts_data_and_outputs_under_the_storage_root():
    cfg = resolve_run_config("tiny", ["train.max_steps=4"], ROOT, DATA, "http://mlflow:5000", "exp")
    digest = config_digest(cfg)
    assert re.fullmatch(r"[0-9a-f]{12}", digest)
    assert cfg.data.root == DATA
    assert cfg.train.output_uri == f"{ROOT}/runs/{digest}/train"
    assert cfg.eval.output_uri == f"{ROOT}/runs/{digest}/eval"
    assert (cfg.tracking.uri, cfg.tracking.experiment) == ("http://mlflow:5000", "exp")
    assert cfg.train.max_steps == 4 and cfg.preset == "tiny"


def test_resolve_local_storage_root(tmp_path):
    cfg = resolve_run_config("tiny", [], str(tmp_path), str(tmp_path / "data"))
    digest = config_digest(cfg)
    assert cfg.train.output_uri == str(tmp_path / "runs" / digest / "train")
    assert cfg.eval.output_uri == str(tmp_path / "runs" / digest / "eval")
    assert cfg.tracking.uri is None  # "" and None both mean no tracking


def test_digest_is_stable_and_ignores_tracking_and_output_locations():
    first = resolve_run_config("tiny", ["train.lr=0.002"], ROOT, DATA, "http://a:5000", "one")
    again = resolve_run_config("tiny", ["train.lr=0.002"], ROOT, DATA, "http://a:5000", "one")
    tracked_elsewhere = resolve_run_config(
        "tiny", ["train.lr=0.002", "tracking.registered_model=other"], ROOT, DATA, None, "two"
    )
    other_root = resolve_run_config("tiny", ["train.lr=0.002"], "s3://elsewhere", DATA)
    digest = config_digest(first)
    assert config_digest(again) == digest and again.train.output_uri == first.train.output_uri
    assert config_digest(tracked_elsewhere) == digest
    assert tracked_elsewhere.train.output_uri == first.train.output_uri
    # outputs move with the storage root, but the digest (the results' identity) does not
    assert config_digest(other_root) == digest
    assert other_root.train.output_uri == f"s3://elsewhere/runs/{digest}/train"


@pytest.mark.parametrize(
    "change",
    [
        ["train.lr=0.003"],
        ["generative.backbone=none"],
        ["model.fusion=add"],
        ["data.frames_upbound=16"],
        ["generative.timestep=100"],
        ["eval.max_samples=2"],
        ["train.seed=1"],
    ],
)
def test_digest_changes_with_any_result_relevant_setting(change):
    base = resolve_run_config("tiny", ["train.lr=0.002"], ROOT, DATA)
    changed = resolve_run_config("tiny", ["train.lr=0.002", *change], ROOT, DATA)
    assert config_digest(changed) != config_digest(base)
    assert changed.train.output_uri != base.train.output_uri
    assert changed.eval.output_uri != base.eval.output_uri


def test_digest_changes_with_the_data_root():
    base = resolve_run_config("tiny", [], ROOT, DATA)
    other = resolve_run_config("tiny", [], ROOT, "s3://bucket/prefix/data-v2")
    assert config_digest(other) != config_digest(base)


def test_yaml_round_trip():
    cfg = resolve_run_config(
        "tiny", to_overrides({"fusion": "concat", "frames": 8, "lr": 5e-4}, ["eval.tasks=[scanqa, sqa3d]"]),
        ROOT, DATA, "http://mlflow:5000", "exp",
    )
    text = config_to_yaml(cfg)
    back = config_from_yaml(text)
    assert back == cfg
    assert back.eval.tasks == ["scanqa", "sqa3d"] and back.model.fusion == "concat"
    assert back.generative.resolution == (112, 112)  # tuples survive YAML lists
    assert config_to_yaml(back) == text


def _checkpoints(cfg: Vega3DConfig) -> tuple[str, str]:
    return cfg.model.checkpoint, cfg.generative.checkpoint


def test_paths_under_local_root(tmp_path):
    cfg = load_config("tiny", [f"data.root={tmp_path}"]).with_paths_under_root()
    assert _checkpoints(cfg) == (str(tmp_path / "models/tiny-llava-video"), str(tmp_path / "models/tiny-wan-t2v"))


def test_paths_under_remote_root():
    cfg = load_config("tiny", ["data.root=s3://bucket/data/"]).with_paths_under_root()
    assert _checkpoints(cfg) == ("s3://bucket/data/models/tiny-llava-video", "s3://bucket/data/models/tiny-wan-t2v")


def test_absolute_and_uri_checkpoints_stay(tmp_path):
    cfg = load_config(
        "tiny",
        ["data.root=s3://bucket/data", f"model.checkpoint={tmp_path}/llava", "generative.checkpoint=s3://w/wan"],
    )
    moved = cfg.with_paths_under_root()
    assert _checkpoints(moved) == (f"{tmp_path}/llava", "s3://w/wan")
    assert moved.with_paths_under_root() == moved  # idempotent once resolved


@pytest.mark.integration
def test_load_config_from_s3_uri(s3_prefix):
    # A resolved config published under the storage root (what multi-node training reads) ...
    cfg = resolve_run_config("tiny", ["train.max_steps=3"], s3_prefix, storage.join(s3_prefix, "data"))
    resolved_uri = storage.join(s3_prefix, "runs", "config.yaml")
    storage.write_text(resolved_uri, config_to_yaml(cfg))
    assert load_config(resolved_uri) == cfg
    assert load_config(resolved_uri, ["train.nproc=2"]).train.nproc == 2
    # ... and a user preset that inherits a shipped one; without its own name it is named after the file
    preset_uri = storage.join(s3_prefix, "presets", "mine.yaml")
    storage.write_text(preset_uri, "inherit: tiny\npreset: mine\ntrain:\n  lr: 0.005\n")
    mine = load_config(preset_uri, ["eval.batch_size=3"])
    assert (mine.preset, mine.train.lr, mine.eval.batch_size) == ("mine", 0.005, 3)
    assert mine.model.llm.hidden_size == 64  # from tiny
    unnamed_uri = storage.join(s3_prefix, "presets", "unnamed.yaml")
    storage.write_text(unnamed_uri, "train:\n  lr: 0.004\n")
    unnamed = load_config(unnamed_uri)
    assert (unnamed.preset, unnamed.train.lr) == ("unnamed", 0.004)


def test_demo_resolves_the_config_its_pipeline_runs():
    """The demo reads the report at the run's digest-addressed path: its own resolution must match setup_run's."""
    from vega3d.testing.demo import DEMO_PARAMS, demo_overrides

    ours = resolve_run_config("tiny", demo_overrides(DEMO_PARAMS), ROOT, DATA)
    # components/setup_run.py: the same settings, with num_gpus (pipeline default 1) passed as train.nproc
    theirs = resolve_run_config(
        "tiny", to_overrides({"max_steps": DEMO_PARAMS["max_steps"], "num_gpus": 1}, DEMO_PARAMS["overrides"]),
        ROOT, DATA,
    )
    assert config_digest(ours) == config_digest(theirs)
    assert ours.eval.output_uri == theirs.eval.output_uri
    assert (ours.train.per_device_batch_size, ours.train.max_steps) == (4, 4000)
