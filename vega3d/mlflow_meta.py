"""What our runs look like in MLflow to someone who knows MLflow: names, descriptions, datasets, model schema.

- The experiment carries ``mlflow.experimentKind = custom_model_development``, so MLflow 3's UI opens it in
  the model-training view (runs, metrics, models) rather than the GenAI one (traces, judges); the links we
  print add ``?workflowType=machine_learning``, which newer UIs with a global GenAI / model-training switch
  read instead of the tag.
- Run names say what ran: ``<preset>-<backbone>-<fusion>-<short id>``; each run has a description
  (``mlflow.note.content``, shown on the run page).
- The data root and the offline feature set are MLflow datasets (``log_inputs``) on the stages that read them,
  with a digest of their content, so runs on the same data are recognisable as such.
- The trained model is an MLflow logged model (an external model: the weights stay in the storage root) with
  an input/output signature; registry versions point at it (see ``vega3d.tracking.Tracker.register_model``).
- The champion gate's decision is JSON (a tag) and a Markdown table (in the report).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from vega3d.config import Vega3DConfig
    from vega3d.tracking import GateDecision

EXPERIMENT_KIND_TAG = "mlflow.experimentKind"  # read by MLflow 3's UI to pick the experiment's view
TRAINING_KIND = "custom_model_development"  # the model-training view (the other kind is genai_development)
DESCRIPTION_TAG = "mlflow.note.content"  # MLflow's own: the run page's description
DATASET_CONTEXT_TAG = "mlflow.data.context"  # MLflow's own: what a run did with a dataset input
FINGERPRINT_TAG = "vega3d.model_fingerprint"
CHECKPOINT_TAG = "vega3d.checkpoint_uri"

# MLflow >= 3.x UIs with the GenAI / model-training switch pick the view from this URL parameter (else from
# the browser's last choice, GenAI by default) rather than from the experiment's kind tag.
UI_VIEW_QUERY = "workflowType=machine_learning"

STAGE_DESCRIPTIONS = {
    "prep": "Checks the data root and writes boxes, voxel sets, frame selections and the processed records.",
    "extract": "Extracts the frozen generative encoder's features of every sampled frame list (offline features).",
    "train": "Trains VEGA-3D with DeepSpeed: per-step loss, learning rate, task losses, throughput, grad norm.",
    "eval": "Evaluates the trained model on {task}: the benchmark's metrics, breakdown and sample predictions.",
}


def ui_url(tracking_url: str, route: str = "") -> str:
    """A link into the MLflow UI that opens in the model-training view, e.g. ``ui_url(url, "models/vega3d")``."""
    return f"{tracking_url.rstrip('/')}/#/{route.strip('/')}?{UI_VIEW_QUERY}"


def run_name(preset: str, backbone: str, fusion: str, run_key: str) -> str:
    """``tiny-wan_t2v-token_gated-3f9c2a``: preset, backbone, fusion and a short id of the pipeline run."""
    short = run_key.rsplit("-", 1)[-1][:6] if run_key else "run"
    return f"{preset}-{backbone}-{fusion}-{short}"


def pipeline_description(cfg: Vega3DConfig, run_key: str) -> str:
    """The parent run's description (Markdown): what was trained on what, and where the outputs are."""
    return (
        f"VEGA-3D pipeline run `{run_key}`: preset **{cfg.preset}**, generative backbone "
        f"**{cfg.generative.backbone}** ({cfg.generative.mode} features), fusion **{cfg.model.fusion}**, "
        f"{cfg.data.frames_upbound} frames ({cfg.data.sampling}). Data root `{cfg.data.root}`; "
        f"checkpoints under `{cfg.train.output_uri}`; benchmark results under `{cfg.eval.output_uri}`. "
        "Children: one run per stage; the report (table, plot, champion gate) is logged here."
    )


def stage_description(stage: str) -> str:
    """A stage run's description (``eval-<task>`` names its benchmark)."""
    if stage.startswith("eval-"):
        return STAGE_DESCRIPTIONS["eval"].format(task=stage.removeprefix("eval-"))
    return STAGE_DESCRIPTIONS.get(stage, f"Stage {stage} of a VEGA-3D pipeline run.")


def folder_digest(local_dir: str | Path, subpaths: list[str] | None = None) -> str:
    """Short digest of a local folder's file list (relative path and size of every file under ``subpaths``)."""
    root = Path(local_dir)
    entries = []
    for sub in subpaths or [""]:
        base = root / sub
        paths = [base] if base.is_file() else sorted(base.rglob("*")) if base.exists() else []
        entries += [f"{p.relative_to(root).as_posix()}:{p.stat().st_size}" for p in paths if p.is_file()]
    return hashlib.sha256("\n".join(sorted(entries)).encode()).hexdigest()[:12]


