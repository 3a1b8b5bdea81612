"""Restricted loading of third-party pickles (SPEC.md section 5).

Only plain containers (dict, list, tuple, set, frozenset), str, bytes, int, float, complex, bool, None and numpy
arrays, dtypes and scalars may be rebuilt. Any other global (``os.system``, ``builtins.eval``, a class...)
is refused before it is called, with an error naming the file and the global.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

from vega3d.data.errors import DataFileError, require_file

_BUILTINS = frozenset({"dict", "list", "tuple", "set", "frozenset", "str", "bytes", "bytearray", "int", "float",
                       "complex", "bool", "slice"})
_NUMPY = frozenset(
    {
        (module, name)
        for module in ("numpy.core.multiarray", "numpy._core.multiarray")
        for name in ("_reconstruct", "scalar")
    }
    | {(module, "_frombuffer") for module in ("numpy.core.numeric", "numpy._core.numeric")}
    | {("numpy", "ndarray"), ("numpy", "dtype")}
    | {("_codecs", "encode")}  # protocol 2 spells bytes as _codecs.encode(str, "latin1")
)


class UnsafePickleError(DataFileError):
    """A pickle asked for a global outside the allowed set."""


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: io.BufferedIOBase, source: str) -> None:
        super().__init__(file)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:
        allowed = (module in ("builtins", "__builtin__") and name in _BUILTINS) or (module, name) in _NUMPY
        # numpy scalar and dtype classes (numpy.float32, numpy.dtypes.Float32DType, ...) are plain data too.
        if not allowed and module in ("numpy", "numpy.dtypes"):
            import numpy as np

            candidate = getattr(np if module == "numpy" else np.dtypes, name, None)
            allowed = isinstance(candidate, type) and (
                issubclass(candidate, np.generic) or issubclass(candidate, np.dtype)
            )
        if not allowed:
            raise UnsafePickleError(
                self._source,
                f"refused to load global {module}.{name} (only plain containers and numpy arrays are allowed)",
                "the file may be malicious or written by another tool; re-create it from trusted sources",
            )
        return super().find_class(module, name)


def loads(data: bytes, source: str = "<bytes>") -> Any:
    """Unpickle bytes with the restricted loader; ``source`` names the origin in errors."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data), source).load()
    except UnsafePickleError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError) as error:
        raise DataFileError(source, f"not a readable pickle ({error})", "re-create the file") from None


def load(path: str | Path) -> Any:
    """Unpickle a file with the restricted loader (plain containers and numpy only)."""
    path = require_file(path)
    return loads(path.read_bytes(), str(path))
