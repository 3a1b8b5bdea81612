"""Cost of the VEGA-3D additions in a training step, measured side by side in one run.

For each size (``tiny`` preset, and ``medium``: a wider LLM where it dominates, as at paper scale):
  1. full step: forward + backward of VEGA-3D (generative projector, token_gated fusion, sin3d,
     grounding head on one of the two samples) vs the baseline (no generative branch, no sin3d,
     the grounding sample trained as plain LM), interleaved repeats, medians;
  2. split of the VEGA-3D step: vision (SigLIP + projector), generative projector + fusion (+ sin3d),
     LLM, grounding head, each timed forward + backward in isolation on the same inputs.
Times are process CPU time with one torch thread (robust on a shared CPU). Also prints a FLOP
estimate of the additions at paper size. Ratios, not absolute targets:
    .venv/bin/python benchmarks/bench_model.py [--repeats 5] [--sizes tiny,medium] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

from vega3d.config import ModelConfig, load_config
from vega3d.model.configuration import build_hf_config
from vega3d.model.grounding import infonce_loss, object_features
from vega3d.model.modeling_vega3d import Vega3DModel

IMAGE, GROUND = 3, 4
FRAMES = 4
GEN_CHANNELS = 64


def model_config(size: str, **update) -> ModelConfig:
    cfg = load_config("tiny").model
    if size == "medium":
        cfg = cfg.model_copy(update={
            "vision": cfg.vision.model_copy(update={"hidden_size": 256, "intermediate_size": 1024,
                                                   "num_hidden_layers": 4, "num_attention_heads": 4,
                                                   "image_size": 224}),
            "llm": cfg.llm.model_copy(update={"hidden_size": 1024, "intermediate_size": 2816,
                                             "num_hidden_layers": 4, "num_attention_heads": 16,
                                             "num_key_value_heads": 4, "vocab_size": 8192}),
            "pooled_grid": 8,
        })
    return cfg.model_copy(update=update)


def build(size: str, vega: bool) -> Vega3DModel:
    torch.manual_seed(0)
    cfg = model_config(size, position_encoding="avg-discrete-sin3d" if vega else "none")
    ids = {"image": IMAGE, "ground": GROUND, "coord": 5}
    return Vega3DModel(build_hf_config(cfg, GEN_CHANNELS if vega else 0, ids)).train()


def batch(model: Vega3DModel, vega: bool) -> dict:
    """Two samples of FRAMES frames, 64 text tokens each; sample 1 is a grounding sample (VEGA-3D)."""
    gen = torch.Generator().manual_seed(0)
    size, g = model.config.vision_config.image_size, model.config.pooled_grid
    text = torch.randint(10, 200, (2, 64), generator=gen)
    text[:, 8] = IMAGE
    text[1, -2] = GROUND
    labels = text.clone()
    labels[:, :40] = -100
    labels[1] = -100  # the grounding sample trains no LM tokens, in both variants: equal LLM work
    out = {
        "input_ids": text, "attention_mask": torch.ones_like(text), "labels": labels,
        "pixel_values": [torch.randn(FRAMES, 3, size, size, generator=gen) for _ in range(2)],
        "world_coords": [torch.rand(FRAMES, size, size, 3, generator=gen) * 4 for _ in range(2)],
        "coord_valid": [torch.ones(FRAMES, size, size, dtype=torch.bool) for _ in range(2)],
    }
    if vega:
        out["generative_features"] = [torch.randn(FRAMES, GEN_CHANNELS, g, g, generator=gen) for _ in range(2)]
        out["proposals"] = [None, torch.tensor([[1.0, 1.0, 1.0, 2.0, 2.0, 2.0]] * 8)]
        out["ground_positives"] = [None, torch.tensor([True] + [False] * 7)]
    return out


def timed(fn: Callable[[], None]) -> float:
    """CPU seconds of this process running ``fn``: with one intra-op thread this is the compute time,
    not inflated by other processes competing for the cores (wall time on a shared box is mostly queueing)."""
    start = time.process_time()
    fn()
    return time.process_time() - start


def step(model: Vega3DModel, inputs: dict) -> Callable[[], None]:
    def run() -> None:
        model.zero_grad(set_to_none=True)
        model(**inputs, return_logits=False).loss.backward()
    return run


def split(model: Vega3DModel, inputs: dict) -> dict[str, Callable[[], None]]:
    """Forward + backward of each part alone, on the inputs the full step gives it."""
    pixels = torch.cat(inputs["pixel_values"])
    with torch.no_grad():
        feats = model.encode_frames(pixels)
        pooled = model.pool(feats)
        visual, _ = model._visual_batch(inputs["pixel_values"], inputs["world_coords"], inputs["coord_valid"],
                                        inputs["generative_features"])
        seq = model._build_sequence(inputs["input_ids"], inputs["attention_mask"], inputs["labels"], visual, None,
                                    [False, True])
    gen = torch.cat(inputs["generative_features"])
    world, valid = torch.cat(inputs["world_coords"]), torch.cat(inputs["coord_valid"])
    hidden = torch.randn(model.config.hidden_size)

    def vision() -> None:
        model.encode_frames(pixels).sum().backward()

    def additions() -> None:
        leaf = pooled.detach().requires_grad_()
        fused = model.fuse(leaf, gen) + model.position_encoding(world, valid).to(leaf.dtype)
        fused.sum().backward()

    def llm() -> None:
        embeds = seq.embeds.detach().requires_grad_()
        out = model.language_model.model(inputs_embeds=embeds, attention_mask=seq.attention_mask,
                                         position_ids=seq.position_ids)
        chosen = seq.labels[:, 1:] != -100
        logits = model.language_model.lm_head(out.last_hidden_state[:, :-1][chosen])
        torch.nn.functional.cross_entropy(logits, seq.labels[:, 1:][chosen]).backward()

    def grounding() -> None:
        leaf = feats[FRAMES:].detach().requires_grad_()
        objects = object_features(leaf, inputs["world_coords"][1], inputs["coord_valid"][1], inputs["proposals"][1],
                                  model.config.vision_config.patch_size)
        scores = model.ground_head(objects, hidden)
        infonce_loss(scores, inputs["ground_positives"][1], 0.07).backward()

    return {"vision": vision, "generative projector + fusion + sin3d": additions, "LLM": llm,
            "grounding": grounding}


def bench(size: str, repeats: int) -> None:
    vega, base = build(size, True), build(size, False)
    vega_in, base_in = batch(vega, True), batch(base, False)
    params = {n: sum(p.numel() for p in m.parameters()) for n, m in (("vega", vega), ("base", base))}
    print(f"\n== {size}: LLM width {vega.config.hidden_size}, {vega.config.text_config.num_hidden_layers} layers, "
          f"{FRAMES} frames x 2 samples, sequence {vega_in['input_ids'].shape[1] - 1 + FRAMES * vega.config.tokens_per_frame}"
          f" tokens; parameters {params['vega'] / 1e6:.2f}M vs baseline {params['base'] / 1e6:.2f}M")
    runs = {"vega": step(vega, vega_in), "base": step(base, base_in)}
    for fn in runs.values():
        fn()  # warm-up
    times: dict[str, list[float]] = {"vega": [], "base": []}
    for index in range(repeats):
        order = ("vega", "base") if index % 2 == 0 else ("base", "vega")  # ABBA: drift and order effects cancel
        for name in order:
            times[name].append(timed(runs[name]))
    t_vega, t_base = statistics.median(times["vega"]), statistics.median(times["base"])
    ratio = statistics.median(v / b for v, b in zip(times["vega"], times["base"], strict=True))  # per pair
    print(f"step fwd+bwd, CPU time (median of {repeats}): VEGA-3D {t_vega * 1e3:.1f} ms, baseline {t_base * 1e3:.1f} ms; "
          f"median paired ratio {ratio:.3f}x -> additions = {1 - 1 / ratio:.1%} of the VEGA-3D step")
    parts = split(vega, vega_in)
    for fn in parts.values():
        fn()
    part_times = {name: statistics.median(timed(fn) for _ in range(repeats)) for name, fn in parts.items()}
    total = sum(part_times.values())
    print("split of the VEGA-3D step (each part fwd+bwd alone): " + ", ".join(
        f"{name} {t * 1e3:.1f} ms ({t / total:.1%})" for name, t in part_times.items()))


def paper_flops() -> None:
    """Forward+backward FLOPs (6 x params x tokens for matmuls) of the additions at paper size."""
    d, frames, g, c = 3584, 32, 14, 1536
    tokens = frames * g * (g + 1) + 150  # visual + text
    llm = 6 * 7.07e9 * tokens  # non-embedding parameters of Qwen2-7B (+ attention, ignored: favours additions)
    vision = 6 * 0.40e9 * frames * 729
    additions = 6 * (c * d + d * d + 2 * d) * frames * g * g + 6 * 2 * (2 * d * d) * 51
    print(f"\n== paper size (FLOP estimate): additions {additions / 1e12:.2f} TFLOP vs LLM {llm / 1e12:.1f} TFLOP "
          f"and vision {vision / 1e12:.1f} TFLOP -> additions = {additions / (llm + vision + additions):.2%} of the step")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="timed repetitions per variant (median reported)")
    parser.add_argument("--sizes", default="tiny,medium", help="comma-separated: tiny, medium")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (1 keeps timings stable on a shared CPU)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    for size in args.sizes.split(","):
        bench(size.strip(), args.repeats)
    paper_flops()


if __name__ == "__main__":
    main()
