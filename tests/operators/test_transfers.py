"""Bulk transfers against a real S3 server: every byte arrives, in more than one chunk, no temporary names."""

from __future__ import annotations

import os

import pytest

from vega3d import storage, transfers

pytestmark = pytest.mark.integration


def test_upload_many_then_download_many_round_trip(s3_prefix, tmp_path, monkeypatch):
    monkeypatch.setattr(transfers, "CHUNK", 64)  # 150 files: three chunks
    source = tmp_path / "src"
    files = {f"d{i % 7}/f{i:03d}.bin": os.urandom(100 + i) for i in range(150)}
    for rel, data in files.items():
        (source / rel).parent.mkdir(parents=True, exist_ok=True)
        (source / rel).write_bytes(data)
    assert transfers.upload_many([(source / r, storage.join(s3_prefix, r)) for r in files]) == 150
    fs, root = storage.filesystem(s3_prefix)
    assert sorted(key[len(root) + 1 :] for key in fs.find(root)) == sorted(files)

    target = tmp_path / "dst"
    assert transfers.download_many([(storage.join(s3_prefix, r), target / r) for r in files]) == 150
    assert {p.relative_to(target).as_posix(): p.read_bytes() for p in target.rglob("*") if p.is_file()} == files


def test_download_many_leaves_no_partial_file_when_an_object_is_missing(s3_prefix, tmp_path):
    storage.write_bytes(storage.join(s3_prefix, "a.bin"), b"a")
    with pytest.raises(FileNotFoundError):
        transfers.download_many([(storage.join(s3_prefix, "a.bin"), tmp_path / "a.bin"),
                                 (storage.join(s3_prefix, "missing.bin"), tmp_path / "missing.bin")])
    assert not [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name]
    assert not (tmp_path / "missing.bin").exists()
