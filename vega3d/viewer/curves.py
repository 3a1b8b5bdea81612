"""Training curves of a run: per-task losses and the gradient norm per optimiser step (``train_history.json``).

Each step trains one task group, so a task's curve has points only at the steps that held it (its
``task_losses`` entry); the gradient norm (before clipping) is drawn where the history has one (DeepSpeed
reports none for some set-ups).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

Series = dict[str, tuple[list[int], list[float]]]


def curve_series(history: Sequence[Mapping[str, Any]]) -> tuple[Series, tuple[list[int], list[float]]]:
    """(per-task loss series {task: (steps, losses)}, grad-norm series (steps, norms)) of a history."""
    losses: Series = {}
    norm_steps, norms = [], []
    for record in sorted(history, key=lambda r: r["step"]):
        for task, loss in record.get("task_losses", {}).items():
            steps, values = losses.setdefault(task, ([], []))
            steps.append(int(record["step"]))
            values.append(float(loss))
        if record.get("grad_norm") is not None:
            norm_steps.append(int(record["step"]))
            norms.append(float(record["grad_norm"]))
    return dict(sorted(losses.items())), (norm_steps, norms)


def curves_png(history: Sequence[Mapping[str, Any]], title: str = "training") -> bytes:
    """PNG: per-task losses (left) and gradient norm (right) against the optimiser step."""
    if not history:
        raise ValueError("empty training history: nothing to draw")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses, (norm_steps, norms) = curve_series(history)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for task, (steps, values) in losses.items():
        left.plot(steps, values, marker=".", markersize=3, linewidth=1, label=task)
    left.set(xlabel="step", ylabel="loss", title="loss per task")
    left.legend(fontsize=8)
    if norms:
        right.plot(norm_steps, norms, color="black", linewidth=1)
    right.set(xlabel="step", ylabel="gradient norm", title="gradient norm (before clipping)")
    if not norms:
        right.text(0.5, 0.5, "no gradient norm in the history", ha="center", va="center", transform=right.transAxes)
    figure.suptitle(title)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    plt.close(figure)
    return buffer.getvalue()
