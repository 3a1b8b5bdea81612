"""`vega3d demo --keep` as a user runs it (stdout not a terminal): a short stdout, each step's log in a file,
the table and a live MLflow link at the end; then the MLflow pages in headless Chromium.

Screenshots are kept under tests/artifacts/screenshots/ (git-ignored) for people to look at.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from tests.data.helpers import SMALL_CONFIG
from tests.operators.browser import WINDOW, page_text, screenshot
from tests.operators.pipeline_output import statuses
from vega3d.testing.demo import prepare_demo_data

pytestmark = [pytest.mark.slow, pytest.mark.integration, pytest.mark.timeout(2400)]

SCREENSHOTS = Path(__file__).resolve().parents[1] / "artifacts" / "screenshots"
BENCHMARKS = ["scanrefer", "multi3drefer", "scan2cap", "scanqa", "sqa3d"]


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    prepare_demo_data(workdir / "data", "tiny", SMALL_CONFIG)  # a small data root: the demo reuses it
    env = {**os.environ, "VEGA3D_CACHE": str(workdir / "cache")}
    command = [sys.executable, "-m", "vega3d.cli", "demo", "--workdir", str(workdir), "--keep", "--max-steps", "4",
               "--max-samples", "4"]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=1800, cwd=workdir)
    try:
        yield workdir, result
    finally:
        subprocess.run([sys.executable, "-m", "vega3d.cli", "demo", "--stop", "--workdir", str(workdir)],
                       capture_output=True, timeout=120, env=env)


def _links(stdout: str) -> tuple[str, str]:
    found = re.search(r"^MLflow: (\S+)  \(this run: (\S+)\)$", stdout, flags=re.M)
    assert found, stdout
    return found.group(1), found.group(2)


def test_demo_stdout_is_short_and_ends_with_the_table_and_a_live_link(demo):
    workdir, result = demo
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert len(lines) < 150, len(lines)
    assert result.stderr.strip() == ""  # the demo's own log goes to logs/demo.log
    # one status line per executed step, each naming its full log
    found = statuses(result.stdout)
    assert [m.group(1) for m in found] == ["ok"] * len(found), result.stdout
    steps = [m.group(2) for m in found]
    assert {"setup-run", "prep", "train", "report", "finalize"} <= set(steps) and steps.count("evaluate") == 5
    assert sorted(m.group(3) for m in found if m.group(2) == "evaluate") == sorted(BENCHMARKS)
    logs = [Path(m.group(4)) for m in found]
    assert all(path.parent == workdir / "logs" and path.stat().st_size > 0 for path in logs)
    assert len(set(logs)) == len(logs)
    train_log = next(path for path, step in zip(logs, steps, strict=True) if step == "train").read_text()
    assert "train: 4/4 step (100%)" in train_log  # the training progress as status lines, no bar refreshes
    assert "\r" not in train_log
    # the end: the benchmark table, then the live MLflow links, then how to stop the services
    assert lines[-1] == f"services left running; stop them with `vega3d demo --stop --workdir {workdir}`"
    base, run_link = _links(result.stdout)
    assert lines[-2] == f"MLflow: {base}  (this run: {run_link})"
    table = [line for line in lines if line.startswith("| ours |")]
    assert len(table) == 1 and len(table[0].split("|")) == 12
    assert base.endswith("/#/?workflowType=machine_learning") and "workflowType=machine_learning" in run_link
    server = base.split("/#/")[0]
    with urllib.request.urlopen(server + "/health", timeout=10) as reply:
        assert reply.status == 200
    run_id = run_link.split("/runs/")[1].split("?")[0]
    with urllib.request.urlopen(f"{server}/api/2.0/mlflow/runs/get?run_id={run_id}", timeout=10) as reply:
        run = json.load(reply)["run"]
    assert run["info"]["status"] == "FINISHED"
    assert run["info"]["run_name"].startswith("tiny-wan_t2v-token_gated-")


def test_mlflow_pages_open_in_the_model_training_view(demo):
    _, result = demo
    base, run_link = _links(result.stdout)
    server = base.split("/#/")[0]
    run_page = page_text(run_link)
    run_name = re.search(r"^tiny-wan_t2v-token_gated-\w{6}$", run_page, flags=re.M)
    assert run_name, run_page[:2000]
    for text in ("Model training", "Overview", "Model metrics", "System metrics", "Registered models", "vega3d",
                 "Child runs", "eval-scanqa", "VEGA-3D pipeline run", "Logged models (1)", "Ready"):
        assert text in run_page.splitlines() or text in run_page, text
    assert "Judges" not in run_page.splitlines()  # the GenAI view's side bar is not shown
    version_link = f"{server}/#/models/vega3d/versions/1?workflowType=machine_learning"
    version_page = page_text(version_link)
    for text in ("Version 1", "Schema", "Inputs (4)", "Outputs (2)", "@ candidate", "@ champion",
                 "vega3d.checkpoint_uri", run_name.group(0)):
        assert text in version_page, text
    for name, link in (("mlflow-run", run_link), ("mlflow-model-version", version_link)):
        png = screenshot(link, SCREENSHOTS / f"{name}.png")
        image = Image.open(png)
        assert image.size == WINDOW
        assert len(image.convert("RGB").getcolors(maxcolors=1 << 20) or []) > 50  # a rendered page, not a blank
