"""The one declared parameter surface: every user-facing parameter, its config key, type, default and help.

Everything a user can set on a run is declared here once and generated everywhere else:

- the Kubeflow pipeline's parameters with their descriptions in the run form (``pipelines/vega3d_pipeline.py``);
- ``setup_run``'s ``settings`` input, turned into dotted overrides by :func:`to_overrides` (``components/``);
- the ``--<name>`` options of ``vega3d train``, ``vega3d eval`` and ``vega3d pipeline run`` (``vega3d/cli/``).

``SETTINGS`` are config settings: ``None`` (their default) keeps the preset's value, anything else becomes the
override ``<key>=<value>``, validated once with the whole config in ``setup_run``. ``RUN_PARAMS`` are the
pipeline's own parameters (where things run and are stored), with literal defaults.

Adding a setting is one line in ``SETTINGS``, e.g.::

    Setting("seed", "train.seed", int, "Random seed of training.", TRAIN),

No kfp and no typer here: the library stays importable without either.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

PIPELINE, TRAIN_CLI, EVAL_CLI = "pipeline", "train", "eval"
ALL = (PIPELINE, TRAIN_CLI, EVAL_CLI)
TRAIN = (PIPELINE, TRAIN_CLI)

DEFAULT_NODE_SELECTOR = {"nvidia.com/gpu.present": "true"}
DEFAULT_TOLERATIONS = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@dataclass(frozen=True)
class Setting:
    """A config setting users set by name: ``name`` (pipeline parameter, ``--name`` option) -> ``key``."""

    name: str
    key: str  # dotted config key, e.g. model.fusion
    type: type  # str, int, float or bool
    help: str
    surfaces: tuple[str, ...] = ALL  # where it is offered: pipeline, train, eval
    aliases: tuple[str, ...] = ()  # older CLI spellings, still accepted
    default: Any = None  # the pipeline's default; None: the preset's value (the CLI always defaults to it)

    @property
    def flag(self) -> str:
        """The CLI option: ``--vision-lr`` for ``vision_lr``."""
        return "--" + self.name.replace("_", "-")

    @property
    def cli_help(self) -> str:
        """Help of the CLI option (the CLI always defaults to the preset's value)."""
        return f"{self.help} Default: the preset's ({self.key})."

    @property
    def description(self) -> str:
        """Help text with the default spelled out (what the Kubeflow run form shows)."""
        default = "the preset's" if self.default is None else repr(self.default)
        return f"{self.help} Default: {default} ({self.key})."


@dataclass(frozen=True)
class RunParam:
    """A pipeline parameter that is not a config setting (placement, storage, tracking, switches)."""

    name: str
    type: Any
    default: Any
    help: str


SETTINGS: tuple[Setting, ...] = (
    Setting("backbone", "generative.backbone", str, "Generative backbone (none, wan_t2v, wan_vace, sd21, ...)."),
    Setting("fusion", "model.fusion", str, "How generative features join the visual tokens (token_gated, add, ...)."),
    Setting("sampling", "data.sampling", str, "Frame sampling: uniform, max-coverage or mc-ratio95."),
    Setting("frames", "data.frames_upbound", int, "Frames per sample."),
    Setting("timestep", "generative.timestep", int, "Diffusion timestep of the generative features."),
    Setting("block", "generative.block", int, "Tapped DiT block of the generative backbone."),
    Setting("lr", "train.lr", float, "Learning rate.", TRAIN),
    Setting("vision_lr", "train.vision_lr", float, "Learning rate of the vision tower.", TRAIN),
    Setting("epochs", "train.epochs", float, "Training epochs.", TRAIN),
    Setting("max_steps", "train.max_steps", int, "Cap on optimiser steps.", TRAIN),
    Setting("num_gpus", "train.nproc", int, "GPUs (processes) per training node.", TRAIN, aliases=("--nproc",),
            default=1),
)

RUN_PARAMS: tuple[RunParam, ...] = (
    RunParam("preset", str, "tiny", "Preset: tiny (CPU demo), paper, wan_t2v, wan_vace, sd21, baseline, or a YAML "
             "file URI."),
    RunParam("overrides", list, [], "Config overrides section.field=value, applied after the settings above."),
    RunParam("storage_root", str, "s3://vega3d", "Where features, checkpoints and predictions go (s3://bucket/"
             "prefix or a path); outputs land under <storage_root>/runs/<config digest>/."),
    RunParam("data_uri", str, "s3://vega3d/data", "Data root in the ScanNet layout (see `vega3d data check`)."),
    RunParam("mlflow_uri", str, "", "MLflow tracking URI; empty turns tracking off."),
    RunParam("experiment", str, "vega3d", "MLflow experiment of the run."),
    RunParam("run_name", str, "", "Name of the MLflow parent run; empty: the Kubeflow run id (always its key)."),
    RunParam("run_eval", bool, True, "Evaluate the five benchmarks and run the report and champion gate."),
    RunParam("num_nodes", int, 1, "Training nodes; more than 1 trains through a Kubeflow Trainer TrainJob."),
    RunParam("train_timeout_s", int, 72 * 3600, "Seconds before a multi-node TrainJob is given up and deleted."),
    RunParam("extract_gpus", int, 1, "Shards of the feature extraction, one GPU each, writing one shared store."),
    RunParam("gpu_memory_gib", float, 80.0, "Memory of one GPU in GiB: setup warns when the setting will not fit."),
    RunParam("eval_gpus", int, 1, "GPUs of each evaluation step (paper presets; tiny steps request none)."),
    RunParam("accelerator_type", str, "nvidia.com/gpu", "Kubernetes resource name of the GPUs."),
    RunParam("gpu_node_selector", dict, DEFAULT_NODE_SELECTOR, "Node selector of the GPU node pool."),
    RunParam("gpu_tolerations", list, DEFAULT_TOLERATIONS, "Tolerations of the GPU node pool."),
)


class ParamError(ValueError):
    """A parameter value cannot be read as its declared type; the message names the parameter."""


def settings_for(surface: str) -> tuple[Setting, ...]:
    """The settings offered on one surface (pipeline, train or eval)."""
    return tuple(s for s in SETTINGS if surface in s.surfaces)


def setting(name: str) -> Setting:
    """The setting called ``name``."""
    for item in SETTINGS:
        if item.name == name:
            return item
    raise KeyError(f"no setting {name!r}; settings: {', '.join(s.name for s in SETTINGS)}")


def is_unset(value: Any) -> bool:
    """Whether a setting's value keeps the preset's: None, empty, or a pipeline placeholder left unresolved.

    An optional pipeline parameter that the user left empty reaches ``setup_run`` as None or, depending on the
    Kubeflow backend, as empty text or the placeholder text itself (``{{$.inputs.parameters[...]}}``).
    """
    return value is None or (isinstance(value, str) and (value == "" or value.startswith("{{$")))


def coerce(item: Setting, value: Any) -> Any:
    """``value`` as the setting's type; pipeline values arrive as text or floats (``"8"``, ``8.0``)."""
    try:
        if item.type is int:
            number = float(value)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if item.type is float:
            return float(value)
        if item.type is bool:
            return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
        return str(value)
    except (TypeError, ValueError):
        raise ParamError(f"parameter {item.name}={value!r}: expected {item.type.__name__} ({item.key})") from None


def to_overrides(values: Mapping[str, Any], extra: Iterable[str] = ()) -> list[str]:
    """Dotted overrides ``key=value`` for the settings that were set (in declaration order), then ``extra``."""
    unknown = set(values) - {s.name for s in SETTINGS}
    if unknown:
        raise ParamError(f"unknown setting(s) {sorted(unknown)}; settings: {', '.join(s.name for s in SETTINGS)}")
    overrides = [
        f"{s.key}={coerce(s, values[s.name])}" for s in SETTINGS if s.name in values and not is_unset(values[s.name])
    ]
    return overrides + list(extra)


def pipeline_overrides(params: Mapping[str, Any]) -> list[str]:
    """The overrides ``setup_run`` derives from pipeline parameters ``params`` (pipeline defaults applied)."""
    values = {s.name: params.get(s.name, s.default) for s in settings_for(PIPELINE)}
    return to_overrides(values, params.get("overrides", []))
