"""Fixtures of the data tests (also used by other areas through ``tests.data.helpers``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.data.helpers import make_small_root
from tests.data.prepared import add_benchmarks, copy_root


@pytest.fixture(scope="session")
def small_synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small synthetic data root, built once per pytest session; treat it as read-only."""
    root = tmp_path_factory.mktemp("small_synthetic") / "data"
    make_small_root(root)
    return root


@pytest.fixture(scope="module")
def raw_root(small_synthetic_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the small root with the raw benchmark files, per test module (tests corrupt copies of it)."""
    root = copy_root(small_synthetic_root, tmp_path_factory.mktemp("raw") / "data")
    add_benchmarks(root)
    return root
