"""`vega3d.data.root`: one decision on "is this a data root", met with the same words from every entry point."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vega3d import storage
from vega3d.cli import app
from vega3d.data.check import check_data_root
from vega3d.data.root import EVAL_FOLDERS, FIX, data_root_problem
from vega3d.preflight import PreflightError, preflight

FIX_TEXT = ("pass --data-root (or --set data.root=DIR) naming a folder in the ScanNet layout of SPEC.md section 5 "
            "(`vega3d data synth --data-root DIR` writes a synthetic one)")
SMALL = ["--num-train", "1", "--num-val", "1", "--num-test", "1", "--frames", "4", "--width", "40", "--height", "30",
         "--min-objects", "2", "--max-objects", "3"]


def _missing(tmp_path: Path) -> Path:
    return tmp_path / "nope"


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "data.txt"
    path.write_text("not a folder")
    return path


def _lines(*args: str) -> tuple[int, list[str]]:
    result = CliRunner().invoke(app, list(args))
    return result.exit_code, result.output.splitlines()


def test_a_missing_root_and_a_file_as_root(tmp_path):
    missing, a_file = _missing(tmp_path), _a_file(tmp_path)
    assert (data_root_problem(missing).what, data_root_problem(missing).fix) == (
        f"data root {missing} does not exist", FIX_TEXT)
    assert (data_root_problem(a_file).what, data_root_problem(a_file).fix) == (f"data root {a_file} is not a folder",
                                                                               FIX_TEXT)


def test_a_file_uri_is_the_local_folder(tmp_path):
    (tmp_path / "scannet").mkdir()
    problem = data_root_problem(f"file://{tmp_path}")
    assert problem.what == f"data root {tmp_path} is not a VEGA-3D data root: no benchmark/ folder"
    (tmp_path / "benchmark").mkdir()
    assert data_root_problem(f"file://{tmp_path}") is None


def test_a_folder_is_a_data_root_only_with_the_expected_folders(tmp_path):
    (tmp_path / "scannet").mkdir()
    (tmp_path / "benchmark").write_text("a file, not the folder")
    problem = data_root_problem(tmp_path)
    assert problem.what == f"data root {tmp_path} is not a VEGA-3D data root: no benchmark/ folder"
    assert problem.fix == FIX
    (tmp_path / "benchmark").unlink()
    (tmp_path / "benchmark").mkdir()
    assert data_root_problem(tmp_path) is None
    unprepared = data_root_problem(tmp_path, EVAL_FOLDERS)  # a raw root: prep is the fix, not another root
    assert unprepared.what == f"data root {tmp_path} is not a VEGA-3D data root: no processed/ folder"
    assert unprepared.fix == f"run `vega3d data prep --data-root {tmp_path}` first (it writes processed/)"
    assert str(unprepared) == f"{unprepared.what}; {unprepared.fix}"


@pytest.mark.parametrize("make_root", [_missing, _a_file], ids=["missing", "file"])
def test_every_entry_point_says_the_same(tmp_path, make_root):
    """The CLI's guard (train), `data check` (command and library) and the preflight: one message, one fix."""
    root = make_root(tmp_path)
    expected = data_root_problem(root)
    assert expected is not None
    two_lines = [f"error: {expected.what}", f"  fix: {expected.fix}"]
    assert _lines("train", "--preset", "tiny", "--set", f"data.root={root}") == (2, two_lines)
    assert _lines("data", "check", "--data-root", str(root)) == (2, two_lines)  # nothing else printed
    assert _lines("data", "prep", "--data-root", str(root)) == (2, two_lines)
    kfp = tmp_path / "kfp"
    assert _lines("pipeline", "run", "--data-root", str(root), "--pipeline-root", str(kfp)) == (2, two_lines)
    assert not kfp.exists()  # refused before any step
    (problem,) = check_data_root(root)
    assert (problem.path, problem.problem, problem.fix) == (str(root), expected.what, expected.fix)
    with pytest.raises(PreflightError) as error:
        preflight([str(tmp_path / "out")], data_root=str(root))
    assert error.value.problems == [f"{expected.what}; {expected.fix}"]


def test_the_printed_fix_command_runs_and_makes_a_data_root(tmp_path):
    """The command in the fix works as printed (DIR filled in; small sizes only to keep the test fast)."""
    command = FIX.split("`")[1]
    assert command == "vega3d data synth --data-root DIR"
    root = tmp_path / "data"
    args = [str(root) if word == "DIR" else word for word in shlex.split(command)[1:]]
    code, lines = _lines(*args, *SMALL)
    assert code == 0, lines
    assert lines[-1] == f"wrote 3 synthetic scenes and the benchmark files under {root}"
    assert data_root_problem(root) is None


def test_the_data_commands_take_data_root_and_hide_the_old_spelling():
    for command in ("synth", "check", "prep"):
        code, lines = _lines("data", command, "--help")
        assert code == 0
        assert any("--data-root" in line for line in lines)
        assert not any("--root" in line.replace("--data-root", "") for line in lines)


def test_the_old_root_spelling_still_works(tmp_path):
    code, lines = _lines("data", "check", "--root", str(_missing(tmp_path)))
    assert (code, lines[0]) == (2, f"error: data root {_missing(tmp_path)} does not exist")


@pytest.mark.integration
def test_an_s3_root_is_listed_once_for_the_same_decision(s3_prefix):
    root = storage.join(s3_prefix, "data")
    assert data_root_problem(root).what == f"data root {root} does not exist (nothing under it)"
    storage.write_text(storage.join(root, "scannet", "a.txt"), "x")
    assert data_root_problem(root).what == f"data root {root} is not a VEGA-3D data root: no benchmark/ folder"
    storage.write_text(storage.join(root, "benchmark", "b.txt"), "x")
    assert data_root_problem(root) is None
