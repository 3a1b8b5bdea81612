"""Kustomize manifests: every overlay renders and validates strictly; custom resources are checked by
embedding their pod templates in core objects; secrets are referenced, never committed."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from vega3d.train import trainjob as tj

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
TARGETS = ["base", "overlays/self-hosted", "overlays/external-s3", "overlays/gpu-pool"]
K8S_VERSION = "1.37.0"
CUSTOM_KINDS = {("trainer.kubeflow.org/v1alpha1", "TrainingRuntime")}
SECRET_NAMES = {"vega3d-s3", "vega3d-mlflow", "vega3d-postgres"}


def _tool(name: str) -> str:
    candidate = Path(sys.executable).with_name(name)
    found = str(candidate) if candidate.exists() else shutil.which(name)
    if not found:
        pytest.fail(f"{name} not found (kubectl with kustomize, kubernetes-validate from the dev extra)")
    return found


def _render(target: str | Path) -> str:
    result = subprocess.run([_tool("kubectl"), "kustomize", str(MANIFESTS / target)], capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture(scope="module")
def rendered() -> dict[str, list[dict]]:
    return {target: [d for d in yaml.safe_load_all(_render(target)) if d] for target in TARGETS}


def _env_entries(docs: list[dict]):
    """Every env entry of every container (workloads, CR pod templates) with the document it came from."""

    def walk(node, doc):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "env" and isinstance(value, list):
                    for entry in value:
                        yield doc, entry
                else:
                    yield from walk(value, doc)
        elif isinstance(node, list):
            for item in node:
                yield from walk(item, doc)

    for doc in docs:
        yield from walk(doc, doc)


def _secret_examples() -> dict[str, dict[str, str]]:
    """secretGenerator name -> {key: value} from the committed *.env.example files."""
    kustomization = yaml.safe_load((MANIFESTS / "secrets" / "kustomization.yaml").read_text())
    out = {}
    for generator in kustomization["secretGenerator"]:
        values = {}
        for env_file in generator["envs"]:
            for line in (MANIFESTS / "secrets" / f"{env_file}.example").read_text().splitlines():
                if line.strip() and not line.startswith("#"):
                    key, _, value = line.partition("=")
                    values[key] = value
        out[generator["name"]] = values
    return out


# ------------------------------------------------------------------------------ render + strict validate


@pytest.mark.parametrize("target", TARGETS)
def test_overlay_renders_and_validates_strictly(target):
    text = _render(target)
    docs = [d for d in yaml.safe_load_all(text) if d]
    result = subprocess.run([_tool("kubernetes-validate"), "--strict", "-k", K8S_VERSION, "-"], input=text,
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    core = [d for d in docs if (d["apiVersion"], d["kind"]) not in CUSTOM_KINDS]
    passed = [line for line in lines if line.startswith("INFO") and " passed for resource " in line]
    warned = [line for line in lines if line.startswith("WARN")]
    assert len(passed) == len(core) > 0
    assert len(warned) == len(docs) - len(core)
    assert all("Couldn't find schema for kind TrainingRuntime" in line for line in warned)


def test_strict_validation_catches_an_unknown_field():
    bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  colour: blue\n"
    result = subprocess.run([_tool("kubernetes-validate"), "--strict", "-"], input=bad, capture_output=True,
                            text=True, check=False)
    assert result.returncode != 0 and "colour" in result.stdout


def test_overlays_hold_the_expected_objects(rendered):
    def kinds(target):
        return {(d["kind"], d["metadata"]["name"]) for d in rendered[target]}

    base = {
        ("Namespace", "vega3d"), ("ConfigMap", "vega3d-client-settings"), ("ConfigMap", "vega3d-mlflow-settings"),
        ("Deployment", "vega3d-mlflow"), ("Service", "vega3d-mlflow"), ("ServiceAccount", "vega3d-launcher"),
        ("Role", "vega3d-trainjob-launcher"), ("RoleBinding", "vega3d-trainjob-launcher"),
        ("TrainingRuntime", tj.DEFAULT_RUNTIME), ("NetworkPolicy", "vega3d-default-deny-ingress"),
        ("NetworkPolicy", "vega3d-allow-same-namespace"), ("NetworkPolicy", "vega3d-allow-pipeline-clients"),
    }
    self_hosted = {("StatefulSet", "vega3d-postgres"), ("Service", "vega3d-postgres"),
                   ("ConfigMap", "vega3d-postgres-init"), ("StatefulSet", "vega3d-seaweedfs"),
                   ("Service", "vega3d-seaweedfs")}
    assert kinds("base") == base
    assert kinds("overlays/self-hosted") == base | self_hosted
    assert kinds("overlays/gpu-pool") == base | self_hosted
    assert kinds("overlays/external-s3") == base
    for target in TARGETS:
        assert {d["metadata"].get("namespace") for d in rendered[target] if d["kind"] != "Namespace"} == {"vega3d"}


def test_external_s3_overlay_points_at_managed_services(rendered):
    docs = {d["metadata"]["name"]: d for d in rendered["overlays/external-s3"] if d["kind"] == "ConfigMap"}
    assert docs["vega3d-client-settings"]["data"]["AWS_ENDPOINT_URL"] == "https://s3.eu-west-1.amazonaws.com"
    assert docs["vega3d-mlflow-settings"]["data"]["MLFLOW_DB_HOST"] == "mlflow-db.example.internal"
    base = {d["metadata"]["name"]: d for d in rendered["base"] if d["kind"] == "ConfigMap"}
    assert base["vega3d-client-settings"]["data"]["AWS_ENDPOINT_URL"] == "http://vega3d-seaweedfs:8333"


def test_mlflow_server_uses_postgres_s3_proxy_and_basic_auth(rendered):
    (deployment,) = [d for d in rendered["overlays/self-hosted"] if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    script = container["args"][0]
    assert "--app-name basic-auth" in script
    assert '--backend-store-uri "postgresql://${MLFLOW_DB_USER}@${MLFLOW_DB_HOST}' in script
    assert '--artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION}"' in script
    env = {e["name"]: e for e in container["env"]}
    assert env["PGPASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "vega3d-postgres"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"] == "vega3d-mlflow"
    assert deployment["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


# --------------------------------------------------------------------------------------------- secrets


def test_no_secret_is_committed_or_rendered(rendered):
    for target, docs in rendered.items():
        assert not [d for d in docs if d["kind"] == "Secret"], target
    for path in MANIFESTS.rglob("*"):
        if path.is_file() and path.suffix in (".yaml", ".yml"):
            for doc in yaml.safe_load_all(path.read_text()):
                assert not (doc and doc.get("kind") == "Secret"), path
    assert not list((MANIFESTS / "secrets").glob("*.env")), "real secret env files must not be in the tree"
    ignored = subprocess.run(["git", "check-ignore", "-q", "manifests/secrets/s3.env"], cwd=ROOT, check=False)
    assert ignored.returncode == 0, "manifests/secrets/*.env must be git-ignored"


def test_secret_examples_define_names_and_keys_without_values():
    examples = _secret_examples()
    assert set(examples) == SECRET_NAMES
    for name, values in examples.items():
        assert values and all(value == "" for value in values.values()), name


def test_sensitive_env_comes_from_secret_references(rendered):
    examples = _secret_examples()
    manifest = tj.build_trainjob(tj.TrainJobRequest(name="check", namespace="vega3d", image="img", train_args=[]))
    sources = [doc for docs in rendered.values() for doc in docs] + [manifest]
    referenced = set()
    for doc, entry in _env_entries(sources):
        if any(word in entry["name"] for word in ("PASSWORD", "SECRET", "KEY_ID", "TOKEN")):
            assert "value" not in entry, (doc["metadata"]["name"], entry)
        ref = entry.get("valueFrom", {}).get("secretKeyRef")
        if ref:
            referenced.add((ref["name"], ref["key"]))
    assert referenced == {(name, key) for name, keys in examples.items() for key in keys}


def test_pipeline_steps_and_training_nodes_read_the_same_secrets():
    placement_module = pytest.importorskip("pipelines.placement")
    placement = placement_module.Placement()
    examples = _secret_examples()
    assert (placement.s3_secret, placement.s3_secret_keys) == (tj.S3_SECRET, tj.S3_SECRET_KEYS)
    assert (placement.mlflow_secret, placement.mlflow_secret_keys) == (tj.MLFLOW_SECRET, tj.MLFLOW_SECRET_KEYS)
    assert set(tj.S3_SECRET_KEYS) == set(examples[tj.S3_SECRET])
    assert set(tj.MLFLOW_SECRET_KEYS) <= set(examples[tj.MLFLOW_SECRET])


def test_secret_kustomization_generates_the_referenced_secrets(tmp_path):
    folder = tmp_path / "secrets"
    shutil.copytree(MANIFESTS / "secrets", folder)
    for example in folder.glob("*.env.example"):
        lines = [line + "x" if "=" in line and not line.startswith("#") else line
                 for line in example.read_text().splitlines()]
        (folder / example.name.removesuffix(".example")).write_text("\n".join(lines) + "\n")
    result = subprocess.run([_tool("kubectl"), "kustomize", str(folder)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    secrets = {d["metadata"]["name"]: d for d in yaml.safe_load_all(result.stdout)}
    assert set(secrets) == SECRET_NAMES
    assert set(secrets["vega3d-s3"]["data"]) == {"access-key", "secret-key", "endpoint"}


# ------------------------------------------------------------------------------------ RBAC of the launcher


def _allowed(role: dict, group: str, resource: str, verb: str) -> bool:
    return any(group in rule["apiGroups"] and resource in rule["resources"] and verb in rule["verbs"]
               for rule in role["rules"])


def test_launcher_role_allows_exactly_what_run_trainjob_calls(rendered):
    docs = rendered["base"]
    (role,) = [d for d in docs if d["kind"] == "Role"]
    for verb in ("create", "get", "list", "watch", "delete"):
        assert _allowed(role, "trainer.kubeflow.org", "trainjobs", verb)
    assert not _allowed(role, "trainer.kubeflow.org", "trainjobs", "update")
    assert _allowed(role, "", "pods", "list") and _allowed(role, "", "pods/log", "get")
    assert not _allowed(role, "", "secrets", "get")
    (binding,) = [d for d in docs if d["kind"] == "RoleBinding"]
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    subjects = {(s["name"], s.get("namespace")) for s in binding["subjects"]}
    assert subjects == {("vega3d-launcher", "vega3d"), ("pipeline-runner", "kubeflow")}


# -------------------------------------------------------------- custom resources: structural validation


def _validate_core(obj: dict) -> None:
    kubernetes_validate.validate(obj, K8S_VERSION, strict=True)


def _runtime(docs: list[dict]) -> dict:
    (runtime,) = [d for d in docs if d["kind"] == "TrainingRuntime"]
    return runtime


@pytest.mark.parametrize("target", TARGETS)
def test_training_runtime_structure(rendered, target):
    runtime = _runtime(rendered[target])
    assert runtime["apiVersion"] == tj.API_VERSION and runtime["metadata"]["name"] == tj.DEFAULT_RUNTIME
    spec = runtime["spec"]
    assert set(spec) <= {"mlPolicy", "podGroupPolicy", "template"}
    assert spec["mlPolicy"] == {"numNodes": 1, "torch": {}}
    (job,) = spec["template"]["spec"]["replicatedJobs"]
    assert set(job) <= {"name", "replicas", "template", "dependsOn", "groupName"}
    assert job["name"] == tj.NODE_JOB
    assert job["template"]["metadata"]["labels"]["trainer.kubeflow.org/trainjob-ancestor-step"] == "trainer"
    # The replicated job's template is a batch/v1 JobTemplateSpec: validate it as a Job against the schema.
    _validate_core({"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "node"},
                    "spec": job["template"]["spec"]})
    pod = job["template"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["name"] == tj.NODE_CONTAINER and container["command"][:4] == tj.train_command([])
    assert {"name": "dshm", "mountPath": "/dev/shm"} in container["volumeMounts"]
    assert pod["securityContext"]["runAsNonRoot"] is True


def test_only_the_gpu_pool_overlay_places_and_sizes_training(rendered):
    pod = _runtime(rendered["overlays/gpu-pool"])["spec"]["template"]["spec"]["replicatedJobs"][0]
    pod = pod["template"]["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "8"
    plain = _runtime(rendered["overlays/self-hosted"])["spec"]["template"]["spec"]["replicatedJobs"][0]
    plain = plain["template"]["spec"]["template"]["spec"]
    assert "nodeSelector" not in plain and "tolerations" not in plain and "resources" not in plain["containers"][0]


def test_generated_trainjob_validates_structurally():
    request = tj.TrainJobRequest(
        name="vega3d-train-abc", namespace="vega3d", image="ghcr.io/vega3d/vega3d-cuda:0.1.0",
        train_args=["--preset", "wan_t2v"], num_nodes=2, env={"MLFLOW_TRACKING_URI": "http://vega3d-mlflow:5000"},
        placement=tj.NodeResources(node_selector={"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
                               tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]),
        deadline_s=3600, owner={"apiVersion": "v1", "kind": "Pod", "name": "launcher", "uid": "u-1"},
    )
    manifest = tj.build_trainjob(request)
    assert set(manifest["spec"]) <= {"runtimeRef", "initializer", "trainer", "runtimePatches", "suspend",
                                     "activeDeadlineSeconds", "managedBy"}
    trainer = manifest["spec"]["trainer"]
    assert set(trainer) <= {"image", "command", "args", "env", "numNodes", "resourcesPerNode", "numProcPerNode"}
    # metadata (with the owner reference) is core ObjectMeta: validate it on a ConfigMap.
    _validate_core({"apiVersion": "v1", "kind": "ConfigMap", "metadata": manifest["metadata"]})
    # The trainer's image/command/env/resources become the node container: validate them in a Pod.
    container = {"name": tj.NODE_CONTAINER, "image": trainer["image"], "command": trainer["command"],
                 "env": trainer["env"], "resources": trainer["resourcesPerNode"]}
    _validate_core({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node"},
                    "spec": {"containers": [container]}})
    # The runtime patch's pod spec (selector, tolerations, shm volume and mount) is a partial PodSpec.
    patch_pod = manifest["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]["template"]["spec"]
    patch_pod = patch_pod["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    _validate_core({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node"}, "spec": patch_pod})
    with pytest.raises(kubernetes_validate.ValidationError):
        _validate_core({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node"},
                        "spec": {**patch_pod, "nodeSelectors": {"a": "b"}}})


# ------------------------------------------------------------------------------ pod security, NetworkPolicy


def _pod_specs(docs: list[dict]):
    """(name, pod spec) of every workload the manifests create (Deployments, StatefulSets, the runtime)."""
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            yield doc["metadata"]["name"], doc["spec"]["template"]["spec"]
        elif doc["kind"] == "TrainingRuntime":
            for job in doc["spec"]["template"]["spec"]["replicatedJobs"]:
                yield job["name"], job["template"]["spec"]["template"]["spec"]


@pytest.mark.parametrize("target", TARGETS)
def test_every_container_drops_privileges(rendered, target):
    seen = []
    for name, pod in _pod_specs(rendered[target]):
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
        for container in pod["containers"] + pod.get("initContainers", []):
            security = container.get("securityContext", {})
            assert security.get("allowPrivilegeEscalation") is False, (name, container["name"])
            assert security.get("capabilities", {}).get("drop") == ["ALL"], (name, container["name"])
            seen.append(container["name"])
    assert tj.NODE_CONTAINER in seen and "mlflow" in " ".join(seen)


def test_generated_trainjob_container_drops_privileges():
    request = tj.TrainJobRequest(name="vega3d-train-x", namespace="vega3d", image="img:1", train_args=[],
                                 num_nodes=2)
    patch = tj.build_trainjob(request)["spec"]["runtimePatches"][0]["trainingRuntimeSpec"]
    pod = patch["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["securityContext"] == {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}
    _validate_core({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "node"}, "spec": pod})


def _selects(selector: dict, labels: dict) -> bool:
    match = all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())
    for expression in selector.get("matchExpressions", []):
        assert expression["operator"] == "In"
        match = match and labels.get(expression["key"]) in expression["values"]
    return match


@pytest.mark.parametrize("target", TARGETS)
def test_network_policies_deny_ingress_except_namespace_and_pipeline_clients(rendered, target):
    docs = rendered[target]
    policies = {d["metadata"]["name"]: d["spec"] for d in docs if d["kind"] == "NetworkPolicy"}
    deny = policies["vega3d-default-deny-ingress"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress"]}  # every pod, no rule: nothing gets in
    assert policies["vega3d-allow-same-namespace"]["ingress"] == [{"from": [{"podSelector": {}}]}]
    clients = policies["vega3d-allow-pipeline-clients"]
    (rule,) = clients["ingress"]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"vega3d.io/client": "true"}}}]
    allowed_ports = {p["port"] for p in rule["ports"]}
    # every workload reachable from pipeline namespaces is the MLflow server or SeaweedFS, on its serving port only
    reachable = {}
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet"):
            labels = doc["spec"]["template"]["metadata"]["labels"]
            if _selects(clients["podSelector"], labels):
                ports = {p["containerPort"] for c in doc["spec"]["template"]["spec"]["containers"]
                         for p in c.get("ports", [])}
                reachable[labels["app.kubernetes.io/name"]] = ports & allowed_ports
    expected = {"mlflow": {5000}} if target in ("base", "overlays/external-s3") else {"mlflow": {5000},
                                                                                     "seaweedfs": {8333}}
    assert reachable == expected
