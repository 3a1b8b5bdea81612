"""The compiled pipeline IR: every stage present, GPU placement on the GPU steps only, caching per step; the run
form (descriptions, real defaults, per-benchmark names) and placement by preset (tiny: no GPU)."""

import pytest
import yaml
from typer.testing import CliRunner

from vega3d.cli import app

EVAL_EXECUTORS = {"exec-evaluate", *(f"exec-evaluate-{i}" for i in range(2, 6))}
GPU_EXECUTORS = {"exec-extract", "exec-train", *EVAL_EXECUTORS}
CPU_EXECUTORS = {"exec-setup-run", "exec-prep", "exec-report", "exec-finalize", "exec-features-needed",
                 "exec-no-features", "exec-train-multinode", "exec-extract-shards", "exec-merge-extract-shards"}


def _compile(path, *args):
    result = CliRunner().invoke(app, ["pipeline", "compile", "-o", str(path), *args])
    assert result.exit_code == 0, result.output
    pipeline_spec, platform_spec = list(yaml.safe_load_all(path.read_text()))
    return pipeline_spec, platform_spec["platforms"]["kubernetes"]["deploymentSpec"]["executors"]


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """A paper preset's pipeline (GPU requests)."""
    return _compile(tmp_path_factory.mktemp("ir") / "vega3d.yaml", "--cache", "prep", "--preset", "wan_t2v")


@pytest.fixture(scope="module")
def compiled_tiny(tmp_path_factory):
    """The default (tiny) preset's pipeline."""
    return _compile(tmp_path_factory.mktemp("ir") / "tiny.yaml")


def test_every_stage_is_compiled(compiled):
    pipeline_spec, _ = compiled
    assert set(pipeline_spec["deploymentSpec"]["executors"]) == GPU_EXECUTORS | CPU_EXECUTORS
    params = pipeline_spec["root"]["inputDefinitions"]["parameters"]
    for name in ("preset", "backbone", "fusion", "sampling", "frames", "timestep", "block", "lr", "vision_lr",
                 "epochs", "num_gpus", "num_nodes", "storage_root", "mlflow_uri", "experiment", "run_eval"):
        assert name in params, name
    assert params["preset"]["defaultValue"] == "wan_t2v"
    assert params["run_eval"]["defaultValue"] is True


def test_extract_fans_out_over_one_gpu_shards_and_joins_their_feature_ids(compiled):
    pipeline_spec, _ = compiled
    assert pipeline_spec["root"]["inputDefinitions"]["parameters"]["extract_gpus"]["defaultValue"] == 1
    tasks = {(comp, name): task for comp, spec in pipeline_spec["components"].items() if "dag" in spec
             for name, task in spec["dag"]["tasks"].items()}
    loop_comp, extract_task = next((c, t) for (c, n), t in tasks.items() if n == "extract")
    inputs = extract_task["inputs"]["parameters"]
    assert inputs["shard_index"]["componentInputParameter"] == "pipelinechannel--extract-shards-Output-loop-item"
    assert inputs["num_shards"]["componentInputParameter"] == "pipelinechannel--extract_gpus"
    loop = next(t for t in tasks.values() if t["componentRef"]["name"] == loop_comp)
    assert loop["parameterIterator"]["items"]["inputParameter"] == "pipelinechannel--extract-shards-Output"
    merge = next(t for (c, n), t in tasks.items() if n == "merge-extract-shards")
    assert merge["inputs"]["parameters"]["feature_ids"]["taskOutputParameter"]["producerTask"] == loop_comp.removeprefix(
        "comp-")
    extract_gpus = pipeline_spec["deploymentSpec"]["executors"]["exec-extract"]["container"]["resources"]["accelerator"]
    assert extract_gpus["resourceCount"] == "1"  # each shard on its own GPU


def test_gpu_placement_only_on_gpu_steps(compiled):
    pipeline_spec, platform = compiled
    executors = pipeline_spec["deploymentSpec"]["executors"]
    for name in GPU_EXECUTORS:
        accelerator = executors[name]["container"]["resources"]["accelerator"]
        assert "accelerator_type" in accelerator["resourceType"]
        assert platform[name]["nodeSelector"]["nodeSelectorJson"]["componentInputParameter"].endswith(
            "gpu_node_selector"
        )
        assert platform[name]["tolerations"][0]["tolerationJson"]["componentInputParameter"].endswith(
            "gpu_tolerations"
        )
        shm = platform[name]["emptyDirMounts"][0]
        assert (shm["mountPath"], shm["medium"]) == ("/dev/shm", "Memory")
    assert "num_gpus" in executors["exec-train"]["container"]["resources"]["accelerator"]["resourceCount"]
    for name in EVAL_EXECUTORS:
        assert "eval_gpus" in executors[name]["container"]["resources"]["accelerator"]["resourceCount"]
    for name in CPU_EXECUTORS:
        assert "accelerator" not in executors[name]["container"].get("resources", {})
        for key in ("nodeSelector", "tolerations", "emptyDirMounts"):
            assert key not in platform.get(name, {}), (name, key)


