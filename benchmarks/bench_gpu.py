"""One-shot GPU check at the real sizes with random weights (nothing downloaded), under 8 minutes on one H100.

Rows, measured side by side in one run:
1. train: the paper-size VEGA-3D (Qwen2-7B + SigLIP so400m + the Wan-width generative projector) forward +
   backward in bf16 with gradient checkpointing at 32 frames (offline features as input): tokens/s, MFU (model
   FLOPs = 3 x the forward counted by torch's FlopCounterMode, over the card's bf16 dense peak), peak memory;
2. extract: Wan2.1-T2V-1.3B encoding 1280x720 frames (VAE + DiT) with the early exit at block 20 vs the full
   DiT (30 blocks + head): frames/s each and the ratio;
3. decode: greedy evaluation decoding after a 32-frame prompt at batch 1 vs batch 8 (rows of one scene, as an
   evaluation batch is): new tokens/s each (prefill excluded: time(n tokens) - time(1 token)) and the ratio.
``--size tiny --device cpu`` runs the same code on the tiny preset's widths in seconds (the test suite does).

    .venv/bin/python benchmarks/bench_gpu.py [--device cuda] [--size paper] [--steps 3] [--peak-tflops 989]
"""

from __future__ import annotations

import argparse
import os
import resource
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# bf16 dense peak TFLOP/s by a substring of torch.cuda.get_device_name()
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0}
IMAGE, GROUND, COORD = 0, 1, 2  # special token ids of the random vocabulary (no tokenizer needed)


@dataclass(frozen=True)
class Size:
    """The shapes of one run."""

    preset: str
    frames: int
    text_tokens: int
    answer_tokens: int
    resolution: tuple[int, int]  # Wan input (width, height)
    extract_frames: int
    new_tokens: int


SIZES = {
    "paper": Size("paper", 32, 256, 16, (1280, 720), 4, 32),
    "tiny": Size("tiny", 8, 32, 8, (64, 64), 2, 6),
}


@dataclass(frozen=True)
class Row:
    """One printed measurement."""

    name: str
    value: float | None
    unit: str
    note: str = ""


def synchronize(device) -> None:
    """Wait for the device (CUDA kernels are asynchronous)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)


def best_seconds(func: Callable[[], object], device, rounds: int) -> float:
    """Best wall time of ``func`` over ``rounds`` calls after one warm-up call."""
    func()
    synchronize(device)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        func()
        synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best


def peak_tflops(device, override: float | None) -> float | None:
    """The card's bf16 dense peak (None on CPU unless given)."""
    import torch

    if override:
        return override
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in name), None)


def build_model(size: Size, device, dtype):
    """Random VEGA-3D of the preset's widths, with a Wan-width generative projector, on ``device``."""
    import torch

    from vega3d.config import load_config
    from vega3d.model.configuration import build_hf_config
    from vega3d.model.modeling_vega3d import Vega3DModel

    cfg = load_config(size.preset, [f"data.frames_upbound={size.frames}"])
    channels = 1536 if size.preset == "paper" else 32
    torch.manual_seed(0)
    with torch.device(device):
        model = Vega3DModel(build_hf_config(cfg.model, channels, {"image": IMAGE, "ground": GROUND, "coord": COORD}))
    return model.to(dtype), cfg


def model_inputs(model, size: Size, device, dtype, batch: int = 1, labels: bool = True) -> dict:
    """One scene's random frames shared by ``batch`` rows (the same tensor objects), and prompts."""
    import torch

    image, grid = model.config.vision_config.image_size, model.config.pooled_grid
    scene = {
        "pixel_values": torch.randn(size.frames, 3, image, image, device=device, dtype=dtype),
        "world_coords": torch.rand(size.frames, image, image, 3, device=device) * 4.0,
        "coord_valid": torch.ones(size.frames, image, image, dtype=torch.bool, device=device),
        "generative_features": torch.randn(size.frames, model.config.generative_channels, grid, grid,
                                           device=device, dtype=dtype),
    }
    vocab = model.config.text_config.vocab_size
    ids = torch.randint(3, vocab, (batch, size.text_tokens), device=device)
    ids[:, 4] = IMAGE
    inputs = {key: [value] * batch for key, value in scene.items()}
    inputs.update(input_ids=ids, attention_mask=torch.ones_like(ids))
    if labels:
        target = torch.full_like(ids, -100)
        target[:, -size.answer_tokens:] = ids[:, -size.answer_tokens:]
        inputs["labels"] = target
    return inputs


