"""Predictions as JSONL (one JSON object per line) and their validation against the records.

One prediction per record id; fields by task:
- scanrefer:    {"id", "box": [6]}                                  the chosen proposal
- multi3drefer: {"id", "boxes": [[6], ...]}                         the selected proposals (may be empty)
                or {"id", "proposals": [[6], ...], "scores": [K+1]} scores over proposals + zero-target,
                selected at scoring time with θ (vega3d.model.grounding.select_multi3drefer)
- scan2cap:     {"id", "caption": str | null, "box": [6] | null}    box = the proposal the caption is about
- scanqa/sqa3d: {"id", "answer": str}
Every malformed entry (bad JSON, a line that is not UTF-8, missing or unknown id, duplicate id, missing field,
invalid Unicode, box of the wrong length, NaN/inf coordinate) becomes a :class:`Problem` naming the id (or
line); nothing is dropped silently. :func:`strict_problems` adds one per record left without a prediction.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from vega3d import storage


@dataclass(frozen=True)
class Problem:
    """One malformed prediction: the record id (None when it has none) and/or its line, and what is wrong."""

    id: str | None
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"id {self.id!r}" if self.id is not None else "no id"
        if self.line is not None:
            where += f" (line {self.line})"
        return f"{where}: {self.message}"


class PredictionError(ValueError):
    """Predictions failed validation; ``problems`` lists every malformed entry with its id."""

    def __init__(self, source: str, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        shown = "\n  ".join(str(p) for p in self.problems[:50])
        more = f"\n  ... and {len(self.problems) - 50} more" if len(self.problems) > 50 else ""
        super().__init__(
            f"{source}: {len(self.problems)} malformed prediction(s); fix or re-run them:\n  {shown}{more}"
        )


@dataclass
class PredictionSet:
    """Validated predictions by id, the problems found, and the record ids without a valid prediction."""

    by_id: dict[str, dict[str, Any]]
    problems: list[Problem] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def read_jsonl(uri: str) -> tuple[list[tuple[int, dict[str, Any]]], list[Problem]]:
    """Parse a JSONL file into (line number, object) pairs; unparsable lines (bad JSON, bytes that are not
    UTF-8) become problems, the other lines are still read."""
    entries: list[tuple[int, dict[str, Any]]] = []
    problems: list[Problem] = []
    for number, raw in enumerate(storage.read_bytes(uri).splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            problems.append(Problem(None, f"not valid UTF-8 (byte 0x{raw[error.start]:02x} at column "
                                          f"{error.start + 1}); re-write the file as UTF-8", number))
            continue
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as error:
            problems.append(Problem(None, f"not valid JSON ({error.msg})", number))
            continue
        if not isinstance(obj, dict):
            problems.append(Problem(None, f"expected a JSON object, got {type(obj).__name__}", number))
            continue
        entries.append((number, obj))
    return entries, problems


def write_jsonl(uri: str, rows: Iterable[dict[str, Any]]) -> None:
    """Write rows as JSONL atomically."""
    storage.write_text(uri, "".join(json.dumps(row) + "\n" for row in rows))


def _box_problem(value: Any, name: str) -> str | None:
    if not isinstance(value, (list, tuple)) or len(value) != 6:
        size = len(value) if isinstance(value, (list, tuple)) else type(value).__name__
        return f"{name} must be a list of 6 numbers [cx, cy, cz, dx, dy, dz], got {size}"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        return f"{name} must hold numbers, got {value!r}"
    if not all(math.isfinite(v) for v in value):
        return f"{name} has a NaN or infinite coordinate: {value!r}"
    if any(v < 0 for v in value[3:]):
        return f"{name} has a negative size: {value!r}"
    return None


def _box_list_problem(value: Any, name: str) -> str | None:
    if not isinstance(value, list):
        return f"{name} must be a list of boxes, got {type(value).__name__}"
    for index, box in enumerate(value):
        problem = _box_problem(box, f"{name}[{index}]")
        if problem:
            return problem
    return None


def _text_problem(pred: dict[str, Any], name: str, nullable: bool) -> str | None:
    if name not in pred:
        return f"missing field {name!r}"
    if pred[name] is None and nullable:
        return None
    if not isinstance(pred[name], str):
        return f"{name} must be a string, got {type(pred[name]).__name__}"
    try:
        pred[name].encode("utf-8")
    except UnicodeEncodeError:
        return f"{name} holds invalid Unicode (a lone surrogate escape such as \\ud800)"
    return None


def field_problem(task: str, pred: dict[str, Any]) -> str | None:
    """What is wrong with the task fields of one prediction, or None."""
    if task == "scanrefer":
        return "missing field 'box'" if "box" not in pred else _box_problem(pred["box"], "box")
    if task == "multi3drefer":
        if "boxes" in pred:
            return _box_list_problem(pred["boxes"], "boxes")
        if "scores" in pred and "proposals" in pred:
            problem = _box_list_problem(pred["proposals"], "proposals")
            scores = pred["scores"]
            if problem is None and (
                not isinstance(scores, list) or len(scores) != len(pred["proposals"]) + 1
            ):
                problem = "scores must hold one score per proposal plus the zero-target (K + 1)"
            if problem is None and not all(isinstance(s, (int, float)) and math.isfinite(s) for s in scores):
                problem = f"scores must be finite numbers, got {scores!r}"
            return problem
        return "needs 'boxes' or both 'proposals' and 'scores'"
    if task == "scan2cap":
        problem = _text_problem(pred, "caption", nullable=True)
        if problem is None and pred.get("box") is not None:
            problem = _box_problem(pred["box"], "box")
        return problem
    if task in ("scanqa", "sqa3d"):
        return _text_problem(pred, "answer", nullable=False)
    raise ValueError(f"unknown task {task!r}")


def validate_predictions(
    task: str,
    record_ids: Sequence[str],
    entries: Sequence[tuple[int | None, dict[str, Any]]],
    problems: Sequence[Problem] = (),
) -> PredictionSet:
    """Check (line, prediction) entries against the record ids of a split.

    Returns the valid predictions by id, every problem (with ids), and the record ids left without a
    valid prediction (``missing``). A duplicated id is a problem and its first occurrence is kept.
    """
    known = set(record_ids)
    found: list[Problem] = list(problems)
    by_id: dict[str, dict[str, Any]] = {}
    for line, pred in entries:
        pid = pred.get("id")
        if pid is None or pid == "":
            found.append(Problem(None, "missing field 'id'", line))
            continue
        pid = str(pid)
        if pid not in known:
            found.append(Problem(pid, f"unknown id (not a {task} record of this split)", line))
            continue
        if pid in by_id:
            found.append(Problem(pid, "duplicate id (the first prediction is kept)", line))
            continue
        problem = field_problem(task, pred)
        if problem:
            found.append(Problem(pid, problem, line))
            continue
        by_id[pid] = pred
    missing = [rid for rid in record_ids if rid not in by_id]
    return PredictionSet(by_id=by_id, problems=found, missing=missing)


def strict_problems(pset: PredictionSet) -> list[Problem]:
    """What ``--strict`` refuses: every malformed entry and every record without a prediction (so an empty
    predictions file fails instead of scoring zero)."""
    return pset.problems + [Problem(rid, "no prediction for this record") for rid in pset.missing]


def load_predictions(task: str, uri: str, record_ids: Sequence[str]) -> PredictionSet:
    """Read and validate a predictions JSONL file."""
    entries, problems = read_jsonl(uri)
    return validate_predictions(task, record_ids, entries, problems)
