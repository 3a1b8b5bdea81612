"""docs/cluster.md stays true: the paths, secrets and command options it names exist."""

from __future__ import annotations

import re
from pathlib import Path

import typer

from vega3d.cli.submit import submit_command
from vega3d.train import trainjob as tj

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "cluster.md").read_text()


def test_paths_named_in_the_doc_exist():
    paths = set(re.findall(r"`((?:manifests|images|vega3d|\.github)/[\w./-]+?)`", DOC))
    paths |= set(re.findall(r"kubectl apply -k (manifests/[\w/-]+)", DOC))
    assert {"manifests/overlays/self-hosted", "images/Dockerfile.cuda", "vega3d/train/trainjob.py"} <= paths
    missing = sorted(p for p in paths if not (ROOT / p.rstrip("/")).exists())
    assert not missing, missing


def test_secret_table_matches_the_secret_generator():
    rows = dict(re.findall(r"^\| `(vega3d-[a-z0-9]+)` \| ([^|]+) \|", DOC, flags=re.MULTILINE))
    assert set(rows) == {"vega3d-s3", "vega3d-mlflow", "vega3d-postgres"}
    for name, keys in rows.items():
        example = (ROOT / "manifests" / "secrets" / f"{name.removeprefix('vega3d-')}.env.example").read_text()
        documented = set(re.findall(r"`([a-z-]+)`", keys))
        defined = {line.split("=", 1)[0] for line in example.splitlines() if "=" in line and line[0] != "#"}
        assert documented == defined, name
    assert set(tj.S3_SECRET_KEYS) <= set(re.findall(r"`([a-z-]+)`", rows[tj.S3_SECRET]))


def test_submit_options_in_the_doc_are_accepted():
    app = typer.Typer()
    app.command()(submit_command)
    accepted = {opt for param in typer.main.get_command(app).params for opt in param.opts}
    block = DOC[DOC.index("vega3d pipeline submit build/"):]
    block = block[: block.index("```")]
    used = set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*|-p)\b", block))
    assert used and used <= accepted, used - accepted


def test_batch_table_keeps_the_global_batch_at_128():
    rows = re.findall(r"^\| (\d+) x (\d+)(?: \(paper\))? \| (\d+) \| (\d+) \| (\d+) \|$", DOC, flags=re.MULTILINE)
    assert len(rows) == 5
    for nodes, gpus, per_device, accumulation, total in rows:
        assert int(nodes) * int(gpus) * int(per_device) * int(accumulation) == int(total) == 128
