"""GitHub workflows: triggers, the commands they run (which must exist with those options), shell syntax."""

from __future__ import annotations

import re
import shlex
import subprocess
from pathlib import Path

import pytest
import typer
import yaml

from vega3d.cli.submit import submit_command

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / ".github" / "workflows"


def _load(name: str) -> dict:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    doc["on"] = doc.pop(True, doc.get("on"))  # YAML 1.1 reads the bare key `on` as True
    return doc


def _steps(doc: dict, job: str) -> list[dict]:
    return doc["jobs"][job]["steps"]


def _script(doc: dict, job: str) -> str:
    return "\n".join(step.get("run", "") for step in _steps(doc, job))


def _option_names(command) -> set[str]:
    app = typer.Typer()
    app.command()(command)
    click_command = typer.main.get_command(app)
    return {opt for param in click_command.params for opt in param.opts}


def _used_options(script: str, program: str) -> set[str]:
    """Long options passed to `<program>` in a shell script (continuation lines joined)."""
    joined = re.sub(r"\\\n\s*", " ", script)
    used = set()
    for line in joined.splitlines():
        if program in line:
            used |= set(re.findall(r"(?<![\w-])(--[a-z][a-z-]*)", line.split(program, 1)[1]))
    return used


def test_ci_runs_lint_and_the_test_entry_point_on_push_and_pr():
    doc = _load("ci.yml")
    assert set(doc["on"]) == {"push", "pull_request"}
    assert doc["on"]["push"]["branches"] == ["main"]
    assert "ruff check vega3d components pipelines tests benchmarks" in _script(doc, "lint")
    script = _script(doc, "test")
    assert script.strip() == ".ci/run"
    assert (ROOT / ".ci" / "run").stat().st_mode & 0o111, ".ci/run must be executable"
    uses = [step.get("uses", "") for step in _steps(doc, "test")]
    assert "actions/setup-java@v4" in uses and any(u.startswith("azure/setup-kubectl") for u in uses)
    assert doc["permissions"] == {"contents": "read"}


def test_ci_lint_installs_the_ruff_of_the_dev_extra():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+, as in the lint job
    script = _script(_load("ci.yml"), "lint")
    spec_line = next(line for line in script.splitlines() if line.startswith("spec=$("))
    result = subprocess.run(["bash", "-c", f"{spec_line}; echo \"$spec\""], cwd=ROOT, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    dev = [d for d in extras["dev"] if d.startswith("ruff")]
    assert result.stdout.strip() == dev[0]
    assert 'python -m pip install "$spec"' in script


def test_retrain_triggers_schedule_config_and_data_changes_and_by_hand():
    doc = _load("retrain.yml")
    assert set(doc["on"]) == {"schedule", "push", "workflow_dispatch"}
    assert doc["on"]["schedule"] == [{"cron": "0 3 * * 1"}]
    paths = doc["on"]["push"]["paths"]
    assert paths == ["vega3d/presets/**", "data-manifest.yaml"]
    assert (ROOT / "vega3d" / "presets").is_dir() and (ROOT / "data-manifest.yaml").is_file()
    assert set(doc["on"]["workflow_dispatch"]["inputs"]) == {"preset", "num_gpus", "params"}
    assert doc["concurrency"] == {"group": "retrain", "cancel-in-progress": False}


def test_retrain_compiles_submits_waits_and_reports_the_gate():
    doc = _load("retrain.yml")
    env = doc["jobs"]["retrain"]["env"]
    assert env["KFP_HOST"] == "${{ secrets.KFP_HOST }}" and env["KFP_TOKEN"] == "${{ secrets.KFP_TOKEN }}"
    assert env["MLFLOW_TRACKING_PASSWORD"] == "${{ secrets.MLFLOW_TRACKING_PASSWORD }}"
    names = [step.get("name") for step in _steps(doc, "retrain")]
    assert names.index("compile") < names.index("submit and wait") < names.index("report the gate")
    script = _script(doc, "retrain")
    assert "vega3d pipeline compile --output build/vega3d-pipeline.yaml" in script
    assert "vega3d pipeline submit build/vega3d-pipeline.yaml" in script
    assert {"--wait", "--gate-json", "--experiment", "--run-name"} <= _used_options(script, "vega3d pipeline submit")
    report = next(s for s in _steps(doc, "retrain") if s.get("name") == "report the gate")
    assert report["if"] == "always()" and "GITHUB_STEP_SUMMARY" in report["run"] and 'gate["promoted"]' in report["run"]


def test_retrain_uses_only_options_the_commands_accept():
    script = _script(_load("retrain.yml"), "retrain")
    assert _used_options(script, "vega3d pipeline submit") <= _option_names(submit_command)
    pipeline_commands = pytest.importorskip("vega3d.cli.pipeline")
    compile_command = typer.main.get_command(pipeline_commands.app).commands["compile"]
    accepted = {opt for param in compile_command.params for opt in param.opts}
    assert _used_options(script, "vega3d pipeline compile") <= accepted


def test_retrain_passes_parameters_the_pipeline_declares():
    script = re.sub(r"\\\n\s*", " ", _script(_load("retrain.yml"), "retrain"))
    submit_line = next(line for line in script.splitlines() if "vega3d pipeline submit" in line)
    words = shlex.split(submit_line)
    params = {word.split("=", 1)[0] for flag, word in zip(words, words[1:], strict=False) if flag == "--param"}
    assert params == {"preset", "num_gpus", "data_uri", "mlflow_uri", "experiment", "run_eval"}
    pipeline_module = pytest.importorskip("pipelines.vega3d_pipeline")
    declared = set(pipeline_module.build_pipeline().component_spec.inputs)
    assert params <= declared, params - declared


@pytest.mark.parametrize("name", ["ci.yml", "retrain.yml"])
def test_run_scripts_are_valid_bash(name, tmp_path):
    doc = _load(name)
    for job in doc["jobs"]:
        for index, step in enumerate(_steps(doc, job)):
            if "run" not in step:
                continue
            script = re.sub(r"\$\{\{[^}]*\}\}", "placeholder", step["run"])
            path = tmp_path / f"{job}-{index}.sh"
            path.write_text(script)
            result = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True, check=False)
            assert result.returncode == 0, f"{name} {job} step {index}: {result.stderr}"


def test_data_manifest_names_a_version_and_a_uri():
    manifest = yaml.safe_load((ROOT / "data-manifest.yaml").read_text())
    assert set(manifest) == {"version", "data_uri"}
    assert manifest["data_uri"].startswith("s3://") and manifest["version"] in manifest["data_uri"]
