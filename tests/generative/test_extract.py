"""The extract stage and `vega3d extract` on synthetic scenes with the tiny Wan checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vega3d.cli import app
from vega3d.config import SyntheticConfig, load_config
from vega3d.data.layout import DataLayout
from vega3d.generative.extract import extract_features, frames_tensor, split_scenes
from vega3d.generative.registry import build_encoder
from vega3d.generative.source import open_feature_source
from vega3d.generative.store import FeatureStore, FeatureStoreError, feature_key
from vega3d.testing.synthetic import synthesize_scenes
from vega3d.testing.tiny_generative import write_tiny_wan

TINY_DATA = SyntheticConfig(num_train=2, num_val=1, num_test=1, frames=8, width=64, height=48, seed=3)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("data")
    synthesize_scenes(root, TINY_DATA)
    write_tiny_wan(root / "models" / "tiny-wan-t2v")
    return root


@pytest.fixture(scope="module")
def tiny_cfg(data_root: Path):
    """The tiny preset at 4 frames per sample (the frame numbers below are worked out for 4)."""
    return load_config("tiny", [f"data.root={data_root}", "data.frames_upbound=4"]).with_paths_under_root()


@pytest.fixture(scope="module")
def encoder(tiny_cfg):
    return build_encoder(tiny_cfg.generative, tiny_cfg.model.pooled_grid, "cpu")


def test_extract_writes_once_skips_existing_and_reextracts_corrupted(tiny_cfg, encoder, tmp_path):
    uri = str(tmp_path / "features")
    first = extract_features(tiny_cfg, encoder, uri, progress=False)
    scenes = split_scenes(DataLayout(tiny_cfg.data.root), ["train", "val", "test"])
    assert len(scenes) == 4 and (first.scenes, first.written, first.skipped) == (4, 4, 0)
    store = FeatureStore(uri)
    saved = {key: store.get(key) for key in first.keys}
    assert all(t.shape == (4, 32, 4, 4) for t in saved.values())  # 4 frames, tiny DiT width 32, grid 4

    again = extract_features(tiny_cfg, encoder, uri, progress=False)
    assert (again.written, again.skipped) == (0, 4)

    victim = first.keys[1]
    path = Path(uri) / f"{victim}.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0x55
    path.write_bytes(bytes(raw))
    repaired = extract_features(tiny_cfg, encoder, uri, progress=False)
    assert (repaired.written, repaired.skipped) == (1, 3)
    assert torch.equal(store.get(victim), saved[victim])  # same seed -> the same features again


def test_stored_features_are_the_encoder_output_for_the_sampled_frames(tiny_cfg, encoder, tmp_path):
    uri = str(tmp_path / "features")
    summary = extract_features(tiny_cfg, encoder, uri, splits=["val"], progress=False)
    layout = DataLayout(tiny_cfg.data.root)
    (scene,) = split_scenes(layout, ["val"])
    frame_ids = [0, 20, 40, 70]  # uniform: int(linspace(0, 7, 4)) = 0, 2, 4, 7 of frames 0, 10, ..., 70
    key = feature_key(summary.feature_id, scene, frame_ids)
    assert summary.keys == [key]
    expected = encoder.encode(frames_tensor(layout, scene, frame_ids), scene, frame_ids)
    assert torch.equal(FeatureStore(uri).get(key), expected)
    manifest = FeatureStore(uri).read_manifest(summary.feature_id)
    assert (manifest.encoder, manifest.block, manifest.grid, manifest.channels) == ("wan_t2v", 1, 4, 32)


def test_shards_split_the_scenes(tiny_cfg, encoder, tmp_path):
    uri = str(tmp_path / "features")
    parts = [extract_features(tiny_cfg, encoder, uri, shard_index=i, num_shards=3, progress=False) for i in range(3)]
    keys = [set(p.keys) for p in parts]
    assert [p.scenes for p in parts] == [2, 1, 1]
    assert not (keys[0] & keys[1]) and not (keys[1] & keys[2]) and not (keys[0] & keys[2])
    assert len(set().union(*keys)) == 4
    with pytest.raises(ValueError, match="shard index 3"):
        extract_features(tiny_cfg, encoder, uri, shard_index=3, num_shards=3)


def test_two_shards_write_the_same_files_as_one_and_a_rerun_skips_finished_keys(data_root, tmp_path):
    """The pipeline's fan-out (stages.extract per shard, one store): byte-identical to one shard."""
    from tests.data.prepared import file_digests
    from vega3d import stages
    from vega3d.generative.extract import merge_feature_ids, shard_indices
    from vega3d.runs import config_to_yaml

    stores, ids, configs = {}, {}, {}
    for shards in (1, 2):
        stores[shards] = tmp_path / f"store-{shards}"
        configs[shards] = config_to_yaml(load_config("tiny", [
            f"data.root={data_root}", "data.frames_upbound=4", f"generative.feature_root={stores[shards]}"]))
        results = [stages.extract(configs[shards], str(data_root), i, shards) for i in shard_indices(shards)]
        assert sum(r["counts"]["written"] for r in results) == 4 and len(results) == shards
        ids[shards] = merge_feature_ids([r["feature_id"] for r in results])
    assert ids[1] == ids[2]
    one, two = file_digests(stores[1]), file_digests(stores[2])
    assert len(one) == 5 and one == two  # 4 feature files + the manifest, byte for byte
    rerun = stages.extract(configs[2], str(data_root), 1, 2)
    assert rerun["counts"] == {"scenes": 2, "written": 0, "skipped": 2}
    assert file_digests(stores[2]) == two
    with pytest.raises(ValueError, match="feature ids"):
        merge_feature_ids([ids[1], "other"])
    with pytest.raises(ValueError, match="at least one shard"):
        shard_indices(0)


