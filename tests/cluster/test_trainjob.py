"""The TrainJob object and the launcher's status handling, against Trainer API-shaped objects (no cluster)."""

from __future__ import annotations

import copy
import json
from types import SimpleNamespace

import pytest
import yaml
from kubernetes.client import ApiException

from vega3d.train import trainjob as tj

GPU_POOL = {"cloud.google.com/gke-accelerator": "nvidia-h100-80gb"}
GPU_TAINT = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}


def _request(**changes) -> tj.TrainJobRequest:
    fields = dict(
        name="vega3d-train-0123456789",
        namespace="vega3d",
        image="ghcr.io/vega3d/vega3d-cuda:0.1.0",
        train_args=["--preset", "wan_t2v", "--set", "train.zero_stage=3"],
        num_nodes=2,
        placement=tj.NodeResources(
            accelerators_per_node=4, cpu="48", memory="480Gi", shm_size="32Gi",
            node_selector=GPU_POOL, tolerations=[GPU_TAINT],
        ),
        env={"MLFLOW_TRACKING_URI": "http://vega3d-mlflow.vega3d:5000"},
        deadline_s=7200,
    )
    fields.update(changes)
    return tj.TrainJobRequest(**fields)


def _node_pod_spec(manifest: dict) -> dict:
    (patch,) = manifest["spec"]["runtimePatches"]
    (job,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert job["name"] == "node"
    return job["template"]["spec"]["template"]["spec"]


# ---------------------------------------------------------------------------------------------- manifest


def test_step_request_forwards_settings_but_never_credential_values():
    environ = {
        "MLFLOW_TRACKING_URI": "http://vega3d-mlflow.vega3d:5000", "VEGA3D_PIPELINE_RUN_ID": "kfp-run-1",
        "AWS_ACCESS_KEY_ID": "AKIAEXAMPLE", "AWS_SECRET_ACCESS_KEY": "s3cr3t-value",
        "MLFLOW_TRACKING_PASSWORD": "pw-value", "KFP_POD_NAME": "train-launcher-7", "KFP_POD_UID": "uid-7",
        "NCCL_DEBUG": "",
    }
    request = tj.request_from_step(
        image="ghcr.io/vega3d/vega3d-cuda:0.1.0", train_args=["--preset", "wan_t2v"], num_nodes=4, num_gpus=8,
        accelerator_type="nvidia.com/gpu", node_selector=GPU_POOL, tolerations=[GPU_TAINT], run_id="kfp-run-1",
        timeout_s=86400, environ=environ,
    )
    manifest = tj.build_trainjob(request)
    text = tj.manifest_yaml(manifest)
    assert "s3cr3t-value" not in text and "pw-value" not in text and "AKIAEXAMPLE" not in text
    env = {e["name"]: e for e in manifest["spec"]["trainer"]["env"]}
    assert env["MLFLOW_TRACKING_URI"]["value"] == "http://vega3d-mlflow.vega3d:5000"
    assert env["VEGA3D_PIPELINE_RUN_ID"]["value"] == "kfp-run-1" and "NCCL_DEBUG" not in env
    assert env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "vega3d-s3"
    assert manifest["metadata"]["name"] == tj.trainjob_name("vega3d-train", "kfp-run-1")
    assert manifest["metadata"]["labels"][tj.RUN_LABEL] == "kfp-run-1"
    assert manifest["metadata"]["ownerReferences"][0]["uid"] == "uid-7"
    trainer = manifest["spec"]["trainer"]
    assert trainer["numNodes"] == 4 and trainer["numProcPerNode"] == 8
    assert trainer["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    assert manifest["spec"]["activeDeadlineSeconds"] == 86400
    assert _node_pod_spec(manifest)["nodeSelector"] == GPU_POOL




def test_manifest_carries_nodes_resources_command_and_runtime():
    manifest = tj.build_trainjob(_request())
    assert manifest["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and manifest["kind"] == "TrainJob"
    assert manifest["metadata"] == {
        "name": "vega3d-train-0123456789", "namespace": "vega3d",
        "labels": {"app.kubernetes.io/part-of": "vega3d", "app.kubernetes.io/component": "train"},
    }
    spec = manifest["spec"]
    assert spec["runtimeRef"] == {
        "name": "vega3d-torch-deepspeed", "apiGroup": "trainer.kubeflow.org", "kind": "TrainingRuntime"
    }
    assert spec["activeDeadlineSeconds"] == 7200
    trainer = spec["trainer"]
    assert trainer["numNodes"] == 2 and trainer["numProcPerNode"] == 4
    assert trainer["image"] == "ghcr.io/vega3d/vega3d-cuda:0.1.0"
    assert trainer["command"] == [
        "torchrun", "--module", "vega3d.cli", "train", "--preset", "wan_t2v", "--set", "train.zero_stage=3"
    ]
    assert trainer["resourcesPerNode"] == {
        "requests": {"cpu": "48", "memory": "480Gi", "nvidia.com/gpu": "4"},
        "limits": {"memory": "480Gi", "nvidia.com/gpu": "4"},
    }


def test_manifest_places_pods_on_the_gpu_pool_with_shm():
    pod = _node_pod_spec(tj.build_trainjob(_request()))
    assert pod["nodeSelector"] == GPU_POOL
    assert pod["tolerations"] == [GPU_TAINT]
    assert pod["volumes"] == [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "32Gi"}}]
    assert pod["containers"] == [{"name": "node", "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}],
                                  "securityContext": tj.CONTAINER_SECURITY}]
    manifest = tj.build_trainjob(_request())
    assert manifest["spec"]["runtimePatches"][0]["manager"] == "vega3d.io/trainjob-launcher"


def test_manifest_env_has_values_and_secret_references_only():
    env = tj.build_trainjob(_request())["spec"]["trainer"]["env"]
    by_name = {e["name"]: e for e in env}
    assert by_name["MLFLOW_TRACKING_URI"] == {"name": "MLFLOW_TRACKING_URI", "value": "http://vega3d-mlflow.vega3d:5000"}
    assert by_name["AWS_SECRET_ACCESS_KEY"] == {
        "name": "AWS_SECRET_ACCESS_KEY",
        "valueFrom": {"secretKeyRef": {"name": "vega3d-s3", "key": "secret-key", "optional": True}},
    }
    assert by_name["MLFLOW_TRACKING_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
        "name": "vega3d-mlflow", "key": "password", "optional": True
    }
    assert sorted(by_name) == sorted([
        "MLFLOW_TRACKING_URI", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL",
        "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD",
    ])


def test_cpu_only_request_has_no_accelerator_and_no_placement():
    manifest = tj.build_trainjob(_request(placement=tj.NodeResources(accelerators_per_node=0, cpu="4", memory="8Gi")))
    trainer = manifest["spec"]["trainer"]
    assert "numProcPerNode" not in trainer
    assert trainer["resourcesPerNode"] == {"requests": {"cpu": "4", "memory": "8Gi"}, "limits": {"memory": "8Gi"}}
    pod = _node_pod_spec(manifest)
    assert "nodeSelector" not in pod and "tolerations" not in pod


def test_owner_reference_comes_from_the_kfp_pod_env():
    owner = tj.owner_from_env({"KFP_POD_NAME": "train-launcher-abc", "KFP_POD_UID": "1234-uid"})
    assert owner == {"apiVersion": "v1", "kind": "Pod", "name": "train-launcher-abc", "uid": "1234-uid"}
    assert tj.owner_from_env({"KFP_POD_NAME": "x"}) is None
    manifest = tj.build_trainjob(_request(owner=owner))
    assert manifest["metadata"]["ownerReferences"] == [owner]


def test_manifest_yaml_round_trips():
    manifest = tj.build_trainjob(_request())
    assert yaml.safe_load(tj.manifest_yaml(manifest)) == manifest


def test_trainjob_name_is_a_short_dns_label_unique_per_run():
    a = tj.trainjob_name("VEGA3D_Train", "run-1")
    b = tj.trainjob_name("VEGA3D_Train", "run-2")
    assert a.startswith("vega3d-train-") and a != b and len(a) == len("vega3d-train-") + 10
    long = tj.trainjob_name("9" + "x" * 80, "run")
    assert len(long) <= 40 and long[0].isalpha()
    tj.build_trainjob(_request(name=long))  # valid


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"name": "Vega_Train"}, "RFC 1035"),
        ({"name": "a" * 41}, "at most 40"),
        ({"num_nodes": 0}, "num_nodes"),
        ({"image": ""}, "image"),
        ({"env": {"AWS_ACCESS_KEY_ID": "literal"}}, "set twice"),
        ({"placement": tj.NodeResources(tolerations=[{"effect": "NoSchedule"}])}, "toleration"),
    ],
)
def test_bad_requests_are_rejected_with_the_field(changes, message):
    with pytest.raises(ValueError, match=message):
        tj.build_trainjob(_request(**changes))


