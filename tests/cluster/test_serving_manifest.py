"""manifests/serving: the InferenceService of the champion model, validated offline.

kubernetes-validate has no schema for KServe's CRD, so the InferenceService is checked two ways: field by field
against the KServe SDK's generated models (``kserve.models.V1beta1*``, the CRD's OpenAPI types, with the
Kubernetes core types they embed), rejecting unknown fields and wrong scalar types; and its predictor pod spec
embedded in a core Pod that kubernetes-validate checks strictly (as test_manifests does for the Trainer runtime).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import typer
import yaml

from tests.cluster.test_manifests import K8S_VERSION, MANIFESTS, _render, _secret_examples, _tool
from vega3d.cli.serve import serve_command

SERVING = MANIFESTS / "serving"
SCALARS = {"str": (str,), "int": (int,), "bool": (bool,), "float": (int, float), "object": (object,)}


def schema_errors(value, type_name: str, path: str = "") -> list[str]:
    """Where ``value`` breaks the SDK model ``type_name`` (unknown field, wrong type), recursively."""
    import kserve.models
    import kubernetes.client.models

    if type_name in SCALARS:
        ok = isinstance(value, SCALARS[type_name]) and not (type_name == "int" and isinstance(value, bool))
        return [] if ok else [f"{path}: expected {type_name}, got {type(value).__name__}"]
    if match := re.fullmatch(r"list\[(.+)\]", type_name):
        if not isinstance(value, list):
            return [f"{path}: expected a list"]
        return [e for i, item in enumerate(value) for e in schema_errors(item, match[1], f"{path}[{i}]")]
    if match := re.fullmatch(r"dict\(str, (.+)\)", type_name):
        if not isinstance(value, dict):
            return [f"{path}: expected a mapping"]
        return [e for k, item in value.items() for e in schema_errors(item, match[1], f"{path}.{k}")]
    model = getattr(kserve.models, type_name, None) or getattr(kubernetes.client.models, type_name)
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({type_name})"]
    by_json = {json_name: attr for attr, json_name in model.attribute_map.items()}
    errors = []
    for key, item in value.items():
        if key not in by_json:
            errors.append(f"{path}.{key}: unknown field of {type_name}")
        else:
            errors += schema_errors(item, model.openapi_types[by_json[key]], f"{path}.{key}")
    return errors


@pytest.fixture(scope="module")
def docs() -> dict[str, dict]:
    return {d["kind"]: d for d in yaml.safe_load_all(_render("serving")) if d}


@pytest.fixture(scope="module")
def rendered_gpu_pool() -> list[dict]:
    return [d for d in yaml.safe_load_all(_render("overlays/gpu-pool")) if d]


def _validate(text: str) -> subprocess.CompletedProcess:
    return subprocess.run([_tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, "-"], input=text,
                          capture_output=True, text=True, check=False)


def test_renders_the_inference_service_and_the_scenes_claim(docs):
    assert set(docs) == {"InferenceService", "PersistentVolumeClaim"}  # the URI ConfigMap is local-config only
    assert {d["metadata"]["namespace"] for d in docs.values()} == {"vega3d"}
    result = _validate(_render("serving"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "passed for resource" in result.stdout and "Couldn't find schema for kind InferenceService" in result.stdout


def test_inference_service_matches_the_kserve_schema(docs):
    isvc = docs["InferenceService"]
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
    assert schema_errors(isvc, "V1beta1InferenceService") == []
    broken = yaml.safe_load(yaml.safe_dump(isvc))
    broken["spec"]["predictor"]["batcher"]["maxBatchSize"] = "eight"
    broken["spec"]["predictor"]["containers"][0]["colour"] = "blue"
    assert schema_errors(broken, "V1beta1InferenceService") == [
        ".spec.predictor.batcher.maxBatchSize: expected int, got str",
        ".spec.predictor.containers[0].colour: unknown field of V1Container",
    ]


def test_predictor_pod_validates_strictly_as_a_core_pod(docs):
    predictor = docs["InferenceService"]["spec"]["predictor"]
    pod_fields = {k: v for k, v in predictor.items()
                  if k in ("containers", "nodeSelector", "tolerations", "securityContext", "volumes")}
    pod = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "vega3d-predictor"}, "spec": pod_fields}
    result = _validate(yaml.safe_dump(pod))
    assert result.returncode == 0, result.stdout + result.stderr


def test_placement_is_the_training_gpu_pool(docs, rendered_gpu_pool):
    predictor = docs["InferenceService"]["spec"]["predictor"]
    runtime = next(d for d in rendered_gpu_pool if d["kind"] == "TrainingRuntime")
    node = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert predictor["nodeSelector"] == node["nodeSelector"]
    assert predictor["tolerations"] == node["tolerations"]
    (container,) = predictor["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert container["name"] == "kserve-container"


def test_secrets_are_referenced_and_their_keys_exist(docs):
    (container,) = docs["InferenceService"]["spec"]["predictor"]["containers"]
    examples = _secret_examples()
    refs = [e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e]
    assert {r["name"] for r in refs} == {"vega3d-s3", "vega3d-mlflow"}
    assert all(r["key"] in examples[r["name"]] for r in refs)
    literal = {e["name"]: e.get("value", "") for e in container["env"] if "value" in e}
    assert not {k for k in literal if re.search(r"KEY|PASSWORD|SECRET|TOKEN", k)}


def test_storage_uri_comes_from_model_properties(tmp_path):
    target = tmp_path / "serving"
    shutil.copytree(SERVING, target)
    uri = "s3://vega3d/runs/abc123/train/final"
    (target / "model.properties").write_text(f"MODEL_URI={uri}\n")
    result = subprocess.run([_tool("kubectl"), "kustomize", str(target)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    isvc = next(d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "InferenceService")
    (container,) = isvc["spec"]["predictor"]["containers"]
    assert {e["name"]: e.get("value") for e in container["env"]}["MODEL_URI"] == uri
    assert "--checkpoint=$(MODEL_URI)" in container["args"]


def test_server_arguments_are_accepted_by_vega3d_serve(docs):
    (container,) = docs["InferenceService"]["spec"]["predictor"]["containers"]
    assert container["command"] == ["vega3d", "serve"]
    app = typer.Typer()
    app.command()(serve_command)
    command = typer.main.get_command(app)
    context = command.make_context("serve", list(container["args"]), resilient_parsing=True)
    assert context.params["host"] == "0.0.0.0" and context.params["port"] == 8080
    assert context.params["scene_root"] == Path("/scenes")
    ports = [p["containerPort"] for p in container["ports"]]
    assert ports == [context.params["port"]] == [container["readinessProbe"]["httpGet"]["port"]]
