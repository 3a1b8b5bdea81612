"""Options every ``vega3d`` command shares, with one spelling and one meaning everywhere.

``--preset``/``--set`` on every command that reads a config, ``--data-root``, ``--output``, ``--tracking-uri``;
and :func:`with_settings`, which adds one ``--<name>`` option per declared setting of ``vega3d.params`` to a
command (train, eval, pipeline run) and hands the values set to it as dotted overrides.
"""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

import typer

from vega3d.params import settings_for

if TYPE_CHECKING:
    from vega3d.config import Vega3DConfig

PresetOption = Annotated[
    str, typer.Option("--preset", help="Config preset name (tiny, paper, wan_t2v, ...) or a YAML file (path or s3://).")
]
SetOption = Annotated[
    list[str] | None,
    typer.Option("--set", help="Config override section.field=value (repeat), e.g. train.max_steps=20."),
]
DataRootOption = Annotated[
    str | None, typer.Option("--data-root", help="Data root: local folder or s3:// (default: the preset's data.root).")
]
TrackingUriOption = Annotated[
    str | None,
    typer.Option("--tracking-uri", help="MLflow tracking URI (default: tracking.uri, else $MLFLOW_TRACKING_URI)."),
]


def task_argument(choices: tuple[str, ...]) -> Any:
    """The benchmark argument: its choices in the usage line and in shell completion."""
    return typer.Argument(metavar="TASK", autocompletion=lambda: list(choices),
                          help=f"Benchmark: one of {', '.join(choices)}.")


def check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    """A usage error (exit 2) naming the choices when ``value`` is not one of them."""
    if value not in choices:
        raise typer.BadParameter(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")


def hidden_alias(flag: str, instead: str) -> Any:
    """An old spelling kept for one release: accepted, hidden from ``--help``."""
    return typer.Option(flag, hidden=True, help=f"Old spelling of {instead}.")


def config_from_options(preset: str, overrides: list[str] | None, data_root: str | None = None) -> Vega3DConfig:
    """The config of ``--preset``, ``--set`` and ``--data-root`` (applied last, as ``data.root=``); an invalid one
    raises ``ConfigError`` naming the field, which the command line shows as two lines with exit code 2
    (``vega3d.errors``)."""
    from vega3d.config import load_config

    return load_config(preset, [*(overrides or []), *([f"data.root={data_root}"] if data_root else [])])


def parse_params(items: list[str]) -> dict:
    """``name=value`` pipeline parameters; values are parsed as JSON when they parse, else kept as text."""
    params = {}
    for item in items:
        if "=" not in item:
            raise typer.BadParameter(f"{item!r} must look like name=value (e.g. max_steps=20)")
        name, raw = item.split("=", 1)
        try:
            params[name] = json.loads(raw)
        except json.JSONDecodeError:
            params[name] = raw
    return params


def with_settings(surface: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Add the ``--<name>`` option of every setting declared for ``surface`` (``vega3d.params``) to a command.

    The decorated command receives the values that were given as a dict in its ``settings`` parameter
    (``name -> value``; settings left out keep the preset's value).
    """
    declared = settings_for(surface)

    def wrap(command: Callable[..., Any]) -> Callable[..., Any]:
        signature = inspect.signature(command, eval_str=True)
        added = [
            inspect.Parameter(
                s.name, inspect.Parameter.KEYWORD_ONLY, default=None,
                annotation=Annotated[s.type | None, typer.Option(s.flag, *s.aliases, help=s.cli_help)],
            )
            for s in declared
        ]
        kept = [p for p in signature.parameters.values() if p.name != "settings"]

        @functools.wraps(command)
        def call(**kwargs: Any) -> Any:
            given = {s.name: kwargs.pop(s.name) for s in declared}
            return command(**kwargs, settings={k: v for k, v in given.items() if v is not None})

        call.__signature__ = signature.replace(parameters=kept + added)  # type: ignore[attr-defined]
        call.__annotations__ = {p.name: p.annotation for p in kept + added}
        return call

    return wrap