# ------------------------------------------------------------------------------------- status handling


def _condition(kind: str, status: str, reason: str, message: str) -> dict:
    return {"type": kind, "status": status, "reason": reason, "message": message,
            "lastTransitionTime": "2026-11-24T08:00:00Z"}


CREATED = {"status": {"jobsStatus": [{"name": "node", "ready": 0, "succeeded": 0, "failed": 0, "active": 1,
                                      "suspended": 0}]}}
RUNNING = {"status": {"conditions": [_condition("Suspended", "False", "Resumed", "TrainJob is resumed")],
                      "jobsStatus": [{"name": "node", "ready": 1, "succeeded": 0, "failed": 0, "active": 1,
                                      "suspended": 0}]}}
COMPLETE = {"status": {"conditions": [
    _condition("Suspended", "False", "Resumed", "TrainJob is resumed"),
    _condition("Complete", "True", "AllJobsCompleted", "jobset completed successfully"),
]}}
FAILED = {"status": {"conditions": [
    _condition("Failed", "True", "FailedJobs", "jobset failed due to one or more job failures"),
]}}
DEADLINE = {"status": {"conditions": [
    _condition("Failed", "True", "DeadlineExceeded", "TrainJob exceeded its activeDeadlineSeconds"),
]}}
SUSPENDED = {"status": {"conditions": [_condition("Suspended", "True", "Suspended", "TrainJob is suspended")]}}


