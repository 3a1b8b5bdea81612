"""Feature store: content keys, atomic checked files, corruption detection, offline-only layouts."""

from __future__ import annotations

import json
import struct

import pytest
import torch

from vega3d.generative.store import (
    FeatureSpec,
    FeatureStore,
    FeatureStoreError,
    feature_key,
    safetensors_bytes,
    safetensors_metadata,
    tensor_checksum,
    validate_feature_set,
)

SPEC = FeatureSpec(encoder="wan_t2v", fingerprint="abc", timestep=300, block=20, resolution=(832, 480), grid=14,
                   seed=0, channels=8)


def test_keys_depend_on_every_configuration_field_and_on_frames():
    fid = SPEC.feature_id
    assert fid.startswith("wan_t2v-") and len(fid) == len("wan_t2v-") + 12
    assert FeatureSpec(**{**SPEC.__dict__}).feature_id == fid
    for change in ({"fingerprint": "abd"}, {"timestep": 250}, {"block": 19}, {"resolution": (480, 832)},
                   {"grid": 7}, {"seed": 1}, {"crop": "center_vertical"}):
        assert FeatureSpec(**{**SPEC.__dict__, **change}).feature_id != fid, change
    assert FeatureSpec(**{**SPEC.__dict__, "channels": 9}).feature_id == fid  # C follows from the rest
    key = feature_key(fid, "scene0000_00", [0, 10, 20])
    assert key.startswith(f"{fid}/scene0000_00/")
    assert key == feature_key(fid, "scene0000_00", [0, 10, 20])
    assert key != feature_key(fid, "scene0000_00", [0, 10, 30])
    assert key != feature_key(fid, "scene0000_00", [10, 0, 20])
    assert key != feature_key(fid, "scene0001_00", [0, 10, 20])


def test_put_get_round_trip_with_metadata(tmp_path):
    store = FeatureStore(str(tmp_path))
    key = feature_key(SPEC.feature_id, "scene0000_00", [0, 10])
    features = torch.randn(2, 8, 14, 14)
    store.put(key, features, "scene0000_00", [0, 10])
    assert torch.equal(store.get(key), features)
    raw = (tmp_path / f"{key}.safetensors").read_bytes()
    metadata = safetensors_metadata(raw)
    assert metadata["key"] == key and json.loads(metadata["frame_ids"]) == [0, 10]
    assert metadata["checksum"] == tensor_checksum(features) and json.loads(metadata["shape"]) == [2, 8, 14, 14]
    assert not list(tmp_path.rglob(".*tmp*"))  # no temporary file left behind
    assert store.get(feature_key(SPEC.feature_id, "scene0000_00", [0])) is None


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage"])
def test_corrupted_file_is_detected_and_removed(tmp_path, damage):
    store = FeatureStore(str(tmp_path))
    key = feature_key(SPEC.feature_id, "scene0000_00", [0, 10])
    store.put(key, torch.randn(2, 8, 14, 14), "scene0000_00", [0, 10])
    path = tmp_path / f"{key}.safetensors"
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[-5] ^= 0xFF  # one byte of tensor data: loads fine, checksum differs
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw = bytearray(b"not a safetensors file")
    path.write_bytes(bytes(raw))
    with pytest.raises(FeatureStoreError):
        store.load(key)
    assert store.get(key) is None
    assert not path.exists()


def test_file_under_the_wrong_key_is_rejected(tmp_path):
    store = FeatureStore(str(tmp_path))
    a = feature_key(SPEC.feature_id, "scene0000_00", [0])
    b = feature_key(SPEC.feature_id, "scene0000_00", [10])
    store.put(a, torch.ones(1, 8, 14, 14), "scene0000_00", [0])
    (tmp_path / f"{b}.safetensors").write_bytes((tmp_path / f"{a}.safetensors").read_bytes())
    with pytest.raises(FeatureStoreError, match="holds key"):
        store.load(b)


def test_put_rejects_a_shape_that_does_not_match_the_frames(tmp_path):
    with pytest.raises(FeatureStoreError, match=r"must be \[V=3, C, g, g\]"):
        FeatureStore(str(tmp_path)).put("x/s/k", torch.zeros(2, 8, 14, 14), "s", [0, 1, 2])


def test_offline_only_feature_set_layout_is_validated(tmp_path):
    store = FeatureStore(str(tmp_path))
    spec = FeatureSpec(encoder="vggt", fingerprint="vggt-1b", timestep=0, block=-1, resolution=(196, 196),
                       grid=14, seed=0, channels=2048)
    store.write_manifest(spec)
    for scene, frames in (("scene0000_00", [0, 10]), ("scene0001_00", [0, 20, 40])):
        store.put(feature_key(spec.feature_id, scene, frames), torch.zeros(len(frames), 2048, 14, 14), scene, frames)
    assert validate_feature_set(store, spec.feature_id) == 2
    bad = feature_key(spec.feature_id, "scene0002_00", [0])
    store.put(bad, torch.zeros(1, 2048, 7, 7), "scene0002_00", [0])
    with pytest.raises(FeatureStoreError, match=r"shape \(1, 2048, 7, 7\), expected \(1, 2048, 14, 14\)"):
        validate_feature_set(store, spec.feature_id)
    wrong = FeatureSpec(**{**spec.__dict__, "fingerprint": "x", "channels": 1024})
    store.write_manifest(wrong)
    with pytest.raises(FeatureStoreError, match="vggt features have C=2048, manifest says 1024"):
        validate_feature_set(store, wrong.feature_id)


def test_manifest_conflict_is_an_error(tmp_path):
    store = FeatureStore(str(tmp_path))
    store.write_manifest(SPEC)
    store.write_manifest(SPEC)  # idempotent
    assert store.read_manifest(SPEC.feature_id) == SPEC
    manifest = tmp_path / SPEC.feature_id / "manifest.json"
    manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "channels": 16}))
    with pytest.raises(FeatureStoreError, match="holds"):
        store.write_manifest(SPEC)


@pytest.mark.integration
def test_store_on_s3_round_trip_corruption_and_validation(s3_prefix):
    from vega3d import storage

    store = FeatureStore(s3_prefix)
    store.write_manifest(SPEC)
    key = feature_key(SPEC.feature_id, "scene0000_00", [0, 10])
    features = torch.randn(2, 8, 14, 14)
    store.put(key, features, "scene0000_00", [0, 10])
    assert torch.equal(store.get(key), features)
    assert store.keys(SPEC.feature_id) == [key]
    assert validate_feature_set(store, SPEC.feature_id) == 1
    raw = bytearray(storage.read_bytes(store.path(key)))
    raw[-1] ^= 0x01
    storage.write_bytes(store.path(key), bytes(raw))
    assert store.get(key) is None and not storage.exists(store.path(key))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_feature_files_depend_only_on_their_content(dtype):
    from safetensors.torch import load

    tensor = torch.randn(2, 3, 4, 4).to(dtype)
    meta = {"key": "k", "scene": "scene0000_00", "frame_ids": "[0, 10]", "checksum": "c"}
    raw = safetensors_bytes("features", tensor, meta)
    assert raw == safetensors_bytes("features", tensor, dict(reversed(list(meta.items()))))  # any dict order
    assert torch.equal(load(raw)["features"], tensor) and safetensors_metadata(raw) == meta
    (length,) = struct.unpack("<Q", raw[:8])
    assert length % 8 == 0 and len(raw) == 8 + length + tensor.numel() * tensor.element_size()
