"""GPU-hours of one full paper reproduction (extract, train, five evaluations): the released way vs ours.

FLOP counts at paper size are measured, not guessed: torch's FlopCounterMode over the real architectures built
on the meta device (no weights): Wan2.1-T2V-1.3B encoding one 1280x720 frame (VAE + DiT, early exit at block 20
and the full 30 blocks + head), the SigLIP tower on 32 frames, the projector, Qwen2-7B over the sequence, the
LM head over the whole sequence (released) or the answer tokens only (ours). FLOPs become GPU-hours through a
card's bf16 peak and a model-FLOPs utilisation; decoding is memory-bound and priced by weight bytes over memory
bandwidth. Every other number is a named assumption (``ASSUMPTIONS``, each overridable with --set NAME=VALUE),
including the ratios our benchmarks measure (bench_extract, bench_eval, bench_gpu).

    released: features recomputed online for every training and evaluation sample on its rank, full DiT,
              logits over every position, evaluation at batch 1;
    ours:     features extracted once per (scene, frame list) with the early exit, read from the store in
              training and evaluation, logits of supervised tokens only, evaluation decoding at batch 8.

    .venv/bin/python benchmarks/cost_model.py [--set mfu_train=0.45 ...]
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# name -> (value, what it is and where it comes from)
ASSUMPTIONS: dict[str, tuple[float, str]] = {
    "peak_tflops": (312.0, "bf16 dense peak of the card, TFLOP/s (A100, the card of the released runs)"),
    "hbm_tbs": (2.0, "memory bandwidth of the card, TB/s (A100 80GB)"),
    "mfu_train": (0.40, "model-FLOPs utilisation of training (bench_gpu measures it on the lent GPU)"),
    "mfu_infer": (0.45, "model-FLOPs utilisation of the frozen encoder and of evaluation prefill"),
    "decode_efficiency": (0.6, "fraction of memory bandwidth a batch-1 decoding step reaches"),
    "decode_speedup_b8": (6.0, "tokens/s of decoding at batch 8 over batch 1 (bench_gpu measures it; memory-bound "
                               "steps cost about the same for 8 rows)"),
    "early_exit_ratio": (0.70, "time of the DiT with early exit over the full DiT (bench_extract, measured)"),
    "online_recompute": (1.0, "share of released samples whose features are recomputed (1.0: every sample, no cache; "
                              "users report ~256 GPU-h (32 h on 8 A100) per run, below this model's released total "
                              "at 1.0, so a cache or a higher MFU is likely)"),
    "frames": (32, "frames per sample (frames_upbound)"),
    "text_tokens": (256, "prompt + answer tokens of a sample on top of its 6720 visual tokens"),
    "answer_tokens": (16, "supervised tokens per training sample (our LM head runs on these only)"),
    "train_records": (223_128, "training records of the released prep: ScanRefer 36,665 + Multi3DRefer 43,838 + "
                               "Scan2Cap 36,665 + ScanQA (one per answer) 26,515 + SQA3D (one per situation) 79,445"),
    "scenes": (1_613, "ScanNet scenes with features to extract: 1,201 train + 312 val + 100 test"),
    "eval_records": (30_890, "evaluation records: ScanRefer 9,508 + Multi3DRefer 11,120 + Scan2Cap 2,068 + ScanQA "
                             "4,675 + SQA3D 3,519 (SPEC section 4)"),
    "decode_records": (10_262, "evaluation records that decode text (Scan2Cap + ScanQA + SQA3D)"),
    "decode_tokens": (12, "mean generated tokens of a decoding record (captions ~25, answers ~3-5)"),
}


@dataclass(frozen=True)
class Flops:
    """FLOPs at paper size (forward unless named otherwise)."""

    encoder_early: float  # one 1280x720 frame through the Wan VAE + DiT up to block 20
    encoder_full: float  # the same through all 30 blocks and the head
    vae: float  # the VAE encoder's share of either
    vision: float  # SigLIP (26 layers) over 32 frames
    projector: float  # mlp2x_gelu over 32 x 729 patches
    llm: float  # Qwen2-7B body over the sequence
    head_full: float  # LM head over every position
    head_answer: float  # LM head over the answer tokens
    weight_bytes: float  # bf16 bytes of the VEGA-3D weights (one decoding step reads them all)


def count_flops(frames: int, tokens: int, answer_tokens: int) -> Flops:
    """Measure the FLOPs of the paper-size modules on the meta device (``frames`` per sample, ``tokens`` long)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vega3d.config import load_config
    from vega3d.generative.registry import build_encoder
    from vega3d.model.configuration import build_hf_config
    from vega3d.model.modeling_vega3d import Vega3DModel

    def measure(run) -> float:
        with FlopCounterMode(display=False) as counter:
            run()
        return float(counter.get_total_flops())

    cfg = load_config("paper", ["generative.resolution=[1280,720]", f"data.frames_upbound={frames}"])
    encoder = build_encoder(cfg.generative, cfg.model.pooled_grid, "meta")
    frame = torch.zeros(1, 3, 720, 1280, device="meta")
    encoder.early_exit = True
    early = measure(lambda: encoder.encode(frame, "scene0000_00", [0]))
    encoder.early_exit = False
    full = measure(lambda: encoder.encode(frame, "scene0000_00", [0]))
    vae = measure(lambda: encoder.latents(encoder.preprocess(frame)))
    with torch.device("meta"):
        model = Vega3DModel(build_hf_config(cfg.model, encoder.channels))
    size, dim = cfg.model.vision.image_size, cfg.model.llm.hidden_size
    pixels = torch.zeros(cfg.data.frames_upbound, 3, size, size, device="meta")
    patches = torch.zeros(cfg.data.frames_upbound, cfg.model.vision.grid**2, cfg.model.vision.hidden_size,
                          device="meta")
    hidden = torch.zeros(1, tokens, dim, device="meta")
    body = model.language_model.model
    positions = torch.arange(tokens, device="meta")[None]

    def llm() -> None:  # the decoder layers and the final norm (the mask builder needs real values: causal SDPA)
        state, rotary = hidden, body.rotary_emb(hidden, positions)
        for layer in body.layers:
            out = layer(state, attention_mask=None, position_ids=positions, position_embeddings=rotary)
            state = out[0] if isinstance(out, tuple) else out
        body.norm(state)

    with torch.no_grad():
        return Flops(
            encoder_early=early, encoder_full=full, vae=vae,
            vision=measure(lambda: model.vision_tower(pixel_values=pixels)),
            projector=measure(lambda: model.mm_projector(patches)),
            llm=measure(llm),
            head_full=measure(lambda: model.language_model.lm_head(hidden)),
            head_answer=measure(lambda: model.language_model.lm_head(hidden[:, :answer_tokens])),
            weight_bytes=2.0 * sum(p.numel() for p in model.parameters()),
        )