class FakeCustomObjects:
    """CustomObjectsApi stand-in: serves a scripted sequence of TrainJob states (or exceptions) to get().

    ``create_errors`` are raised by successive create calls (None: that call succeeds); with ``gone`` the job
    no longer exists and delete answers 404 like the API server.
    """

    def __init__(self, states, create_errors=(), gone=False):
        self.states = list(states)
        self.create_errors = list(create_errors)
        self.gone = gone
        self.created: list[tuple] = []
        self.deleted: list[tuple] = []
        self.gets = 0

    def create_namespaced_custom_object(self, group, version, namespace, plural, body):
        error = self.create_errors.pop(0) if self.create_errors else None
        if error is not None:
            raise error
        self.created.append((group, version, namespace, plural, copy.deepcopy(body)))
        return body

    def get_namespaced_custom_object(self, group, version, namespace, plural, name):
        assert (group, version, plural) == ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
        state = self.states[min(self.gets, len(self.states) - 1)]
        self.gets += 1
        if isinstance(state, BaseException):
            raise state
        return {"apiVersion": "trainer.kubeflow.org/v1alpha1", "kind": "TrainJob",
                "metadata": {"name": name, "namespace": namespace}, **copy.deepcopy(state)}

    def delete_namespaced_custom_object(self, group, version, namespace, plural, name, body=None):
        self.deleted.append((group, version, namespace, plural, name, body))
        if self.gone:
            raise ApiException(status=404, reason="Not Found")


def _pod(name: str, phase: str, created: int) -> SimpleNamespace:
    return SimpleNamespace(metadata=SimpleNamespace(name=name, creation_timestamp=created),
                           status=SimpleNamespace(phase=phase))


# Increasing fractions of a second as kubelet prints them (trailing zeros trimmed): 0.1 < 0.12 < 0.2 ...,
# although "...05.1Z" sorts after "...05.12Z" as plain text.
FRACTIONS = ["1", "12", "2", "25", "3", "35", "4", "45", "5", "55"]


