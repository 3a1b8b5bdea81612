"""ScanNet ``.sens`` files (raw RGB-D streams) and their export to ``posed_images``.

Format (ScanNet SensorData, version 4, little endian): uint32 version; uint64 name length + name; four
float32 4x4 matrices (colour intrinsic, colour extrinsic, depth intrinsic, depth extrinsic); int32 colour and
depth compression (colour 2 = jpeg, depth 1 = zlib uint16); uint32 colour width, height, depth width, height;
float32 depth shift (1000 = millimetres); uint64 frame count; then per frame: float32 4x4 camera-to-world,
uint64 colour and depth timestamps, uint64 colour and depth byte counts, the colour bytes and the depth bytes.

The reader seeks past frames it does not need, so exporting every 10th frame of a multi-GB file reads only
those frames. ``write_sens`` exists so the round trip can be tested without ScanNet.
"""

from __future__ import annotations

import io
import logging
import struct
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image

from vega3d.data import scannet
from vega3d.data.errors import DataFileError, require_file
from vega3d.data.layout import DataLayout
from vega3d.storage import atomic_local_path, write_bytes

logger = logging.getLogger(__name__)

SENS_VERSION = 4
COLOR_JPEG = 2
DEPTH_ZLIB = 1
_FRAME_HEADER = struct.Struct("<16f4Q")  # camera_to_world, timestamp_color, timestamp_depth, color/depth sizes


@dataclass
class SensHeader:
    """Stream-level metadata of a .sens file."""

    sensor_name: str
    intrinsic_color: np.ndarray  # [4, 4] float32
    extrinsic_color: np.ndarray  # [4, 4] float32
    intrinsic_depth: np.ndarray  # [4, 4] float32
    extrinsic_depth: np.ndarray  # [4, 4] float32
    color_width: int
    color_height: int
    depth_width: int
    depth_height: int
    depth_shift: float = 1000.0
    color_compression: int = COLOR_JPEG
    depth_compression: int = DEPTH_ZLIB
    num_frames: int = 0


@dataclass
class SensFrame:
    """One RGB-D frame: pose, timestamps (microseconds) and the compressed colour and depth bytes."""

    camera_to_world: np.ndarray  # [4, 4] float32
    timestamp_color: int
    timestamp_depth: int
    color_data: bytes
    depth_data: bytes

    def color(self) -> np.ndarray:
        """Decoded colour: uint8 [H, W, 3]."""
        with Image.open(io.BytesIO(self.color_data)) as image:
            return np.asarray(image.convert("RGB"))

    def depth(self, header: SensHeader) -> np.ndarray:
        """Decoded depth in sensor units (millimetres when depth_shift = 1000): uint16 [h, w]."""
        raw = zlib.decompress(self.depth_data) if header.depth_compression == DEPTH_ZLIB else self.depth_data
        return np.frombuffer(raw, dtype="<u2").reshape(header.depth_height, header.depth_width)


def _read_exact(handle: BinaryIO, size: int, path: Path) -> bytes:
    data = handle.read(size)
    if len(data) != size:
        raise DataFileError(path, "file ends early (truncated .sens)", "re-download the .sens file")
    return data


def _read_header(handle: BinaryIO, path: Path) -> SensHeader:
    (version,) = struct.unpack("<I", _read_exact(handle, 4, path))
    if version != SENS_VERSION:
        raise DataFileError(path, f"unsupported .sens version {version} (expected {SENS_VERSION})",
                            "use ScanNet's SensorData version 4 files")
    (name_length,) = struct.unpack("<Q", _read_exact(handle, 8, path))
    name = _read_exact(handle, name_length, path).decode("utf-8", errors="replace")
    matrices = np.frombuffer(_read_exact(handle, 4 * 64, path), dtype="<f4").reshape(4, 4, 4).copy()
    color_compression, depth_compression = struct.unpack("<ii", _read_exact(handle, 8, path))
    color_w, color_h, depth_w, depth_h = struct.unpack("<4I", _read_exact(handle, 16, path))
    (depth_shift,) = struct.unpack("<f", _read_exact(handle, 4, path))
    (num_frames,) = struct.unpack("<Q", _read_exact(handle, 8, path))
    if color_compression != COLOR_JPEG or depth_compression not in (0, DEPTH_ZLIB):
        raise DataFileError(path, f"unsupported compression (colour {color_compression}, depth {depth_compression})",
                            "only jpeg colour and raw/zlib depth are supported, as in ScanNet")
    return SensHeader(name, *matrices, color_w, color_h, depth_w, depth_h, float(depth_shift),
                      color_compression, depth_compression, int(num_frames))


