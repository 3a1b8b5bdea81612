"""World-coordinate maps + voxel sets for 32 frames of 640x480, against a plain numpy pass over the same bytes.

The bound: read the uint16 depth [V, H, W] and write a float32 [V, H, W, 3] array with one elementwise op
(memory traffic of the output we must produce). Prints frames/s of both and their ratio (target: <= 4x).

    .venv/bin/python benchmarks/bench_prep.py [--frames 32] [--repeats 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

from vega3d.config import SyntheticConfig
from vega3d.data.frames import load_scene_frames, scene_frame_ids
from vega3d.data.geometry import frame_voxel_sets, world_coordinates, world_coordinates_and_voxels
from vega3d.data.layout import DataLayout
from vega3d.testing.synthetic import scene_truth, write_scene


def best_of(func, repeats: int) -> float:
    """Fastest wall time of ``repeats`` calls (the least disturbed by other processes)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=32, help="frames per pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats (best is reported)")
    args = parser.parse_args()

    cfg = SyntheticConfig(frames=args.frames, width=640, height=480)
    with tempfile.TemporaryDirectory() as folder:
        layout = DataLayout(folder)
        truth = scene_truth("scene0000_00", "train", 0, cfg)
        write_scene(layout, truth, cfg, seed=0)
        frames = load_scene_frames(layout, truth.scene, scene_frame_ids(layout, truth.scene))
    depth_mm = np.rint(frames.depth * 1000).astype(np.uint16)  # [V, H, W] as stored on disk
    scale = np.array([1e-3, 2e-3, 3e-3], dtype=np.float32)
    out = np.empty(depth_mm.shape + (3,), dtype=np.float32)

    def bound() -> None:
        np.multiply(depth_mm[..., None], scale, out=out)

    def ours() -> None:
        world_coordinates_and_voxels(frames.depth, frames.depth_intrinsic, frames.cam2world, frames.axis_align, 0.1)

    def separate() -> None:
        xyz, valid = world_coordinates(frames.depth, frames.depth_intrinsic, frames.cam2world, frames.axis_align)
        frame_voxel_sets(xyz, valid, 0.1)

    def maps_only() -> None:
        world_coordinates(frames.depth, frames.depth_intrinsic, frames.cam2world, frames.axis_align)

    t_bound, t_ours, t_maps, t_separate = (best_of(f, args.repeats) for f in (bound, ours, maps_only, separate))
    num = len(depth_mm)
    print(f"frames: {num} x {depth_mm.shape[2]}x{depth_mm.shape[1]}, output {out.nbytes / 2**20:.0f} MiB float32")
    print(f"numpy bound (uint16 -> float32 [.,3], one op): {num / t_bound:8.1f} frames/s  {t_bound * 1e3:7.1f} ms")
    print(f"world coordinates only:                        {num / t_maps:8.1f} frames/s  {t_maps * 1e3:7.1f} ms"
          f"  ratio {t_maps / t_bound:.2f}x")
    print(f"world coordinates + voxel sets:                {num / t_ours:8.1f} frames/s  {t_ours * 1e3:7.1f} ms"
          f"  ratio {t_ours / t_bound:.2f}x (target <= 4x)")
    print(f"  (two passes: world_coordinates, then frame_voxel_sets: {num / t_separate:8.1f} frames/s"
          f"  ratio {t_separate / t_bound:.2f}x)")


if __name__ == "__main__":
    main()