def bench_train(model, size: Size, device, steps: int, peak: float | None) -> list[Row]:
    """Forward + backward with gradient checkpointing: tokens/s, MFU, peak memory."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from vega3d.model.modeling_vega3d import enable_gradient_checkpointing

    inputs = model_inputs(model, size, device, next(model.parameters()).dtype)
    model.train()
    enable_gradient_checkpointing(model)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        out = model(**inputs, return_logits=False)
    tokens = out.attention_mask.shape[1]
    model_flops = 3.0 * counter.get_total_flops()  # forward + backward, recompute not counted (MFU convention)

    def step() -> None:
        model(**inputs, return_logits=False).loss.backward()
        model.zero_grad(set_to_none=False)  # keep the gradient buffers: they belong to the step's memory

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    seconds = best_seconds(step, device, steps)
    if device.type == "cuda":
        memory, how = torch.cuda.max_memory_allocated(device) / 1024**3, "CUDA max allocated"
    else:
        memory, how = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2, "process max RSS"
    mfu = model_flops / seconds / (peak * 1e12) if peak else None
    model.zero_grad(set_to_none=True)
    return [
        Row("train tokens/s", tokens / seconds, "tokens/s", f"{tokens} tokens, {size.frames} frames, {str(inputs['pixel_values'][0].dtype)[6:]} + ckpt"),
        Row("train MFU", mfu, "of peak", f"{model_flops / 1e12:.4g} TFLOP/step; peak {peak or 'unknown'} TFLOP/s"),
        Row("train peak memory", memory, "GiB", how),
    ]


def build_wan(size: Size, device, dtype):
    """Random Wan2.1-T2V encoder: the shipped 1.3B config (paper) or a tiny-width 30-block one."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    from vega3d.config import GenerativeConfig
    from vega3d.generative.wan import WanEncoder, meta_config_dir

    torch.manual_seed(0)
    with torch.device(device):
        if size.preset == "paper":
            folder = meta_config_dir(Path("/nonexistent"), "t2v", None)  # the shipped paper config
            transformer = WanTransformer3DModel.from_config(
                WanTransformer3DModel.load_config(str(folder), subfolder="transformer"))
            vae = AutoencoderKLWan.from_config(AutoencoderKLWan.load_config(str(folder), subfolder="vae"))
        else:
            from vega3d.testing.tiny_generative import TINY_WAN_TRANSFORMER, TINY_WAN_VAE

            transformer = WanTransformer3DModel(**dict(TINY_WAN_TRANSFORMER, num_layers=30))
            vae = AutoencoderKLWan(**TINY_WAN_VAE)
    transformer, vae = transformer.to(dtype).eval(), vae.to(dtype).eval()
    text = torch.randn(512, transformer.config.text_dim, device=device)
    cfg = GenerativeConfig(block=20, resolution=size.resolution)
    return WanEncoder("wan_t2v", transformer, vae, text, cfg, 14, device, "random")


def bench_extract(size: Size, device, dtype, rounds: int) -> list[Row]:
    """Frames/s of the encoder with the early exit and with the full DiT."""
    import torch

    encoder = build_wan(size, device, dtype)
    width, height = size.resolution
    frames = torch.rand(size.extract_frames, 3, height, width, device=device)
    ids = list(range(size.extract_frames))
    seconds = {}
    for early in (True, False):
        encoder.early_exit = early
        seconds[early] = best_seconds(lambda: encoder.encode(frames, "scene0000_00", ids), device, rounds)
    n = size.extract_frames
    return [
        Row("extract early exit frames/s", n / seconds[True], "frames/s", f"{width}x{height}, block 20 of 30"),
        Row("extract full DiT frames/s", n / seconds[False], "frames/s", "30 blocks + head"),
        Row("extract early / full time", seconds[True] / seconds[False], "ratio", "VAE included"),
    ]


def bench_decode(model, size: Size, device, rounds: int) -> list[Row]:
    """New tokens/s of greedy decoding at batch 1 and 8 (prefill excluded)."""
    model.eval()
    rates = {}
    for batch in (1, 8):
        inputs = model_inputs(model, size, device, next(model.parameters()).dtype, batch, labels=False)

        def generate(count: int, inputs: dict = inputs) -> None:
            model.generate_greedy(**inputs, eos_token_id=-1, pad_token_id=0, max_new_tokens=count)  # never stops

        full = best_seconds(lambda: generate(size.new_tokens), device, rounds)
        prefill = best_seconds(lambda: generate(1), device, rounds)
        rates[batch] = batch * (size.new_tokens - 1) / max(full - prefill, 1e-9)
    return [
        Row("decode batch 1 tokens/s", rates[1], "tokens/s", f"{size.new_tokens} new tokens after the prompt"),
        Row("decode batch 8 tokens/s", rates[8], "tokens/s", "8 rows of one scene"),
        Row("decode batch 8 / batch 1", rates[8] / rates[1], "ratio", ""),
    ]


def render(rows: list[Row], device_name: str) -> str:
    """The rows as a Markdown table."""
    lines = [f"device: {device_name}", "", "| measurement | value | unit | note |", "|---|---|---|---|"]
    for row in rows:
        value = "n/a" if row.value is None else f"{row.value:.4g}"
        lines.append(f"| {row.name} | {value} | {row.unit} | {row.note} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[Row]:
    """Run every benchmark, print the table and return the rows."""
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", choices=sorted(SIZES), default="paper")
    parser.add_argument("--steps", type=int, default=3, help="timed rounds of each measurement (best kept)")
    parser.add_argument("--peak-tflops", type=float, default=None, help="bf16 dense peak of the card")
    parser.add_argument("--dtype", choices=["bf16", "fp32"], default=None,
                        help="weights and activations (default: bf16 on CUDA, fp32 on CPU where bf16 is slow)")
    args = parser.parse_args(argv)
    device, size = torch.device(args.device), SIZES[args.size]
    dtype = torch.bfloat16 if (args.dtype or ("bf16" if device.type == "cuda" else "fp32")) == "bf16" else torch.float32
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    model, _ = build_model(size, device, dtype)
    rows = bench_train(model, size, device, args.steps, peak_tflops(device, args.peak_tflops))
    rows += bench_decode(model, size, device, args.steps)
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
    rows += bench_extract(size, device, dtype, args.steps)
    print(render(rows, name))
    return rows


if __name__ == "__main__":
    main()
