"""One line in vega3d.params is the whole cost of a new setting: it appears in the compiled pipeline (with its
description), in setup_run's inputs and in ``vega3d train --help``, and setup applies it to the config."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
NEW_LINE = '    Setting("seed", "train.seed", int, "Random seed of training.", TRAIN),\n'



@pytest.fixture(scope="module")
def patched_copy(tmp_path_factory):
    """A copy of the package, components and pipelines with one setting added to vega3d/params.py."""
    root = tmp_path_factory.mktemp("copy")
    for folder in ("vega3d", "components", "pipelines"):
        shutil.copytree(REPO / folder, root / folder, ignore=shutil.ignore_patterns("__pycache__"))
    params = root / "vega3d" / "params.py"
    text = params.read_text()
    anchor = "SETTINGS: tuple[Setting, ...] = (\n"
    assert anchor in text
    params.write_text(text.replace(anchor, anchor + NEW_LINE))
    return root


def _python(root: Path, code: str, *args: str) -> str:
    result = subprocess.run([sys.executable, "-c", code, *args], cwd=root, capture_output=True, text=True,
                            env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(root), "HOME": str(root),
                                 "MLFLOW_DISABLE_TELEMETRY": "true", "COLUMNS": "200"}, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


CLI = "import sys; from vega3d.cli import app; app(sys.argv[1:], prog_name='vega3d')"


def test_new_setting_reaches_the_compiled_pipeline_and_setup_inputs(patched_copy, tmp_path):
    out = tmp_path / "p.yaml"
    _python(patched_copy, CLI, "pipeline", "compile", "-o", str(out))
    spec = next(yaml.safe_load_all(out.read_text()))
    seed = spec["root"]["inputDefinitions"]["parameters"]["seed"]
    assert seed["parameterType"] == "NUMBER_INTEGER" and seed["isOptional"] is True
    assert seed["description"] == "Random seed of training. Default: the preset's (train.seed)."
    tasks = spec["components"]["comp-exit-handler-1"]["dag"]["tasks"]
    settings = tasks["setup-run"]["inputs"]["parameters"]["settings"]["runtimeValue"]["constant"]
    assert "seed" in settings and "fusion" in settings


def test_new_setting_is_applied_by_setup_run(patched_copy, tmp_path):
    code = (
        "import sys, yaml; from components.setup_run import setup_run\n"
        "class Out: path = sys.argv[1]\n"
        "class Plan: path = sys.argv[1] + '.plan.md'\n"
        "config, parent = setup_run.python_func(preset='tiny', settings={'seed': '7', 'fusion': None}, overrides=[],"
        " storage_root=sys.argv[2], data_uri=sys.argv[2] + '/data', mlflow_uri='', experiment='x', run_name='',"
        " job_id='j', config_file=Out(), memory_plan=Plan())\n"
        "print(yaml.safe_load(config)['train']['seed'], repr(parent))"
    )
    assert _python(patched_copy, code, str(tmp_path / "config.yaml"), str(tmp_path)).split() == ["7", "''"]


def test_new_setting_is_a_train_option(patched_copy):
    help_text = _python(patched_copy, CLI, "train", "--help")
    line = next(line for line in help_text.splitlines() if "--seed" in line)
    assert re.search(r"--seed\s+<int>\s+Random seed of training\. Default: the preset's", line), line
