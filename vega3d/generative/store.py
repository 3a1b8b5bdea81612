"""Offline feature store: precomputed ``[V, C, g, g]`` features as safetensors under a storage URI.

Layout (a local folder or ``s3://bucket/prefix``, through ``vega3d.storage``)::

    <root>/<feature_id>/manifest.json                     the configuration (FeatureSpec) as JSON
    <root>/<feature_id>/<scene>/<digest>.safetensors      one frame list of one scene

* A **feature id** names a configuration: ``<encoder>-<12 hex>`` hashed from the encoder id, the weight
  fingerprint, timestep, block, resolution, grid, seed, crop and shift (everything but scene and frames).
  Training and evaluation read by feature id (``generative.feature_id``).
* A **key** ``<feature_id>/<scene>/<digest>`` adds the scene and the frame list (digest = sha256 of the
  feature id, scene and frame ids); different frame lists give different keys.
* Each file holds one tensor ``features`` [V, C, g, g] and string metadata: ``key``, ``scene``,
  ``frame_ids`` (JSON list), ``shape`` (JSON list), ``dtype`` and ``checksum`` (sha256 of the tensor bytes).
  ``get`` treats a file that fails to load, whose metadata key differs, or whose checksum does not match as
  missing (it is deleted and logged), so a corrupted or truncated file is re-extracted, never used.
* Writes are atomic (temporary name + rename locally; one PUT on object stores).

Offline-only ids (``vggt``, ``seva``, ``vmem``) are produced by their own code: write a manifest with
``encoder`` set to the id, ``channels`` to its C (2048, 1280, 1280) and ``grid`` (14), then one file per
(scene, frame list) with ``FeatureStore.put(feature_key(feature_id, scene, frame_ids), tensor, ...)``.
``validate_feature_set`` (``vega3d extract --validate``) checks every file against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import torch

from vega3d import storage
from vega3d.generative.registry import OFFLINE_ONLY_IDS, PAPER_CHANNELS

logger = logging.getLogger(__name__)

FEATURES = "features"
MANIFEST = "manifest.json"


class FeatureStoreError(ValueError):
    """A feature set or feature file does not match its manifest."""


@dataclass(frozen=True)
class FeatureSpec:
    """Everything that determines features except the scene and the frame list."""

    encoder: str
    fingerprint: str
    timestep: int
    block: int
    resolution: tuple[int, int]
    grid: int
    seed: int
    crop: str = "same"
    shift: float = 5.0
    channels: int = 0

    def identity(self) -> dict:
        """The fields hashed into the feature id (channels follow from them)."""
        data = asdict(self)
        data.pop("channels")
        data["resolution"] = list(self.resolution)
        return data

    @property
    def feature_id(self) -> str:
        """``<encoder>-<12 hex>`` of the configuration."""
        digest = hashlib.sha256(json.dumps(self.identity(), sort_keys=True).encode()).hexdigest()
        return f"{self.encoder}-{digest[:12]}"

    @classmethod
    def from_dict(cls, data: dict) -> FeatureSpec:
        return cls(**{**data, "resolution": tuple(data["resolution"])})


def feature_key(feature_id: str, scene: str, frame_ids: Sequence[int]) -> str:
    """Content key ``<feature_id>/<scene>/<digest>`` of one frame list of one scene."""
    payload = json.dumps([feature_id, scene, [int(f) for f in frame_ids]])
    return f"{feature_id}/{scene}/{hashlib.sha256(payload.encode()).hexdigest()[:32]}"


def tensor_checksum(tensor: torch.Tensor) -> str:
    """sha256 of the tensor's raw bytes (contiguous, CPU)."""
    data = tensor.detach().contiguous().cpu()
    return hashlib.sha256(data.view(torch.uint8).numpy().tobytes() if data.numel() else b"").hexdigest()


