"""A prepared synthetic data root for tests: small scenes + raw benchmark files + `run_prep` outputs."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from vega3d.config import load_config
from vega3d.data.prep import PrepReport, run_prep
from vega3d.testing.synthetic import load_truth
from vega3d.testing.synthetic_benchmarks import write_benchmarks


def add_benchmarks(root: Path, seed: int = 0) -> None:
    """Write the raw benchmark files of a synthesised root from its truth."""
    write_benchmarks(root, load_truth(root), seed)


def copy_root(source: Path, target: Path) -> Path:
    """Copy a data root (tests corrupt copies, never the session fixture)."""
    shutil.copytree(source, target)
    return target


def prepare(root: Path) -> PrepReport:
    """run_prep with the tiny preset's data settings, no progress bar."""
    return run_prep(root, load_config("tiny").data, progress=False)


def file_digests(folder: Path) -> dict[str, str]:
    """Relative path -> sha256 of every file under ``folder`` (hidden temporary files included)."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}