def reproduction_rows(flops: Flops, a: dict[str, float]) -> list[tuple[str, float, float, str]]:
    """(stage, released GPU-hours, ours GPU-hours, how) of each stage of one reproduction."""

    def hours(total_flops: float, mfu: float) -> float:
        return total_flops / (a["peak_tflops"] * 1e12 * mfu) / 3600

    frames = a["frames"]
    dit_full = flops.encoder_full - flops.vae
    ours_frame_seconds = (flops.vae + a["early_exit_ratio"] * dit_full) / (a["peak_tflops"] * 1e12 * a["mfu_infer"])
    released_frame = hours(flops.encoder_full, a["mfu_infer"])  # GPU-hours of one frame, full DiT
    # gradient checkpointing: forward + recomputed forward + backward (2x) = 4 forwards for the towers
    step_common = 4 * (flops.vision + flops.llm) + 3 * flops.projector
    rows = [
        ("extract features", 0.0, a["scenes"] * frames * ours_frame_seconds / 3600,
         "ours: scenes x frames x (VAE + early_exit_ratio x full DiT) / (peak x mfu_infer); released: none"),
        ("train: generative features", a["online_recompute"] * a["train_records"] * frames * released_frame, 0.0,
         "released: online_recompute x train_records x frames x full encoder / (peak x mfu_infer); ours: read from "
         "the store"),
        ("train: VEGA-3D step", hours(a["train_records"] * (step_common + 3 * flops.head_full), a["mfu_train"]),
         hours(a["train_records"] * (step_common + 3 * flops.head_answer), a["mfu_train"]),
         "train_records x (4 (vision + llm) + 3 projector + 3 LM head) / (peak x mfu_train); LM head over every "
         "position (released) or the answer tokens (ours)"),
        ("eval: generative features", a["online_recompute"] * a["eval_records"] * frames * released_frame, 0.0,
         "released: online_recompute x eval_records x frames x full encoder; ours: read from the store"),
        ("eval: prefill", hours(a["eval_records"] * (flops.vision + flops.projector + flops.llm), a["mfu_infer"]),
         hours(a["eval_records"] * (flops.vision + flops.projector + flops.llm), a["mfu_infer"]),
         "eval_records x (vision + projector + llm) / (peak x mfu_infer): compute-bound, batch-independent"),
    ]
    step_seconds = flops.weight_bytes / (a["hbm_tbs"] * 1e12 * a["decode_efficiency"])  # one batch-1 token
    decode_b1 = a["decode_records"] * a["decode_tokens"] * step_seconds / 3600
    rows.append(("eval: decoding", decode_b1, decode_b1 / a["decode_speedup_b8"],
                 "decode_records x decode_tokens x weight bytes / (hbm x decode_efficiency); ours / "
                 "decode_speedup_b8"))
    return rows


def render(flops: Flops, a: dict[str, float], rows: list[tuple[str, float, float, str]]) -> str:
    """The assumptions, the FLOP counts and the cost table as text."""
    lines = ["Assumptions (override with --set NAME=VALUE):"]
    lines += [f"  {name} = {a[name]:g}  # {ASSUMPTIONS[name][1]}" for name in ASSUMPTIONS]
    lines.append("FLOPs at paper size (torch FlopCounterMode on the meta device):")
    lines += [f"  {name} = {getattr(flops, name):.6e}" for name in Flops.__dataclass_fields__]
    lines.append(f"{'stage':28s} {'released GPU-h':>15s} {'ours GPU-h':>12s}  how")
    for stage, released, ours, how in rows:
        lines.append(f"{stage:28s} {released:15.1f} {ours:12.1f}  {how}")
    released_total, ours_total = sum(r[1] for r in rows), sum(r[2] for r in rows)
    lines.append(f"{'total':28s} {released_total:15.1f} {ours_total:12.1f}")
    lines.append(f"released / ours = {released_total / ours_total:.2f}x")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    """Parse --set overrides, count FLOPs, print and return the report."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="NAME=VALUE",
                        help=f"override an assumption: {', '.join(ASSUMPTIONS)}")
    args = parser.parse_args(argv)
    values = {name: value for name, (value, _) in ASSUMPTIONS.items()}
    for item in args.overrides:
        name, _, value = item.partition("=")
        if name not in values:
            parser.error(f"--set {item}: unknown assumption {name!r}; choose from {list(values)}")
        values[name] = float(value)
    tokens = int(values["frames"]) * 14 * 15 + int(values["text_tokens"])
    flops = count_flops(int(values["frames"]), tokens, int(values["answer_tokens"]))
    report = render(flops, values, reproduction_rows(flops, values))
    print(report)
    return report


if __name__ == "__main__":
    main()