def remote_fingerprint(uri: str) -> str:
    """Content fingerprint of a checkpoint folder: its URI and its files' relative paths, sizes and versions
    (S3 ETags; local modification times). An identical rerun that reuses a checkpoint has the same one; a
    folder that cannot be listed is fingerprinted by its URI alone."""
    from vega3d import storage

    lines = [uri.rstrip("/")]
    try:
        fs, root = storage.filesystem(uri)
        root = root.rstrip("/")
        listing = fs.find(root, detail=True)
    except Exception:  # noqa: BLE001 - any failure to list leaves the URI as the identity
        listing = {}
    for path, info in sorted(listing.items()):
        version = info.get("ETag") or info.get("mtime") or info.get("LastModified")
        lines.append(f"{path[len(root) + 1:]}:{info.get('size')}:{version}")
    return hashlib.sha256("\n".join(lines).encode()).hexdigest()[:16]


def dataset_input(name: str, uri: str, digest: str, context: str, profile: dict[str, Any] | None = None) -> Any:
    """An MLflow ``DatasetInput`` for a folder at ``uri`` (s3:// or local) used as ``context``."""
    from mlflow.entities import Dataset, DatasetInput, InputTag

    source_type = "s3" if uri.startswith("s3://") else "local"
    dataset = Dataset(name=name, digest=digest, source_type=source_type, source=json.dumps({"uri": uri}),
                      profile=json.dumps(profile) if profile else None)  # fmt: skip
    return DatasetInput(dataset, tags=[InputTag(DATASET_CONTEXT_TAG, context)])


def data_root_input(uri: str, local_dir: str | Path, subpaths: list[str], context: str) -> Any:
    """The data root as an MLflow dataset (digest of the staged working copy's file list)."""
    name = os.path.basename(uri.rstrip("/")) or "data"
    return dataset_input(f"data-root:{name}", uri, folder_digest(local_dir, subpaths), context)


def feature_set_input(feature_id: str, store_uri: str, context: str) -> Any:
    """An offline feature set as an MLflow dataset: its feature id is already a digest of what made it."""
    digest = hashlib.sha256(feature_id.encode()).hexdigest()[:12]
    return dataset_input(f"features:{feature_id}", store_uri, digest, context)


def model_signature() -> Any:
    """The VEGA-3D model's input/output signature as served by ``vega3d eval``: a question (or a grounding
    description, or a box to caption) about a scene in the data root -> an answer and/or boxes."""
    from mlflow.models.signature import ModelSignature
    from mlflow.types.schema import Array, ColSpec, Schema

    inputs = Schema([
        ColSpec("string", "task"),  # scanrefer, multi3drefer, scan2cap, scanqa, sqa3d
        ColSpec("string", "scene_id"),  # a scene under the data root (posed RGB-D frames are read from there)
        ColSpec("string", "question", required=False),  # question, situation + question, or description
        ColSpec(Array("double"), "box", required=False),  # Scan2Cap: the box to describe (cx, cy, cz, dx, dy, dz)
    ])  # fmt: skip
    outputs = Schema([
        ColSpec("string", "answer", required=False),  # QA answer or caption
        ColSpec(Array(Array("double")), "boxes", required=False),  # grounding: the selected boxes
    ])  # fmt: skip
    return ModelSignature(inputs=inputs, outputs=outputs)


def split_counts(metrics: dict[str, float]) -> tuple[dict[str, float], dict[str, int]]:
    """(measurements, counts): ``num_*`` entries (records, missing, problems) are bookkeeping counts, which
    belong in tags or params rather than in metric charts."""
    counts = {k: int(v) for k, v in metrics.items() if k.rsplit("/", 1)[-1].startswith("num_")}
    return {k: v for k, v in metrics.items() if k not in counts}, counts


def gate_record(decision: GateDecision | None, version: str | None, metrics: list[str]) -> dict[str, Any]:
    """The champion gate's decision as plain JSON-able data."""
    if decision is None:
        return {"promoted": False, "version": version, "metrics": metrics, "reason": "no decision (tracking off)"}
    return {
        "promoted": decision.promoted,
        "version": decision.candidate_version,
        "previous_champion": decision.previous_champion,
        "reason": decision.reason,
        "metrics": metrics,
        "comparison": {name: {"candidate": ours, "champion": theirs}
                       for name, (ours, theirs) in decision.comparison.items()},
    }  # fmt: skip


def gate_markdown(record: dict[str, Any]) -> str:
    """The gate decision as a Markdown section with one table row per compared metric."""
    verdict = "promoted to champion" if record["promoted"] else "not promoted"
    lines = [f"## Champion gate: version {record['version']} {verdict}", "", f"{record['reason']}.", ""]
    if record.get("comparison"):
        lines += ["| metric | candidate | champion |", "|---|---|---|"]
        for name, pair in record["comparison"].items():
            champion = "-" if pair["champion"] is None else f"{pair['champion']:.2f}"
            lines.append(f"| {name} | {pair['candidate']:.2f} | {champion} |")
    return "\n".join(lines) + "\n"