class FakeCore:
    """CoreV1Api stand-in: the node-0 pod's log grows by one scripted chunk per read; lines carry kubelet
    timestamps, and every read returns the whole log (as if ``since_seconds`` covered it all), so the
    follower must drop the lines it already forwarded."""

    def __init__(self, chunks, pods=None):
        self.chunks = list(chunks)
        self.reads: list[dict] = []
        self.pods = pods or [_pod("vega3d-train-0123456789-node-0-0-abcde", "Running", 1)]
        self.selectors: list[str] = []

    def list_namespaced_pod(self, namespace, label_selector):
        self.selectors.append(label_selector)
        return SimpleNamespace(items=self.pods)

    def read_namespaced_pod_log(self, name, namespace, container, timestamps, since_seconds):
        assert container == "node" and timestamps is True
        self.reads.append({"pod": name, "since_seconds": since_seconds})
        lines = "".join(self.chunks[: len(self.reads)]).splitlines()
        # Kubelet trims trailing zeros of the fraction: second 5 + i/10 renders as "...:05.1Z", "...:05.2Z", ...
        return "".join(f"2026-11-24T08:00:{5 + i // 10:02d}.{FRACTIONS[i % 10]}Z {line}\n"
                       for i, line in enumerate(lines))


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _run(api, core=None, timeout_s=3600.0, poll_s=60.0, request=None, **kwargs):
    clock = FakeClock()
    lines: list[str] = []
    manifest = tj.build_trainjob(request or _request())
    outcome = tj.run_trainjob(api, manifest, timeout_s, poll_s, lines.append, core_api=core,
                              clock=clock, sleep=clock.sleep, **kwargs)
    return outcome, lines, clock


def test_complete_is_success_and_the_job_is_deleted(tmp_path):
    api = FakeCustomObjects([CREATED, RUNNING, RUNNING, COMPLETE])
    core = FakeCore(["step 1 loss 2.0\n", "step 2 loss 1.5\n", "", "step 3 loss 1.1\ndone\n"])
    path = tmp_path / "trainjob.yaml"
    outcome, lines, clock = _run(api, core, manifest_path=str(path))
    assert outcome.name == "vega3d-train-0123456789"
    assert outcome.condition["reason"] == "AllJobsCompleted"
    assert lines == ["step 1 loss 2.0", "step 2 loss 1.5", "step 3 loss 1.1", "done"]
    assert outcome.log_lines == 4
    assert api.gets == 4 and clock.now == 180.0  # three waits of poll_s before the fourth read
    # The first read takes the whole log, later ones the window since the previous read plus a margin.
    assert [r["since_seconds"] for r in core.reads] == [None, 70, 70, 70]
    (created,) = api.created
    assert created[:4] == ("trainer.kubeflow.org", "v1alpha1", "vega3d", "trainjobs")
    assert created[4]["spec"]["trainer"]["numNodes"] == 2
    assert api.deleted == [("trainer.kubeflow.org", "v1alpha1", "vega3d", "trainjobs", "vega3d-train-0123456789",
                            {"propagationPolicy": "Foreground"})]
    assert yaml.safe_load(path.read_text()) == created[4]
    assert core.selectors[0] == (
        "jobset.sigs.k8s.io/jobset-name=vega3d-train-0123456789,jobset.sigs.k8s.io/replicatedjob-name=node,"
        "batch.kubernetes.io/job-completion-index=0"
    )


@pytest.mark.parametrize(
    "state, reason", [(FAILED, "FailedJobs"), (DEADLINE, "DeadlineExceeded")]
)
def test_failed_condition_fails_with_reason_and_message(state, reason):
    api = FakeCustomObjects([CREATED, RUNNING, state])
    with pytest.raises(tj.TrainJobFailed, match=f"reason={reason}: ") as info:
        _run(api)
    assert state["status"]["conditions"][0]["message"] in str(info.value)
    assert len(api.deleted) == 1


def test_failed_wins_over_complete():
    both = {"status": {"conditions": COMPLETE["status"]["conditions"] + FAILED["status"]["conditions"]}}
    with pytest.raises(tj.TrainJobFailed):
        _run(FakeCustomObjects([both]))


def test_complete_condition_with_status_false_is_not_success():
    not_yet = {"status": {"conditions": [_condition("Complete", "False", "Pending", "not yet")]}}
    api = FakeCustomObjects([not_yet, not_yet, COMPLETE])
    outcome, _, _ = _run(api)
    assert api.gets == 3 and outcome.condition["status"] == "True"


def test_timeout_raises_after_the_budget_and_deletes():
    api = FakeCustomObjects([RUNNING])
    with pytest.raises(tj.TrainJobTimeout, match="within 300 s"):
        _run(api, timeout_s=300.0, poll_s=60.0)
    assert api.gets == 6  # reads at t = 0, 60, ..., 300, then gives up
    assert len(api.deleted) == 1


