"""The viewer file: what it embeds for a known evaluation output, the worst-first order, the caps, errors."""

from __future__ import annotations

import numpy as np
import pytest

from tests.viewer.helpers import embedded_block, embedded_data
from vega3d.evaluation.tasks import TASKS, ScoreSettings
from vega3d.viewer.html import POINT_BYTES, plotly_js, subsample_points, write_viewer

SETTINGS = ScoreSettings(meteor=False)


def test_viewer_embeds_every_record_worst_first(viewer_root, eval_output, tmp_path):
    out, counts, _ = eval_output
    summary = write_viewer(viewer_root, str(out), str(tmp_path / "v.html"), TASKS, SETTINGS, max_points=500)
    html = (tmp_path / "v.html").read_text()
    data = embedded_data(html)
    assert summary.records == counts
    assert len(data["items"]) == sum(counts.values())
    assert embedded_block(html, "plotly-gz") == plotly_js()  # the library itself, no CDN link
    assert "https://" not in html.split('<script type="text/plain"')[0]
    refer = [it for it in data["items"] if it["task"] == "scanrefer"]
    # the oracle (even records) hits with IoU 1, the moved boxes (odd records) miss: misses come first
    assert [it["ok"] for it in refer] == [False] * (counts["scanrefer"] // 2) + [True] * ((counts["scanrefer"] + 1) // 2)
    assert refer[0]["score"] == 0.0 and refer[-1]["score"] == pytest.approx(1.0, abs=1e-3)
    assert all(len(it["gt"]) == 1 and len(it["pred"]) == 1 for it in refer)
    assert {it["type"] for it in refer} <= {"unique", "multiple"}
    scanqa = [it for it in data["items"] if it["task"] == "scanqa"]
    assert any(it["gt"] for it in scanqa) and all(not it["pred"] for it in scanqa)  # the objects asked about
    qa = [it for it in data["items"] if it["task"] == "sqa3d"]
    assert sum(not it["ok"] for it in qa) == counts["sqa3d"] // 2 and all(it["p"] == "qqqq" for it in qa[:5])
    assert not any(it["q"].startswith("<image>") or "Identify the object" in it["q"] for it in data["items"])
    # every item's scene has points; the points block holds exactly the scenes' counts
    points = embedded_block(html, "points-gz")
    assert len(points) == POINT_BYTES * sum(s["count"] for s in data["scenes"])
    assert all(0 < s["count"] <= 500 for s in data["scenes"]) and summary.scenes == len(data["scenes"])


def test_max_records_keeps_the_worst_of_each_task(viewer_root, eval_output, tmp_path):
    out, _, _ = eval_output
    write_viewer(viewer_root, str(out), str(tmp_path / "v.html"), ["scanrefer", "sqa3d"], SETTINGS, max_records=3)
    items = embedded_data((tmp_path / "v.html").read_text())["items"]
    assert [it["task"] for it in items] == ["scanrefer"] * 3 + ["sqa3d"] * 3
    assert not any(it["ok"] for it in items)


def test_quantised_points_decode_within_half_a_step():
    rng = np.random.default_rng(1)
    xyz = rng.uniform([-2, -3, 0], [4, 5, 3], size=(5000, 3))
    rgb = rng.integers(0, 256, size=(5000, 3), dtype=np.uint8)
    block, decode = subsample_points(xyz, rgb, 5000)
    back = np.asarray(decode["min"]) + block[:, :3] * np.asarray(decode["scale"])
    assert np.abs(back - xyz).max() <= np.max(decode["scale"]) / 2 + 1e-3
    assert (block[:, 3:] == rgb).all()
    assert len(subsample_points(xyz, rgb, 100)[0]) == 100


def test_missing_outputs_name_the_folder(viewer_root, tmp_path):
    with pytest.raises(FileNotFoundError, match="predictions.jsonl"):
        write_viewer(viewer_root, str(tmp_path), str(tmp_path / "v.html"), TASKS, SETTINGS)


def test_view_command_writes_the_file_and_reports_counts(viewer_root, eval_output, tmp_path):
    from typer.testing import CliRunner

    from vega3d.cli import app

    out, counts, _ = eval_output
    target = tmp_path / "viewer.html"
    result = CliRunner().invoke(app, ["view", "--data-root", str(viewer_root), "--eval", str(out), "--output",
                                      str(target), "--max-records", "4", "--points", "300"])
    assert result.exit_code == 0, result.output
    data = embedded_data(target.read_text())
    assert len(data["items"]) == sum(min(4, n) for n in counts.values())
    assert max(s["count"] for s in data["scenes"]) == 300
    assert f"viewer: {target}" in result.output and "scanrefer 4" in result.output
    missing = CliRunner().invoke(app, ["view", "--data-root", str(viewer_root), "--eval", str(tmp_path / "none")])
    assert missing.exit_code == 2 and "predictions.jsonl" in missing.output


def test_eval_all_writes_the_viewer_beside_the_report(viewer_root, eval_output, tmp_path):
    from typer.testing import CliRunner

    from vega3d.cli import app

    out, counts, _ = eval_output
    scored = tmp_path / "scored"
    result = CliRunner().invoke(app, ["eval", "all", "--data-root", str(viewer_root), "--predictions", str(out),
                                      "--output", str(scored), "--no-meteor"])
    assert result.exit_code == 0, result.output
    assert f"viewer: {scored / 'viewer.html'}" in result.output
    items = embedded_data((scored / "viewer.html").read_text())["items"]
    assert len(items) == sum(counts.values())  # every scored record, as `vega3d view` shows them


def test_view_refuses_a_wrong_data_root_and_an_empty_eval_folder_in_one_error_each(tmp_path, monkeypatch, caplog):
    from typer.testing import CliRunner

    from vega3d.cli import app

    monkeypatch.chdir(tmp_path)
    wrong = CliRunner().invoke(app, ["view", "--data-root", str(tmp_path / "nope")])
    assert wrong.exit_code == 2
    assert wrong.stderr.splitlines()[0] == f"error: data root {tmp_path / 'nope'} does not exist"
    for top in ("scannet", "processed"):
        (tmp_path / "root" / top).mkdir(parents=True)
    empty = CliRunner().invoke(app, ["view", "--data-root", str(tmp_path / "root"), "--eval", "evals"])
    assert empty.exit_code == 2
    lines = empty.stderr.splitlines()
    assert len(lines) == 2 and lines[0].startswith(f"error: Invalid value: {tmp_path / 'evals'}: no <task>/predictions")
    assert [r for r in caplog.records if r.name == "vega3d.viewer.html"] == []  # no warning per task: nothing at all
