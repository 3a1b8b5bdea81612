"""The restricted pickle loader: plain containers and numpy load, everything else is refused unexecuted."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest

from vega3d.data import safe_pickle
from vega3d.data.errors import DataFileError


class _RunsShell:
    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


class _Plain:
    pass


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_plain_containers_and_numpy_load(tmp_path, protocol):
    payload = {
        "metainfo": {"dataset": "scannet", "version": 1.5, "ok": True, "none": None},
        "data_list": [{"sample_idx": "scannet/scene0000_00", "ids": (1, 2, 3), "tags": {"a", "b"},
                       "matrix": np.arange(16, dtype=np.float64).reshape(4, 4),
                       "mask": np.array([True, False]), "half": np.arange(3, dtype=np.float16)}],
        "scalars": [np.float32(2.5), np.int64(-7), np.dtype("uint16")],
        "raw": b"\x00\x01",
    }
    path = tmp_path / "infos.pkl"
    path.write_bytes(pickle.dumps(payload, protocol=protocol))
    loaded = safe_pickle.load(path)
    entry = loaded["data_list"][0]
    assert loaded["metainfo"] == payload["metainfo"] and loaded["raw"] == b"\x00\x01"
    assert entry["ids"] == (1, 2, 3) and entry["tags"] == {"a", "b"}
    np.testing.assert_array_equal(entry["matrix"], payload["data_list"][0]["matrix"])
    assert entry["matrix"].dtype == np.float64 and entry["half"].dtype == np.float16
    assert loaded["scalars"][0] == np.float32(2.5) and type(loaded["scalars"][0]) is np.float32
    assert loaded["scalars"][1] == -7 and loaded["scalars"][2] == np.dtype("uint16")


def test_malicious_pickle_is_refused_and_not_run(tmp_path):
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"data_list": [_RunsShell(f"touch {marker}")]}))
    with pytest.raises(safe_pickle.UnsafePickleError) as error:
        safe_pickle.load(path)
    message = str(error.value)
    assert str(path) in message and "system" in message and "refused" in message
    assert not marker.exists()  # the command never ran
    # The same bytes through plain pickle WOULD run it: the test payload is real.
    pickle.loads(path.read_bytes())
    assert marker.exists()


@pytest.mark.parametrize("obj", [_Plain(), eval, np.load])
def test_other_globals_are_refused(tmp_path, obj):
    path = tmp_path / "x.pkl"
    path.write_bytes(pickle.dumps(obj))
    with pytest.raises(safe_pickle.UnsafePickleError, match="refused to load global"):
        safe_pickle.load(path)


def test_garbage_names_the_file(tmp_path):
    path = tmp_path / "broken.pkl"
    path.write_bytes(b"not a pickle at all")
    with pytest.raises(DataFileError) as error:
        safe_pickle.load(path)
    assert error.value.path == str(path)
