"""``vega3d plan``: model-state rows against a hand computation, the activation formula against measured memory."""

import pytest
import torch
from typer.testing import CliRunner

from tests.model.test_param_count import paper_total
from vega3d.cli import app
from vega3d.config import load_config
from vega3d.plan import (
    RESERVE_GIB,
    Cluster,
    activation_bytes,
    chosen_setting,
    fit_warning,
    run_memory_markdown,
    sequence_tokens,
)


def table_rows(output: str) -> dict[str, list[str]]:
    """Markdown table of the plan -> row label -> cells."""
    rows = {}
    for line in output.splitlines():
        if line.startswith("| ") and not line.startswith("|---"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[0]] = cells[1:]
    return rows


def test_paper_model_state_rows_equal_a_hand_computation_from_the_parameter_count():
    result = CliRunner().invoke(app, ["plan", "--preset", "paper", "--gpus", "8", "--gpu-memory", "80"])
    assert result.exit_code == 0, result.output
    rows = table_rows(result.output)
    assert rows["per GPU (GiB)"] == ["ZeRO-2", "ZeRO-2 + ckpt", "ZeRO-3", "ZeRO-3 + ckpt", "ZeRO-3 + offload + ckpt"]
    psi = paper_total()  # every part trainable in the paper recipe
    largest = 152064 * 3584  # Qwen2-7B's embedding (and lm_head) matrix
    assert f"{psi:,} parameters ({psi:,} trainable, largest layer {largest:,})" in result.output

    def gib(value: float) -> str:
        return f"{value / 1024**3:.2f}"

    n = 8
    assert rows["weights"] == [gib(2 * psi)] * 2 + [gib(2 * psi / n + 4 * largest)] * 2 + [gib(4 * largest)]
    assert rows["gradients"] == [gib(6 * psi / n)] * 4 + ["0.00"]
    assert rows["optimizer states"] == [gib(12 * psi / n)] * 4 + ["0.00"]
    # DeepSpeed's own estimators on the same count: 2Ψ + 18Ψ/N (ZeRO-2), 4L + 18Ψ/N (ZeRO-3), 4L (offload)
    assert rows["DeepSpeed estimate (model states)"] == (
        [gib(2 * psi + int(18 * psi / n))] * 2 + [gib(4 * largest + int(18 * psi / n))] * 2 + [gib(4 * largest)])
    assert rows["CPU per node (offload)"][-1] == f"{18 * psi * 1.5 / 1024**3:.1f}"
    assert "global batch 128" in result.output  # 1 x 16 accumulation x 8 GPUs
    totals = [float(c.strip("*")) for c in rows["**total**"]]
    first_fit = next(name for name, total in zip(rows["per GPU (GiB)"], totals, strict=True) if total <= 80)
    assert f"First setting that fits: **{first_fit}**" in result.output
    assert totals[1] < totals[0] and totals[3] < totals[2]  # checkpointing saves activations


def measured_activation_bytes(cfg, checkpointing: bool, answer_tokens: int) -> tuple[int, int]:
    """(peak bytes above the parameters during one forward+backward, sequence tokens) of the tiny model on CPU.

    Measured with torch's MemTracker (a dispatch mode that follows every tensor storage's lifetime, so the peak
    is of live tensors, not of the allocator's cache or the process RSS).
    """
    from torch.distributed._tools.mem_tracker import MemTracker

    from vega3d.model.configuration import build_hf_config
    from vega3d.model.modeling_vega3d import Vega3DModel, enable_gradient_checkpointing

    torch.manual_seed(0)
    model = Vega3DModel(build_hf_config(cfg.model, 0, {"image": 1000, "ground": 1001, "coord": 1002})).train()
    if checkpointing:
        enable_gradient_checkpointing(model)
    frames, size = cfg.data.frames_upbound, cfg.model.vision.image_size
    tokens = sequence_tokens(cfg)
    ids = torch.randint(0, 999, (1, tokens - frames * model.config.tokens_per_frame + 1))
    ids[0, 5] = 1000  # <image>
    labels = torch.full_like(ids, -100)
    labels[0, -answer_tokens:] = ids[0, -answer_tokens:]
    inputs = {"pixel_values": [torch.randn(frames, 3, size, size)],
              "world_coords": [torch.rand(frames, size, size, 3) * 4],
              "coord_valid": [torch.ones(frames, size, size, dtype=torch.bool)]}
    tracker = MemTracker()
    tracker.track_external(model)
    with tracker:
        out = model(ids, torch.ones_like(ids), labels=labels, return_logits=False, **inputs)
        assert out.attention_mask.shape[1] == tokens
        out.loss.backward()
    peak = tracker.get_tracker_snapshot("peak")[torch.device("cpu")]["Total"]
    return peak - sum(p.numel() * p.element_size() for p in model.parameters()), tokens


@pytest.mark.parametrize("checkpointing", [False, True])
@pytest.mark.parametrize("frames", [8, 32])
def test_activation_formula_is_within_25_percent_of_the_measured_peak(frames, checkpointing):
    cfg = load_config("tiny", ["generative.backbone=none", f"data.frames_upbound={frames}"])
    measured, tokens = measured_activation_bytes(cfg, checkpointing, answer_tokens=64)
    estimate = sum(activation_bytes(cfg, 0, tokens, checkpointing, answer_tokens=64).values())
    assert abs(estimate - measured) <= 0.25 * measured, (estimate, measured)


def test_setting_warning_names_the_setting_and_only_when_it_does_not_fit():
    cfg = load_config("paper", ["model.gradient_checkpointing=false", "train.zero_stage=3"])
    assert chosen_setting(cfg) == "ZeRO-3"
    warning = fit_warning(cfg, Cluster(8, 1, 80.0))
    assert warning is not None and warning.startswith("## Warning") and "`ZeRO-3` needs about" in warning
    assert fit_warning(cfg, Cluster(8, 1, 141.0)) is None  # an H200 holds it
    tiny = load_config("tiny", ["generative.backbone=none"])  # ZeRO-0 (one process) holds at least ZeRO-2's states
    assert chosen_setting(tiny) == "ZeRO-2"
    assert fit_warning(tiny, Cluster(1, 1, RESERVE_GIB + 1)) is None
    assert fit_warning(tiny, Cluster(1, 1, RESERVE_GIB)) is not None  # the reserve alone fills it


def test_setup_run_writes_the_memory_plan_markdown_for_the_ui():
    from components.setup_run import setup_run
    from vega3d.runs import config_to_yaml

    outputs = setup_run.component_spec.outputs
    assert outputs["memory_plan"].type == "system.Markdown@0.0.1"
    assert setup_run.component_spec.inputs["gpu_memory_gib"].default == 80.0
    no_ckpt = config_to_yaml(load_config("paper", ["model.gradient_checkpointing=false", "train.nproc=8"]))
    text = run_memory_markdown(no_ckpt, 1, 80.0)  # GPUs per node: the config's train.nproc
    assert text.startswith("## Warning") and "`ZeRO-3` needs about" in text and "| **total** |" in text
    assert run_memory_markdown(config_to_yaml(load_config("paper", ["train.nproc=8"])), 1, 80.0) == (
        "`ZeRO-3 + ckpt` fits 1 node(s) x 8 GPU(s) of 80 GiB (`vega3d plan` for the details).")
