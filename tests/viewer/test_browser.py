"""The viewer in a real headless Chromium (Debian's ``chromium``), loaded from file:// with the network off."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from vega3d.evaluation.tasks import TASKS, ScoreSettings
from vega3d.testing.browser import HeadlessChromium, chromium_path
from vega3d.viewer.html import write_viewer

pytestmark = pytest.mark.skipif(chromium_path() is None,
                                reason="chromium is not installed (`apt-get install chromium`, or `make browser`)")
GT_GREEN = np.array([0, 180, 0])  # GT_COLOR of the template


def test_viewer_loads_offline_draws_the_scene_and_lists_every_record(viewer_root, eval_output, tmp_path):
    out, counts, _ = eval_output
    path = tmp_path / "viewer.html"
    write_viewer(viewer_root, str(out), str(path), TASKS, ScoreSettings(meteor=False))
    with HeadlessChromium() as browser:
        browser.open(path.as_uri(), "window.viewerReady || window.viewerError", timeout=120)
        assert browser.evaluate("window.viewerError || null") is None
        rows = browser.evaluate("document.querySelectorAll('#records tbody tr').length")
        label = browser.evaluate("document.getElementById('count').textContent")
        # the filters: only ScanRefer's incorrect records (its odd records are the moved boxes)
        filtered = browser.evaluate(
            "(() => { document.getElementById('f-task').value = 'scanrefer';"
            " document.getElementById('f-ok').value = '0';"
            " document.getElementById('f-ok').dispatchEvent(new Event('input'));"
            " return document.querySelectorAll('#records tbody tr').length; })()")
        canvases = browser.evaluate("document.querySelectorAll('#plot canvas').length")
        png = browser.screenshot("#plot")
        assert browser.console_errors == []
        assert browser.remote_requests == []
    total = sum(counts.values())
    assert rows == total and label == f"{total} of {total} records"
    assert filtered == counts["scanrefer"] // 2
    assert canvases >= 1
    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    background = (image == 255).all(axis=-1)
    assert (~background).sum() > 2000  # the coloured points
    assert (np.abs(image - GT_GREEN).sum(axis=-1) < 40).sum() > 50  # the ground-truth box's edges