class SensReader:
    """Sequential reader: ``with SensReader(path) as sens: for index, frame in sens.frames(stride=10): ...``."""

    def __init__(self, path: str | Path) -> None:
        self.path = require_file(path, fix="download the scene's .sens file from ScanNet")
        self._handle: BinaryIO | None = None
        self.header: SensHeader | None = None

    def __enter__(self) -> SensReader:
        self._handle = open(self.path, "rb")
        self.header = _read_header(self._handle, self.path)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._handle is not None:
            self._handle.close()

    def frames(self, stride: int = 1) -> Iterator[tuple[int, SensFrame]]:
        """(frame number, frame) for frames 0, stride, 2*stride, ...; other frames are skipped by seeking."""
        assert self._handle is not None and self.header is not None, "use SensReader as a context manager"
        for index in range(self.header.num_frames):
            values = _FRAME_HEADER.unpack(_read_exact(self._handle, _FRAME_HEADER.size, self.path))
            color_size, depth_size = values[18], values[19]
            if index % stride:
                self._handle.seek(color_size + depth_size, io.SEEK_CUR)
                continue
            color = _read_exact(self._handle, color_size, self.path)
            depth = _read_exact(self._handle, depth_size, self.path)
            pose = np.asarray(values[:16], dtype=np.float32).reshape(4, 4)
            yield index, SensFrame(pose, values[16], values[17], color, depth)


def encode_frame(rgb: np.ndarray, depth: np.ndarray, camera_to_world: np.ndarray, timestamp: int) -> SensFrame:
    """A frame as ScanNet stores it: JPEG colour (uint8 [H,W,3]), zlib uint16 depth ([h,w] sensor units)."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(buffer, "JPEG", quality=95)
    depth_bytes = zlib.compress(np.ascontiguousarray(depth, dtype="<u2").tobytes())
    return SensFrame(np.asarray(camera_to_world, dtype=np.float32), timestamp, timestamp, buffer.getvalue(), depth_bytes)


def write_sens(path: str | Path, header: SensHeader, frames: Sequence[SensFrame]) -> None:
    """Write a version-4 .sens file (the inverse of SensReader)."""
    name = header.sensor_name.encode("utf-8")
    parts = [struct.pack("<IQ", SENS_VERSION, len(name)), name]
    for matrix in (header.intrinsic_color, header.extrinsic_color, header.intrinsic_depth, header.extrinsic_depth):
        parts.append(np.asarray(matrix, dtype="<f4").reshape(16).tobytes())
    parts.append(struct.pack("<ii4IfQ", header.color_compression, header.depth_compression, header.color_width,
                             header.color_height, header.depth_width, header.depth_height, header.depth_shift,
                             len(frames)))
    for frame in frames:
        parts.append(_FRAME_HEADER.pack(*np.asarray(frame.camera_to_world, dtype=np.float32).reshape(16),
                                        frame.timestamp_color, frame.timestamp_depth, len(frame.color_data),
                                        len(frame.depth_data)))
        parts += [frame.color_data, frame.depth_data]
    with atomic_local_path(path) as tmp:
        Path(tmp).write_bytes(b"".join(parts))


def export_posed_images(sens_path: str | Path, layout: DataLayout, scene: str, stride: int = 10) -> list[int]:
    """Write every ``stride``-th frame of a .sens file into ``posed_images/<scene>`` (colour jpg as stored,
    uint16 mm depth png, pose txt) plus intrinsic.txt and depth_intrinsic.txt; returns the frame numbers.

    Frames whose pose is not finite (ScanNet marks lost tracking with -inf) are skipped with a warning.
    """
    written: list[int] = []
    with SensReader(sens_path) as sens:
        header = sens.header
        assert header is not None
        scannet.write_matrix(layout.intrinsic_path(scene), header.intrinsic_color)
        scannet.write_matrix(layout.depth_intrinsic_path(scene), header.intrinsic_depth)
        for index, frame in sens.frames(stride):
            if not np.isfinite(frame.camera_to_world).all():
                logger.warning("%s: frame %d has no valid pose; skipped", sens_path, index)
                continue
            depth = frame.depth(header)
            if header.depth_shift != 1000.0:
                depth = np.rint(depth.astype(np.float64) * (1000.0 / header.depth_shift)).astype(np.uint16)
            write_bytes(str(layout.color_path(scene, index)), frame.color_data)
            scannet.write_depth_mm(layout.depth_path(scene, index), depth)
            scannet.write_matrix(layout.pose_path(scene, index), frame.camera_to_world)
            written.append(index)
    return written