class FeatureStore:
    """Features under one root URI; ``get``/``put`` by key string."""

    def __init__(self, root: str) -> None:
        self.root = str(root)

    def path(self, key: str) -> str:
        return storage.join(self.root, f"{key}.safetensors")

    def manifest_path(self, feature_id: str) -> str:
        return storage.join(self.root, feature_id, MANIFEST)

    def write_manifest(self, spec: FeatureSpec) -> None:
        """Record the configuration of a feature id (idempotent; a different spec under the same id fails)."""
        existing = self.read_manifest(spec.feature_id)
        if existing is not None and existing != spec:
            raise FeatureStoreError(f"{self.manifest_path(spec.feature_id)}: holds {existing}, not {spec}")
        if existing is None:
            storage.write_json(self.manifest_path(spec.feature_id), asdict(spec), indent=2)

    def read_manifest(self, feature_id: str) -> FeatureSpec | None:
        """The configuration of a feature id, or None when it has no manifest."""
        path = self.manifest_path(feature_id)
        if not storage.exists(path):
            return None
        return FeatureSpec.from_dict(storage.read_json(path))

    def put(self, key: str, tensor: torch.Tensor, scene: str, frame_ids: Sequence[int]) -> None:
        """Write features [V, C, g, g] atomically with their key, frame ids and checksum."""
        tensor = tensor.detach().contiguous().cpu()
        if tensor.ndim != 4 or tensor.shape[0] != len(frame_ids):
            raise FeatureStoreError(f"{key}: features must be [V={len(frame_ids)}, C, g, g], got {tuple(tensor.shape)}")
        metadata = {
            "key": key,
            "scene": scene,
            "frame_ids": json.dumps([int(f) for f in frame_ids]),
            "shape": json.dumps(list(tensor.shape)),
            "dtype": str(tensor.dtype).removeprefix("torch."),
            "checksum": tensor_checksum(tensor),
        }
        storage.write_bytes(self.path(key), safetensors_bytes(FEATURES, tensor, metadata))

    def load(self, key: str) -> tuple[torch.Tensor, dict[str, str]]:
        """(features, metadata) of a key; FeatureStoreError when missing, unreadable or corrupted."""
        from safetensors.torch import load

        path = self.path(key)
        try:
            raw = storage.read_bytes(path)
        except FileNotFoundError as error:
            raise FeatureStoreError(f"{path}: missing") from error
        try:
            tensor = load(raw)[FEATURES]
            metadata = safetensors_metadata(raw)
        except Exception as error:  # noqa: BLE001 - any parse failure means a broken file
            raise FeatureStoreError(f"{path}: unreadable safetensors file ({error})") from error
        if metadata.get("key") != key:
            raise FeatureStoreError(f"{path}: holds key {metadata.get('key')!r}, expected {key!r}")
        if metadata.get("checksum") != tensor_checksum(tensor):
            raise FeatureStoreError(f"{path}: checksum mismatch (corrupted file)")
        return tensor, metadata

    def get(self, key: str) -> torch.Tensor | None:
        """Features of a key, or None when absent; a corrupted file is logged, deleted and reported absent."""
        if not storage.exists(self.path(key)):
            return None
        try:
            return self.load(key)[0]
        except FeatureStoreError as error:
            logger.warning("%s; deleting it so it is re-extracted", error)
            storage.remove(self.path(key))
            return None

    def keys(self, feature_id: str) -> list[str]:
        """Every key stored under a feature id."""
        keys = []
        for scene in storage.listdir(storage.join(self.root, feature_id)):
            if scene == MANIFEST:
                continue
            for name in storage.listdir(storage.join(self.root, feature_id, scene)):
                if name.endswith(".safetensors") and not name.startswith("."):
                    keys.append(f"{feature_id}/{scene}/{name[: -len('.safetensors')]}")
        return keys


SAFETENSORS_DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.float64: "F64"}


def safetensors_bytes(name: str, tensor: torch.Tensor, metadata: dict[str, str]) -> bytes:
    """One tensor + string metadata in the safetensors format, the same bytes for the same content.

    (safetensors' own ``save`` writes the metadata in hash-map order, which changes between processes; sorted
    keys make a file depend only on its content, so any sharding of an extraction writes identical files.)
    """
    if tensor.dtype not in SAFETENSORS_DTYPES:
        raise FeatureStoreError(f"features must be one of {sorted(map(str, SAFETENSORS_DTYPES))}, got {tensor.dtype}")
    data = tensor.detach().contiguous().cpu().reshape(-1).view(torch.uint8).numpy().tobytes()
    entry = {"dtype": SAFETENSORS_DTYPES[tensor.dtype], "shape": list(tensor.shape), "data_offsets": [0, len(data)]}
    header = json.dumps({"__metadata__": dict(sorted(metadata.items())), name: entry}, separators=(",", ":")).encode()
    header += b" " * (-len(header) % 8)  # the format aligns the data to 8 bytes
    return struct.pack("<Q", len(header)) + header + data


def safetensors_metadata(raw: bytes) -> dict[str, str]:
    """The string metadata of a safetensors byte string (8-byte little-endian header length, JSON header)."""
    (length,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + length]).get("__metadata__", {})


def validate_feature_set(store: FeatureStore, feature_id: str) -> int:
    """Check every file of a feature id against its manifest; returns the file count, raises on a bad one."""
    spec = store.read_manifest(feature_id)
    if spec is None:
        raise FeatureStoreError(f"{store.manifest_path(feature_id)}: missing; write the FeatureSpec manifest first")
    if spec.encoder in OFFLINE_ONLY_IDS and spec.channels != PAPER_CHANNELS[spec.encoder]:
        raise FeatureStoreError(
            f"{store.manifest_path(feature_id)}: {spec.encoder} features have C={PAPER_CHANNELS[spec.encoder]}, "
            f"manifest says {spec.channels}"
        )
    keys = store.keys(feature_id)
    for key in keys:
        tensor, metadata = store.load(key)
        frames = json.loads(metadata["frame_ids"])
        expected = (len(frames), spec.channels, spec.grid, spec.grid)
        if tuple(tensor.shape) != expected:
            raise FeatureStoreError(f"{store.path(key)}: shape {tuple(tensor.shape)}, expected {expected}")
        if feature_key(feature_id, metadata["scene"], frames) != key:
            raise FeatureStoreError(f"{store.path(key)}: file name does not match its scene and frame ids")
    return len(keys)
