"""The benchmark scripts that must run in the suite: the reproduction cost model and the one-shot GPU check."""

import importlib.util
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str):
    """Import benchmarks/<name>.py as a module."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[f"benchmarks_{name}"] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


def parse_report(report: str) -> tuple[dict[str, float], dict[str, float], dict[str, tuple[float, float]]]:
    """(assumptions, flops, stage -> (released, ours)) from the printed report."""
    assumptions, flops, rows, section = {}, {}, {}, None
    for line in report.splitlines():
        if line.startswith("Assumptions"):
            section = assumptions
        elif line.startswith("FLOPs"):
            section = flops
        elif line.startswith("stage"):
            section = rows
        elif section is not rows and line.startswith("  "):
            name, value = line.split("#")[0].strip().split(" = ")
            section[name] = float(value)
        elif section is rows and not line.startswith("released /"):
            stage, released, ours = line[:28].strip(), *map(float, line[28:57].split())
            rows[stage] = (released, ours)
    return assumptions, flops, rows


def test_cost_model_rows_follow_from_the_printed_flops_and_assumptions(capsys):
    report = load_script("cost_model").main(["--set", "peak_tflops=989", "--set", "online_recompute=0.5"])
    assert capsys.readouterr().out.strip() == report.strip()
    a, f, rows = parse_report(report)
    assert a["peak_tflops"] == 989 and a["online_recompute"] == 0.5 and a["frames"] == 32
    assert f["encoder_early"] < f["encoder_full"] and f["head_answer"] < f["head_full"]
    # by hand: the released training features and our extraction
    seconds_per_frame_full = f["encoder_full"] / (989e12 * a["mfu_infer"])
    assert rows["train: generative features"][0] == pytest.approx(
        0.5 * 223_128 * 32 * seconds_per_frame_full / 3600, rel=1e-3)
    ours_frame = (f["vae"] + 0.70 * (f["encoder_full"] - f["vae"])) / (989e12 * a["mfu_infer"])
    assert rows["extract features"] == (0.0, pytest.approx(1_613 * 32 * ours_frame / 3600, abs=0.05))
    released = sum(r[0] for r in rows.values() if r is not rows["total"])
    ours = sum(r[1] for r in rows.values() if r is not rows["total"])
    assert rows["total"] == (pytest.approx(released, abs=0.1), pytest.approx(ours, abs=0.1))
    assert f"released / ours = {rows['total'][0] / rows['total'][1]:.2f}x" in report


def test_bench_gpu_runs_on_cpu_at_tiny_size_and_prints_every_row(capsys):
    rows = load_script("bench_gpu").main(["--device", "cpu", "--size", "tiny", "--steps", "1"])
    out = capsys.readouterr().out
    names = ["train tokens/s", "train MFU", "train peak memory", "decode batch 1 tokens/s", "decode batch 8 tokens/s",
             "decode batch 8 / batch 1", "extract early exit frames/s", "extract full DiT frames/s",
             "extract early / full time"]
    assert [r.name for r in rows] == names
    for row in rows:
        assert f"| {row.name} | " in out
        if row.name == "train MFU":
            assert row.value is None and "| train MFU | n/a |" in out  # no known bf16 peak for a CPU
        else:
            assert row.value > 0, row
    by_name = {r.name: r.value for r in rows}
    assert by_name["decode batch 8 / batch 1"] == pytest.approx(
        by_name["decode batch 8 tokens/s"] / by_name["decode batch 1 tokens/s"])
    assert by_name["extract early / full time"] == pytest.approx(
        by_name["extract full DiT frames/s"] / by_name["extract early exit frames/s"])
    assert "191 tokens, 8 frames, float32 + ckpt" in out  # 8 x 4 x 5 visual + 32 text - the <image> token
