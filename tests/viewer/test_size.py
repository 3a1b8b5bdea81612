"""The viewer's size at the paper's val sizes with default subsampling (vega3d/viewer/html.py docstring)."""

from __future__ import annotations

import pytest

from vega3d.viewer.html import DEFAULT_POINTS, PAPER_VAL_SCENES, POINT_BYTES, SIZE_BUDGET, estimate_size


def test_paper_val_sets_fit_the_budget_and_points_cost_what_the_formula_says():
    full = estimate_size(DEFAULT_POINTS)
    without_points = estimate_size(0)
    assert full <= SIZE_BUDGET
    # random quantised points do not compress: each costs 6 bytes x 4/3 (base64) per scene
    per_point = (full - without_points) / (PAPER_VAL_SCENES * DEFAULT_POINTS)
    assert per_point == pytest.approx(POINT_BYTES * 4 / 3, rel=0.01)
    # the budget's headroom: the largest default that would still fit
    assert (SIZE_BUDGET - without_points) / (PAPER_VAL_SCENES * POINT_BYTES * 4 / 3) > DEFAULT_POINTS


def test_estimate_scales_with_records():
    small = estimate_size(10, records={"scanqa": 100}, scenes=2)
    large = estimate_size(10, records={"scanqa": 2000}, scenes=2)
    assert small < large < small + 2000 * 300  # a ScanQA record is well under 300 B compressed