def test_offline_and_online_sources_agree(tiny_cfg, encoder, tmp_path):
    uri = str(tmp_path / "features")
    summary = extract_features(tiny_cfg, encoder, uri, splits=["test"], progress=False)
    layout = DataLayout(tiny_cfg.data.root)
    (scene,) = split_scenes(layout, ["test"])
    frame_ids = [0, 20, 40, 70]
    offline_cfg = tiny_cfg.generative.model_copy(update={"mode": "offline", "feature_id": summary.feature_id,
                                                         "feature_root": uri})
    offline = open_feature_source(offline_cfg, 4)
    online = open_feature_source(tiny_cfg.generative, 4)
    frames = frames_tensor(layout, scene, frame_ids)
    assert offline.channels == online.channels == 32
    assert torch.equal(offline.get(scene, frame_ids), online.get(scene, frame_ids, frames))
    assert online.cache.misses == 1 and online.get(scene, frame_ids, frames) is not None and online.cache.hits == 1
    with pytest.raises(FeatureStoreError, match="run `vega3d extract`"):
        offline.get(scene, [0, 10])


def test_cli_extract_then_validate(data_root, tmp_path):
    runner = CliRunner()
    store = str(tmp_path / "features")
    args = ["extract", "--set", f"data.root={data_root}", "--store", store, "--split", "val", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.rindex("{"):])
    assert (summary["written"], summary["scenes"]) == (1, 1)
    result = runner.invoke(app, ["extract", "--set", f"data.root={data_root}", "--set",
                                 f"generative.feature_id={summary['feature_id']}", "--store", store, "--validate"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output[result.output.rindex("{"):])["files"] == 1


@pytest.mark.slow
def test_cli_two_workers_split_the_scenes(data_root, tmp_path):
    import subprocess
    import sys

    store = tmp_path / "features"
    args = [sys.executable, "-m", "vega3d.cli", "extract", "--set", f"data.root={data_root}", "--store", str(store),
            "--workers", "2", "--no-progress"]
    result = subprocess.run(args, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert sorted(s["scenes"] for s in summaries) == [2, 2]
    assert len(list(store.rglob("*.safetensors"))) == 4
