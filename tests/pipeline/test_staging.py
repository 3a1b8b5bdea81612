"""vega3d.staging: local working copies of storage folders (real SeaweedFS for the remote cases)."""

import os

import pytest

from vega3d import staging, storage, transfers

# relative path -> content; binary and empty files included, nested folders, a name sharing a prefix
FILES = {
    "scannet/scene0000_00/frame.bin": os.urandom(70_000),
    "scannet/scene0000_00/info.json": b'{"frames": 16}',
    "scannet/empty.txt": b"",
    "scannet_extra/other.txt": b"not under scannet/",
    "metadata/boxes.npy": os.urandom(1_234),
    "synthetic_truth.json": b"[1, 2, 3]",
}
HIDDEN = ("scannet/.frame.bin.tmp-1234abcd", "metadata/.partial")


def _write_tree(root, files):
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)


def _local_files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _remote_keys(uri):
    fs, path = storage.filesystem(uri)
    return sorted(key[len(path.rstrip("/")) + 1 :] for key in fs.find(path))


@pytest.fixture
def download_count(monkeypatch):
    """Count the files staging hands to vega3d.transfers.download_many (still downloading for real)."""
    calls = []
    real = transfers.download_many

    def counting(pairs, *args, **kwargs):
        calls.extend(uri for uri, _ in pairs)
        return real(pairs, *args, **kwargs)

    monkeypatch.setattr(transfers, "download_many", counting)
    return calls


def test_stage_down_of_a_local_path_is_that_path(tmp_path):
    _write_tree(tmp_path / "data", FILES)
    cache = tmp_path / "cache"
    assert staging.stage_down(str(tmp_path / "data"), cache_dir=cache) == tmp_path / "data"
    assert not cache.exists()  # nothing copied


def test_stage_up_onto_the_same_local_folder_is_a_no_op(tmp_path):
    _write_tree(tmp_path, FILES)
    assert staging.stage_up(tmp_path, str(tmp_path), ["scannet"]) == 0
    assert _local_files(tmp_path) == FILES


def test_local_copy_dir_is_stable_per_uri(tmp_path):
    first = staging.local_copy_dir("s3://bucket/run/data", tmp_path)
    assert first == staging.local_copy_dir("s3://bucket/run/data/", tmp_path)
    assert first.parent == tmp_path / "staged" and first.name.startswith("data-")
    assert staging.local_copy_dir("s3://bucket/other/data", tmp_path) != first


@pytest.mark.integration
def test_stage_up_then_down_mirrors_bytes(s3_prefix, tmp_path, download_count):
    local = tmp_path / "work"
    _write_tree(local, FILES)
    _write_tree(local, {rel: b"half-written" for rel in HIDDEN})
    uploaded = staging.stage_up(local, s3_prefix, ["scannet", "scannet_extra", "metadata", "synthetic_truth.json"])
    assert uploaded == len(FILES)
    assert _remote_keys(s3_prefix) == sorted(FILES)  # hidden temporary names never published

    target = staging.stage_down(s3_prefix, cache_dir=tmp_path / "cache")
    assert target == staging.local_copy_dir(s3_prefix, tmp_path / "cache")
    assert _local_files(target) == FILES
    assert len(download_count) == len(FILES)


@pytest.mark.integration
def test_stage_up_only_the_given_subpaths(s3_prefix, tmp_path):
    _write_tree(tmp_path, FILES)
    assert staging.stage_up(tmp_path, s3_prefix, ["metadata", "synthetic_truth.json", "missing"]) == 2
    assert _remote_keys(s3_prefix) == ["metadata/boxes.npy", "synthetic_truth.json"]


@pytest.mark.integration
def test_stage_down_subpaths_filter(s3_prefix, tmp_path):
    _write_tree(tmp_path / "src", FILES)
    staging.stage_up(tmp_path / "src", s3_prefix, ["scannet", "scannet_extra", "metadata", "synthetic_truth.json"])
    target = staging.stage_down(s3_prefix, cache_dir=tmp_path / "cache", subpaths=["scannet", "synthetic_truth.json"])
    # "scannet" selects the folder scannet/, not scannet_extra/
    expected = {rel: data for rel, data in FILES.items() if rel.startswith("scannet/") or rel == "synthetic_truth.json"}
    assert _local_files(target) == expected


@pytest.mark.integration
def test_present_files_of_the_same_size_are_not_fetched_again(s3_prefix, tmp_path, download_count):
    _write_tree(tmp_path / "src", FILES)
    staging.stage_up(tmp_path / "src", s3_prefix, ["scannet", "scannet_extra", "metadata", "synthetic_truth.json"])
    cache = tmp_path / "cache"
    target = staging.stage_down(s3_prefix, cache_dir=cache)
    assert len(download_count) == len(FILES)

    download_count.clear()
    assert staging.stage_down(s3_prefix, cache_dir=cache) == target
    assert download_count == []

    # a truncated local copy and a new remote file are fetched; nothing else
    (target / "metadata/boxes.npy").write_bytes(b"short")
    storage.write_bytes(storage.join(s3_prefix, "metadata/new.bin"), b"new object")
    staging.stage_down(s3_prefix, cache_dir=cache)
    assert sorted(download_count) == [
        storage.join(s3_prefix, "metadata/boxes.npy"),
        storage.join(s3_prefix, "metadata/new.bin"),
    ]
    assert _local_files(target) == {**FILES, "metadata/new.bin": b"new object"}
    assert not [p for p in target.rglob(".*")]  # atomic downloads leave no temporary files

    # an object rewritten with the same size (a new random checkpoint of the same shapes) is fetched again
    download_count.clear()
    storage.write_bytes(storage.join(s3_prefix, "metadata/new.bin"), b"NEW OBJECT")
    staging.stage_down(s3_prefix, cache_dir=cache)
    assert download_count == [storage.join(s3_prefix, "metadata/new.bin")]
    assert (target / "metadata/new.bin").read_bytes() == b"NEW OBJECT"