def test_suspended_job_counts_against_the_timeout():
    api = FakeCustomObjects([SUSPENDED])
    with pytest.raises(tj.TrainJobTimeout):
        _run(api, timeout_s=120.0, poll_s=60.0)


def test_deleted_while_waiting_is_a_failure():
    api = FakeCustomObjects([CREATED, RUNNING, ApiException(status=404, reason="Not Found")],
                            gone=True)
    with pytest.raises(tj.TrainJobDeleted, match="deleted while running"):
        _run(api)
    assert len(api.deleted) == 1  # the delete on exit tolerates the missing object


def test_transient_server_errors_are_retried():
    api = FakeCustomObjects([ApiException(status=503, reason="Unavailable"), RUNNING, COMPLETE])
    outcome, _, _ = _run(api)
    assert outcome.condition["type"] == "Complete" and api.gets == 3


def test_forbidden_is_raised_at_once():
    api = FakeCustomObjects([ApiException(status=403, reason="Forbidden")])
    with pytest.raises(ApiException):
        _run(api)
    assert api.gets == 1 and len(api.deleted) == 1


def _labelled(state: dict, run: str) -> dict:
    return {"metadata": {"labels": {tj.RUN_LABEL: run}}, **state}


CONFLICT = ApiException(status=409, reason="AlreadyExists")


def test_name_collision_with_another_run_leaves_that_job_alone():
    for existing in (COMPLETE, _labelled(RUNNING, "other-run")):
        api = FakeCustomObjects([existing], create_errors=[CONFLICT])
        with pytest.raises(tj.TrainJobError, match="belongs to another run"):
            _run(api, request=_request(run_id="run-7"))
        assert api.deleted == [] and api.created == []


def test_retry_adopts_the_running_job_of_an_earlier_attempt():
    api = FakeCustomObjects([_labelled(RUNNING, "run-7"), RUNNING, COMPLETE], create_errors=[CONFLICT])
    outcome, _, _ = _run(api, request=_request(run_id="run-7"))
    assert outcome.condition["type"] == "Complete"
    assert api.created == [] and len(api.deleted) == 1


def test_retry_replaces_the_failed_job_of_an_earlier_attempt():
    gone = ApiException(status=404, reason="Not Found")
    api = FakeCustomObjects([_labelled(FAILED, "run-7"), FAILED, gone, RUNNING, COMPLETE],
                            create_errors=[CONFLICT, None])
    outcome, _, clock = _run(api, request=_request(run_id="run-7"))
    assert outcome.condition["type"] == "Complete"
    assert len(api.created) == 1 and api.created[0][4]["metadata"]["labels"][tj.RUN_LABEL] == "run-7"
    assert len(api.deleted) == 2  # the failed job, then ours on exit
    assert clock.now == 120.0  # one wait for the old job to go, one while ours ran


def test_run_label_is_a_valid_label_value():
    manifest = tj.build_trainjob(_request(run_id="9f1c/attempt 2"))
    assert manifest["metadata"]["labels"][tj.RUN_LABEL] == "9f1c-attempt-2"
    long = tj.build_trainjob(_request(run_id="x" * 80))["metadata"]["labels"][tj.RUN_LABEL]
    assert len(long) <= 63 and long.startswith("x") and long[-10:].isalnum()


def test_interruption_still_deletes_the_job():
    api = FakeCustomObjects([KeyboardInterrupt()])
    with pytest.raises(KeyboardInterrupt):
        _run(api)
    assert len(api.deleted) == 1


def test_logs_ignore_pending_pods():
    api = FakeCustomObjects([RUNNING, RUNNING, COMPLETE])
    core = FakeCore(["a\n", "b\n", "c\n"], pods=[_pod("p-pending", "Pending", 5)])
    _, lines, _ = _run(api, core)
    assert lines == [] and core.reads == []


def test_logs_follow_the_newest_pod_and_order_trimmed_timestamps():
    clock = FakeClock()
    lines: list[str] = []
    core = FakeCore([f"line {i}\n" for i in range(12)], pods=[_pod("p-old", "Failed", 1), _pod("p-new", "Running", 2)])
    logs = tj._NodeZeroLogs(core, "vega3d", "job", lines.append, clock)
    for _ in range(4):
        logs.poll()
        clock.sleep(30)
    assert lines == ["line 0", "line 1", "line 2", "line 3"] and logs.total == 4
    assert [r["pod"] for r in core.reads] == ["p-new"] * 4
    assert [r["since_seconds"] for r in core.reads] == [None, 40, 40, 40]
    core.pods = [_pod("p-newer", "Running", 3)]  # the node restarted: its log starts over
    logs.poll()
    assert lines[4:] == ["line 0", "line 1", "line 2", "line 3", "line 4"]
    assert core.reads[-1] == {"pod": "p-newer", "since_seconds": None}


