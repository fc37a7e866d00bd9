"""Load pickles that may hold only numpy arrays and plain builtins.

A pickle can name any importable function and have it called while loading
(``os.system`` included), so :func:`load_allowed` resolves globals from a fixed
allow-list instead of importing them.
"""

from __future__ import annotations

import builtins
import codecs
import collections
import os
import pickle

import numpy as np

from metamap.errors import DataError

try:  # numpy >= 2
    from numpy._core import multiarray as _multiarray
    from numpy._core import numeric as _numeric
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _multiarray
    from numpy.core import numeric as _numeric


_BUILTINS = (
    "dict",
    "list",
    "tuple",
    "set",
    "frozenset",
    "int",
    "float",
    "complex",
    "bool",
    "str",
    "bytes",
    "bytearray",
)


def _allowed_globals() -> dict[tuple[str, str], object]:
    allowed: dict[tuple[str, str], object] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("_codecs", "encode"): codecs.encode,  # bytes in protocol 0-2 pickles written by Python 3
    }
    for core in ("numpy.core", "numpy._core"):
        allowed[(f"{core}.multiarray", "_reconstruct")] = _multiarray._reconstruct
        allowed[(f"{core}.multiarray", "scalar")] = _multiarray.scalar
        allowed[(f"{core}.numeric", "_frombuffer")] = _numeric._frombuffer  # protocol 5
    for name in _BUILTINS:
        allowed[("builtins", name)] = getattr(builtins, name)
    return allowed


_ALLOWED = _allowed_globals()
_MODULE_ALIASES = {"__builtin__": "builtins"}  # Python 2 pickles


class _AllowListUnpickler(pickle.Unpickler):
    def __init__(self, file, path: str) -> None:
        super().__init__(file, encoding="latin1")
        self._path = path

    def find_class(self, module: str, name: str) -> object:
        key = (_MODULE_ALIASES.get(module, module), name)
        if key not in _ALLOWED:
            raise DataError(
                f"{self._path}: the pickle asks for the global {module}.{name}, which is not allowed; "
                "expected only numpy arrays, numpy scalars and plain builtins (list, dict, str, ...)"
            )
        return _ALLOWED[key]


def load_allowed(path: str | os.PathLike) -> object:
    """Unpickle ``path`` allowing only numpy arrays, numpy scalars and plain builtins.

    Strings written by Python 2 (DCRNN's ``adj_mx.pkl``) are decoded as
    latin-1, which leaves pickles written by Python 3 unchanged.

    Raises:
        DataError: the file is missing, truncated or corrupt, or names a
            global outside the allow-list (the message names it).
    """
    try:
        with open(path, "rb") as file:
            return _AllowListUnpickler(file, str(path)).load()
    except DataError:
        raise
    except OSError as exc:
        raise DataError(f"{path}: expected a readable pickle file ({exc.strerror})") from exc
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError) as exc:
        raise DataError(f"{path}: expected a readable pickle, but it is truncated or corrupt ({exc!r})") from exc