def test_credentials_from_secrets_on_every_storage_step(compiled):
    _, platform = compiled
    for name in GPU_EXECUTORS | {"exec-setup-run", "exec-prep", "exec-report", "exec-finalize",
                                 "exec-train-multinode"}:
        secrets = {s["secretName"]: {k["envVar"] for k in s["keyToEnv"]} for s in platform[name]["secretAsEnv"]}
        assert secrets["vega3d-s3"] == {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"}
        assert secrets["vega3d-mlflow"] == {"MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"}
        run_id_env = platform[name]["fieldPathAsEnv"][0]
        assert run_id_env == {"name": "VEGA3D_PIPELINE_RUN_ID", "fieldPath": "metadata.labels['pipeline/runid']"}


def test_caching_is_opt_in_per_step(compiled):
    pipeline_spec, _ = compiled

    def tasks(component):
        found = dict(component.get("dag", {}).get("tasks", {}))
        return found

    all_tasks = dict(tasks(pipeline_spec["root"]))
    for component in pipeline_spec["components"].values():
        all_tasks.update(tasks(component))
    cached = {name for name, task in all_tasks.items() if task.get("cachingOptions", {}).get("enableCache")}
    assert cached == {"prep"}
    assert "train-multinode" in all_tasks
    assert "train" in all_tasks and "evaluate" in all_tasks and "report" in all_tasks
    assert not cached & {"evaluate", "evaluate-2", "evaluate-5"}


def test_unknown_cached_step_is_refused():
    from pipelines.vega3d_pipeline import build_pipeline

    with pytest.raises(ValueError, match="unknown steps to cache"):
        build_pipeline(["trian"])


def test_every_parameter_has_a_description_and_no_placeholder_default(compiled):
    pipeline_spec, _ = compiled
    params = pipeline_spec["root"]["inputDefinitions"]["parameters"]
    assert len(params) == 27  # 11 settings + 16 run parameters (vega3d.params)
    for name, spec in params.items():
        assert spec.get("description", "").strip(), name
        assert spec.get("defaultValue") not in (-1, -1.0), name  # no sentinels: optional settings instead
    for name in ("backbone", "fusion", "frames", "lr", "max_steps"):  # settings: optional, the preset's value
        assert params[name]["isOptional"] is True and "defaultValue" not in params[name], name
        assert "Default: the preset's" in params[name]["description"]
    assert params["fusion"]["description"].endswith("(model.fusion).")
    assert params["num_gpus"]["defaultValue"] == 1


def _tasks(pipeline_spec):
    found = dict(pipeline_spec["root"]["dag"]["tasks"])
    for component in pipeline_spec["components"].values():
        found.update(component.get("dag", {}).get("tasks", {}))
    return found


def test_each_evaluation_is_named_by_its_benchmark(compiled):
    pipeline_spec, _ = compiled
    names = sorted(t["taskInfo"]["name"] for t in _tasks(pipeline_spec).values()
                   if t["componentRef"]["name"].startswith("comp-evaluate"))
    assert names == sorted(f"evaluate {b}" for b in ("scanrefer", "multi3drefer", "scan2cap", "scanqa", "sqa3d"))
    report = _tasks(pipeline_spec)["report"]["inputs"]["parameters"]["task_metrics"]
    assert len(report["runtimeValue"]["constant"]) == 5  # the report collects all five


def test_tiny_steps_request_no_gpu_and_small_cpu(compiled_tiny):
    pipeline_spec, platform = compiled_tiny
    executors = pipeline_spec["deploymentSpec"]["executors"]
    assert set(executors) == GPU_EXECUTORS | CPU_EXECUTORS
    for name, executor in executors.items():
        resources = executor["container"].get("resources", {})
        assert "accelerator" not in resources, name
        assert float(resources.get("cpuRequest", 0)) <= 2, name
        assert "nodeSelector" not in platform.get(name, {}) and "tolerations" not in platform.get(name, {}), name
    assert executors["exec-train"]["container"]["resources"]["cpuRequest"] == 2
    params = pipeline_spec["root"]["inputDefinitions"]["parameters"]
    assert params["preset"]["defaultValue"] == "tiny"


def test_tiny_gpu_requests_stay_overridable(tmp_path):
    pipeline_spec, _ = _compile(tmp_path / "tiny-gpu.yaml", "--gpu", "--set", "eval.max_samples=4")
    executors = pipeline_spec["deploymentSpec"]["executors"]
    assert "num_gpus" in executors["exec-train"]["container"]["resources"]["accelerator"]["resourceCount"]
    assert pipeline_spec["root"]["inputDefinitions"]["parameters"]["overrides"]["defaultValue"] == [
        "eval.max_samples=4"]
def test_every_step_runs_as_the_images_non_root_user(compiled):
    _, platform = compiled
    for name in GPU_EXECUTORS | CPU_EXECUTORS:
        assert platform[name]["securityContext"] == {"runAsUser": "10001", "runAsGroup": "10001",
                                                     "runAsNonRoot": True}, name