def test_log_errors_never_fail_the_job():
    class BrokenCore(FakeCore):
        def read_namespaced_pod_log(self, *args, **kwargs):
            raise ApiException(status=500, reason="boom")

    outcome, lines, _ = _run(FakeCustomObjects([RUNNING, COMPLETE]), BrokenCore([]))
    assert outcome.condition["type"] == "Complete" and lines == []


# ------------------------------------------------- the real kubernetes client, over a scripted transport


class ScriptedTransport:
    """Answers the HTTP requests of the real kubernetes ApiClient from a script and records them."""

    def __init__(self, name: str):
        base = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/vega3d/trainjobs"
        pods = {"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
            {"metadata": {"name": f"{name}-node-0-0-x1", "creationTimestamp": "2026-11-24T08:00:00Z"},
             "status": {"phase": "Running"}}]}
        self.requests: list[tuple[str, str, dict, object]] = []
        self.script = {
            ("POST", base): [{}],
            ("GET", f"{base}/{name}"): [RUNNING, COMPLETE],
            ("GET", "/api/v1/namespaces/vega3d/pods"): [pods],
            ("GET", f"/api/v1/namespaces/vega3d/pods/{name}-node-0-0-x1/log"): [
                "2026-11-24T08:00:01.5Z step 1 loss 2.0\n",
                "2026-11-24T08:00:01.5Z step 1 loss 2.0\n2026-11-24T08:00:02Z step 2 loss 1.5\n",
            ],
            ("DELETE", f"{base}/{name}"): [{}],
        }

    def request(self, method, url, query_params=None, headers=None, post_params=None, body=None,
                _preload_content=True, _request_timeout=None):
        path = url.split("://", 1)[-1].split("/", 1)[-1]
        path = "/" + path.split("?", 1)[0]
        self.requests.append((method, path, dict(query_params or []), body))
        answers = self.script[(method, path)]
        answer = answers.pop(0) if len(answers) > 1 else answers[0]
        data = answer if isinstance(answer, str) else json.dumps(answer)
        return SimpleNamespace(status=200, reason="OK", data=data, getheaders=lambda: {}, getheader=lambda *a: None)


def test_launcher_speaks_the_kubernetes_api_correctly():
    from kubernetes import client

    name = "vega3d-train-0123456789"
    transport = ScriptedTransport(name)
    api_client = client.ApiClient(client.Configuration(host="https://k8s.test"))
    api_client.request = transport.request
    lines: list[str] = []
    clock = FakeClock()
    outcome = tj.run_trainjob(client.CustomObjectsApi(api_client), tj.build_trainjob(_request()), 600, 30,
                              lines.append, core_api=client.CoreV1Api(api_client), clock=clock, sleep=clock.sleep)
    assert outcome.condition["reason"] == "AllJobsCompleted"
    assert lines == ["step 1 loss 2.0", "step 2 loss 1.5"]
    calls = [(method, path) for method, path, _, _ in transport.requests]
    base = "/apis/trainer.kubeflow.org/v1alpha1/namespaces/vega3d/trainjobs"
    assert calls[0] == ("POST", base) and calls[-1] == ("DELETE", f"{base}/{name}")
    post_body = transport.requests[0][3]
    assert post_body["kind"] == "TrainJob" and post_body["spec"]["trainer"]["numNodes"] == 2
    assert transport.requests[-1][3] == {"propagationPolicy": "Foreground"}
    pod_list = next(q for m, p, q, _ in transport.requests if p.endswith("/pods"))
    assert pod_list["labelSelector"].startswith(f"jobset.sigs.k8s.io/jobset-name={name},")
    log_queries = [q for m, p, q, _ in transport.requests if p.endswith("/log")]
    assert log_queries[0] == {"container": "node", "timestamps": True}
    assert log_queries[1] == {"container": "node", "timestamps": True, "sinceSeconds": 40}
