"""Read pandas HDF5 files (``DataFrame.to_hdf``) without running code from them.

``pandas.read_hdf`` and PyTables unpickle while loading: object-dtype blocks
and object indices are stored as pickles (a ``VLArray`` of ``ObjectAtom``), and
PyTables unpickles every HDF5 attribute that looks like a pickle as soon as a
node is opened. A pickle can call any importable function, so a crafted
``.h5`` would run its payload before any check.

:func:`read_frame` opens the file with PyTables while its unpickler is
replaced by one that builds only plain data (None, numbers, strings, bytes,
lists, tuples, dicts, sets) and pandas date offsets (the ``freq`` of a
DatetimeIndex); any other pickled attribute is refused with a
:class:`~metamap.errors.DataError` naming the node and the attribute. It then
reads only plain numeric or string arrays (never a ``VLArray``) and rebuilds
the DataFrame as pandas does: the ``fixed`` layout (``axis0`` columns,
``axis1`` index, ``block{i}_items`` / ``block{i}_values``) and the simple
``table`` layout (one ``table`` node with an ``index`` column and
``values_block_{i}`` columns, no data columns).
"""

from __future__ import annotations

import codecs
import collections
import contextlib
import io
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import tables
import tables.atom
import tables.attributeset
from pandas._libs.tslibs import offsets as _offsets_lib
from pandas.tseries import offsets as _offsets_api

from metamap.errors import DataError, MetamapError, one_line

PathLike = str | os.PathLike

_PLAIN_GLOBALS = {
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "complex"): complex,
    ("__builtin__", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("_codecs", "encode"): codecs.encode,  # bytes in protocol 0-2 pickles written by Python 3
}
_OFFSET_MODULES = {"pandas._libs.tslibs.offsets": _offsets_lib, "pandas.tseries.offsets": _offsets_api}
_NUMERIC_KINDS = ("int", "uint", "float", "bool")
_LOCK = threading.Lock()
_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_SOURCE_ROOT = str(Path(__file__).resolve().parents[1])  # the folder holding the metamap package
_EXIT_DATA_ERROR, _EXIT_OTHER_ERROR = 3, 4
CHILD_TIMEOUT_S = 600
# What PyTables raises on a corrupt file besides HDF5ExtError (a RuntimeError), e.g. NoSuchNodeError
# (an AttributeError) for a damaged group, SystemError from a negative size.
_LIBRARY_ERRORS = (
    OSError,
    RuntimeError,
    ValueError,
    TypeError,
    KeyError,
    IndexError,
    AttributeError,
    SystemError,
    OverflowError,
)


class _Refused(Exception):
    """A pickled attribute named a global outside the allow-list."""


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles plain data and pandas date offsets; any other global is refused."""

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in _PLAIN_GLOBALS:
            return _PLAIN_GLOBALS[(module, name)]
        offsets = _OFFSET_MODULES.get(module)
        found = getattr(offsets, name, None) if offsets is not None and "." not in name else None
        if isinstance(found, type) and issubclass(found, _offsets_lib.BaseOffset):
            return found
        raise _Refused(f"{module}.{name}")

    def persistent_load(self, pid: object) -> object:
        raise _Refused("a persistent id")


class _PickleGuard:
    """Stands in for the ``pickle`` module inside PyTables while a file is read.

    ``refused`` collects ``(raw bytes, what it named)`` of every attribute
    pickle that was refused; PyTables then keeps the raw bytes as the value.
    """

    def __init__(self) -> None:
        self.refused: list[tuple[bytes, str]] = []

    def loads(self, data: bytes, **kwargs) -> object:
        raw = bytes(data)
        try:
            return _PlainDataUnpickler(io.BytesIO(raw), **kwargs).load()
        except _Refused as exc:
            self.refused.append((raw, str(exc)))
            raise

    dumps = staticmethod(pickle.dumps)
    HIGHEST_PROTOCOL = pickle.HIGHEST_PROTOCOL


class _File:
    """An open HDF5 file whose nodes are checked for refused pickles as they are loaded."""

    def __init__(self, handle: tables.File, guard: _PickleGuard, path: Path) -> None:
        self.handle, self.guard, self.path = handle, guard, path

    def checked(self, node: tables.Node) -> tables.Node:
        """``node`` after checking that none of its attributes was a refused pickle."""
        if self.guard.refused:
            raw_values = {raw: what for raw, what in self.guard.refused}
            attrs = node._v_attrs
            names = [n for n, v in attrs.__dict__.items() if isinstance(v, bytes) and bytes(v) in raw_values]
            what = raw_values.get(bytes(attrs.__dict__[names[0]])) if names else self.guard.refused[0][1]
            raise DataError(
                f"{self.path}: node {node._v_pathname} attribute {names[0] if names else '?'!r} is a pickled "
                f"Python object ({what}); refused, since loading it would run code from the file"
            )
        return node

    def node(self, where: str, name: str | None = None) -> tables.Node:
        try:
            node = self.handle.get_node(where, name)
        except tables.NoSuchNodeError as exc:
            parent = where._v_pathname if isinstance(where, tables.Node) else where
            full = f"{parent.rstrip('/')}/{name}" if name else parent
            raise DataError(f"{self.path}: expected the node {full}, but it is missing") from exc
        return self.checked(node)

    def keys(self) -> list[str]:
        """The pandas keys: paths of groups that carry a ``pandas_type``."""
        keys = []
        for group in self.handle.walk_groups():
            if "pandas_type" in self.checked(group)._v_attrs._v_attrnames:
                keys.append(group._v_pathname.lstrip("/"))
        return keys


@contextlib.contextmanager
def _open(image: bytes, path: Path) -> Iterator[_File]:
    """Open the file contents ``image`` (read from ``path``) in memory, with PyTables' unpickler replaced."""
    guard = _PickleGuard()
    name = str(Path(tempfile.gettempdir()) / f"metamap-{uuid.uuid4().hex}.h5")
    with _LOCK, warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"tables(\.|$)")
        saved = tables.attributeset.pickle, tables.atom.pickle
        tables.attributeset.pickle = tables.atom.pickle = guard
        try:
            try:
                handle = tables.open_file(  # the core driver needs a name no file has; it writes nothing
                    name, mode="r", driver="H5FD_CORE", driver_core_image=image, driver_core_backing_store=0
                )
            except _LIBRARY_ERRORS as exc:
                reason = one_line(exc).replace(name, str(path))
                raise DataError(f"{path}: expected an HDF5 file, but it cannot be opened ({reason})") from exc
            with handle:
                file = _File(handle, guard, path)
                file.checked(handle.root)
                yield file
        finally:
            tables.attributeset.pickle, tables.atom.pickle = saved


def _attr(file: _File, node: tables.Node, name: str, types: type | tuple[type, ...], default: object = None):
    """The attribute ``name`` of ``node`` if it is one of ``types``; ``default`` if absent."""
    attrs = node._v_attrs
    if name not in attrs._v_attrnames:
        return default
    value = attrs.__dict__.get(name)
    if isinstance(value, np.generic):
        value = value.item()
    types = types if isinstance(types, tuple) else (types,)
    if not isinstance(value, types):
        expected = " or ".join(t.__name__ for t in types)
        raise DataError(
            f"{file.path}: expected attribute {name!r} of node {node._v_pathname} to be {expected}, "
            f"got {type(value).__name__}"
        )
    return value


def _array(file: _File, node: tables.Node, kinds: tuple[str, ...]) -> np.ndarray:
    """The contents of a plain HDF5 array whose atom kind is one of ``kinds`` (never a VLArray)."""
    if not isinstance(node, tables.Array):
        raise DataError(
            f"{file.path}: expected a plain array at node {node._v_pathname}, got a {type(node).__name__} "
            "(pandas stores object data there as pickles, which are refused since loading them runs code)"
        )
    if node.atom.kind not in kinds or node.atom.shape != ():
        raise DataError(f"{file.path}: expected {'/'.join(kinds)} values at node {node._v_pathname}, got {node.atom}")
    try:
        return np.asarray(node.read())
    except _LIBRARY_ERRORS as exc:
        raise DataError(f"{file.path}: node {node._v_pathname} cannot be read ({one_line(exc)})") from exc


def _empty_sentinel(file: _File, node: tables.Node, data: np.ndarray) -> np.ndarray:
    """pandas writes an empty array as one placeholder element plus ``shape`` and ``value_type`` attributes."""
    shape = _attr(file, node, "shape", tuple)
    if shape is None:
        return data
    value_type = _attr(file, node, "value_type", str, "float64")
    try:
        dims = tuple(int(s) for s in shape)
        return data if np.prod(dims) != 0 else np.empty(dims, dtype=np.dtype(value_type))
    except (TypeError, ValueError) as exc:
        raise DataError(
            f"{file.path}: node {node._v_pathname}: expected an empty-array shape and dtype, "
            f"got {shape!r} and {value_type!r}"
        ) from exc


def _strings(data: np.ndarray, encoding: str, errors: str, nan_rep: str | None) -> list:
    """Decoded strings; ``nan_rep`` entries become NaN."""
    try:
        decoded = [s.decode(encoding, errors) if isinstance(s, bytes) else str(s) for s in data.ravel().tolist()]
    except (LookupError, UnicodeDecodeError) as exc:
        raise DataError(f"strings cannot be decoded as {encoding!r} ({one_line(exc)})") from exc
    return [np.nan if nan_rep is not None and s == nan_rep else s for s in decoded]


def _index_values(
    file: _File, where: str, kind: str, data: np.ndarray, encoding: str, errors: str, nan_rep: str | None
) -> pd.Index:
    """An index of ``kind`` (pandas' ``datetime64[unit]``, ``integer``, ``float``, ``bool``, ``string``)."""
    if kind.startswith("datetime64"):
        unit = "datetime64[ns]" if kind == "datetime64" else kind
        if data.dtype != np.int64 or not np.issubdtype(np.dtype(_dtype(file, where, unit)), np.datetime64):
            raise DataError(f"{file.path}: {where}: expected int64 {unit} timestamps, got {data.dtype}")
        return pd.DatetimeIndex(data.view(unit))
    if kind in ("integer", "float", "bool"):
        return pd.Index(data)
    if kind == "string":
        try:
            return pd.Index(_strings(data, encoding, errors, nan_rep), dtype="str")
        except DataError as exc:
            raise DataError(f"{file.path}: {where}: {exc}") from exc
    raise DataError(
        f"{file.path}: {where}: expected an index of timestamps, numbers or strings, got pandas kind {kind!r}"
    )


def _dtype(file: _File, where: str, text: str) -> np.dtype:
    try:
        return np.dtype(text)
    except TypeError as exc:
        raise DataError(f"{file.path}: {where}: unknown dtype {text!r}") from exc


def _with_time_zone(file: _File, where: str, index: pd.Index, freq: object, tz: object) -> pd.Index:
    """Apply a stored ``freq`` and ``tz`` (stamps are UTC) to a DatetimeIndex as pandas does."""
    if not isinstance(index, pd.DatetimeIndex):
        return index
    try:
        if freq is not None:
            index = pd.DatetimeIndex(index, freq=freq)
        if tz is not None:
            index = index.tz_localize("UTC").tz_convert(tz)
    except (ValueError, TypeError, KeyError) as exc:
        raise DataError(
            f"{file.path}: {where}: the stored freq {freq!r} or time zone {tz!r} does not apply ({one_line(exc)})"
        ) from exc
    return index


def _named(file: _File, where: str, index: pd.Index, name: object) -> pd.Index:
    try:
        index.name = name
    except TypeError as exc:
        raise DataError(f"{file.path}: {where}: expected a hashable index name, got {type(name).__name__}") from exc
    return index


def _read_index(file: _File, group: tables.Group, key: str, encoding: str, errors: str) -> pd.Index:
    """The index stored at ``group/key`` in the fixed layout (``kind``, ``name``, ``freq``, ``tz`` attributes)."""
    variety = _attr(file, group, f"{key}_variety", str, "regular")
    if variety != "regular":
        raise DataError(f"{file.path}: {group._v_pathname}/{key}: expected a plain index, got a {variety} index")
    node = file.node(group, key)
    where = node._v_pathname
    data = _empty_sentinel(file, node, _array(file, node, _NUMERIC_KINDS + ("string",)))
    kind = _attr(file, node, "kind", str, "")
    nan_rep = _attr(file, node, "nan_rep", str, "nan") or None
    index = _index_values(file, where, kind, data, encoding, errors, nan_rep)
    freq = _attr(file, node, "freq", (_offsets_lib.BaseOffset, type(None), bytes))
    index = _with_time_zone(file, where, index, None if isinstance(freq, bytes) else freq, _attr(file, node, "tz", str))
    return _named(file, where, index, _attr(file, node, "name", object))


def _read_block(file: _File, group: tables.Group, key: str, items: pd.Index) -> np.ndarray:
    """Block values as pandas holds them, ``[items, rows]``."""
    node = file.node(group, key)
    value_type = _attr(file, node, "value_type", str)
    atom = getattr(node, "atom", None)
    if (value_type is not None and _attr(file, node, "shape", tuple) is None) or (
        isinstance(node, tables.Array) and atom.kind not in _NUMERIC_KINDS
    ):
        shown = ", ".join(repr(c) for c in items[:5]) + (f" (and {len(items) - 5} more)" if len(items) > 5 else "")
        raise DataError(
            f"{file.path}: expected numeric values in every column, got non-numeric columns {shown} "
            f"({value_type or atom} at {node._v_pathname})"
        )
    data = _empty_sentinel(file, node, _array(file, node, _NUMERIC_KINDS))
    if data.ndim != 2:
        raise DataError(f"{file.path}: {node._v_pathname}: expected a 2-d block of values, got {data.ndim} dimensions")
    return data.T if _attr(file, node, "transposed", bool, False) else data


def _frame(
    blocks: list[tuple[pd.Index, np.ndarray]], index: pd.Index, columns: pd.Index, file: _File, where: str
) -> pd.DataFrame:
    """Blocks ``(items, values [items, rows])`` assembled into a DataFrame with ``columns`` in order."""
    for items, values in blocks:
        if values.shape != (len(items), len(index)):
            raise DataError(
                f"{file.path}: {where}: expected a block of {len(items)} columns x {len(index)} rows, "
                f"got {values.shape[0]} x {values.shape[1]}"
            )
    if len(blocks) == 1 and blocks[0][0].equals(columns):
        return pd.DataFrame(blocks[0][1].T, index=index, columns=columns)
    if not blocks:
        return pd.DataFrame(columns=columns, index=index)
    try:
        frames = [
            pd.DataFrame(values.T, index=index, columns=columns[columns.get_indexer(items)]) for items, values in blocks
        ]
        return pd.concat(frames, axis=1).reindex(columns=columns)
    except (ValueError, KeyError, IndexError) as exc:
        raise DataError(f"{file.path}: {where}: the blocks do not match the columns ({one_line(exc)})") from exc


def _read_fixed(file: _File, group: tables.Group) -> pd.DataFrame:
    where = group._v_pathname
    encoding = _attr(file, group, "encoding", str, "UTF-8") or "UTF-8"
    errors = _attr(file, group, "errors", str, "strict")
    ndim = _attr(file, group, "ndim", int, 2)
    n_blocks = _attr(file, group, "nblocks", int, 0)
    if ndim != 2 or not 0 <= n_blocks <= 10_000:
        raise DataError(f"{file.path}: {where}: expected a 2-d frame layout, got ndim {ndim}, {n_blocks} blocks")
    columns = _read_index(file, group, "axis0", encoding, errors)
    index = _read_index(file, group, "axis1", encoding, errors)
    blocks = []
    for i in range(n_blocks):
        items = _read_index(file, group, f"block{i}_items", encoding, errors)
        blocks.append((items, _read_block(file, group, f"block{i}_values", items)))
    return _frame(blocks, index, columns, file, where)


def _read_table(file: _File, group: tables.Group) -> pd.DataFrame:
    """The ``table`` layout with an ``index`` column and ``values_block_{i}`` columns (no data columns)."""
    where = group._v_pathname
    node = file.node(group, "table")
    if not isinstance(node, tables.Table):
        raise DataError(f"{file.path}: {where}/table: expected a Table, got a {type(node).__name__}")
    if _attr(file, group, "data_columns", list, []):
        raise DataError(f"{file.path}: {where}: data columns are not supported; write the frame without data_columns")
    axes = _attr(file, group, "non_index_axes", list, [])
    if len(axes) != 1 or not isinstance(axes[0], (list, tuple)) or len(axes[0]) != 2 or axes[0][0] != 1:
        raise DataError(f"{file.path}: {where}: expected one column axis in 'non_index_axes', got {axes!r}")
    info = _attr(file, group, "info", dict, {})
    index_info, column_info = info.get("index", {}), info.get(1, {})
    if not isinstance(index_info, dict) or not isinstance(column_info, dict):
        raise DataError(f"{file.path}: {where}: expected dicts in attribute 'info', got {info!r}")
    fields = node.colnames
    if "index" not in fields or any(f != "index" and not f.startswith("values_block_") for f in fields):
        raise DataError(f"{file.path}: {where}/table: expected columns index, values_block_0.., got {fields}")
    try:
        rows = node.read()
    except _LIBRARY_ERRORS as exc:
        raise DataError(f"{file.path}: {where}/table cannot be read ({one_line(exc)})") from exc
    if rows.dtype["index"].kind not in "biuf":
        raise DataError(f"{file.path}: {where}/table: expected a numeric index column, got {rows.dtype['index']}")
    kind = _attr(file, node, "index_kind", str, "")
    index = _index_values(file, f"{where}/table", kind, rows["index"], "UTF-8", "strict", None)
    index = _with_time_zone(file, where, index, index_info.get("freq"), index_info.get("tz"))
    index = _named(file, where, index, index_info.get("index_name"))
    blocks = []
    for field in fields:
        values = rows[field]
        if field == "index":
            continue
        if values.dtype.base.kind not in "biuf":
            raise DataError(f"{file.path}: {where}/table: expected numeric {field}, got {values.dtype}")
        items = pd.Index(_attr(file, node, f"{field}_kind", list, []))
        blocks.append((items, values.reshape(len(rows), -1).T))
    columns = _named(file, where, pd.Index(axes[0][1]), (column_info.get("names") or [None])[0])
    return _frame(blocks, index, columns, file, where)


def read_frame(path: PathLike, key: str = "df", *, isolate: bool = True) -> pd.DataFrame:
    """Read the DataFrame that ``DataFrame.to_hdf(path, key=key)`` wrote, without unpickling.

    The file is read into memory once; with ``isolate`` a child process reads
    it first (about a second of start-up), so that a corrupt file that crashes
    the HDF5 library raises DataError here instead of killing the process.

    Args:
        path: a pandas HDF5 file (``fixed`` or simple ``table`` format).
        key: the pandas key of the frame.
        isolate: check the file in a child process before reading it here.

    Returns:
        The frame as ``pandas.read_hdf(path, key)`` returns it (index with
        name, freq and time zone; column names; one dtype per block), for
        frames with numeric values and an index of timestamps, numbers or
        strings.

    Raises:
        DataError: the file is not HDF5 or is corrupt, the key is missing,
            an attribute is a pickled object, a node holds object (pickled)
            data, or the layout is not a plain numeric frame.
    """
    path = Path(path)
    try:
        image = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: expected a pandas HDF5 file, but it cannot be read ({one_line(exc)})") from exc
    if not any(image[offset : offset + 8] == _SIGNATURE for offset in _signature_offsets(len(image))):
        raise DataError(f"{path}: expected an HDF5 file, but it lacks the HDF5 signature")
    if isolate:
        _check_in_child(image, key, path)
    try:
        return _read_image(image, key, path)
    except MetamapError:
        raise
    except _LIBRARY_ERRORS as exc:
        raise DataError(f"{path}: expected a pandas HDF5 file, but it cannot be read ({one_line(exc)})") from exc


def _signature_offsets(size: int) -> Iterator[int]:
    """Where an HDF5 superblock may start: 0, 512, 1024, 2048, ... bytes."""
    yield 0
    offset = 512
    while offset < size:
        yield offset
        offset *= 2


def _check_in_child(image: bytes, key: str, path: Path) -> None:
    """Read ``image`` once in a child process, so that a crash of the HDF5 library becomes a DataError.

    libhdf5 can crash (segfault) on a corrupt file instead of reporting an
    error; the child reports ``DataError`` messages (exit 3), other errors
    (exit 4) or dies by a signal, and the caller reads only after it succeeded.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, (_SOURCE_ROOT, os.environ.get("PYTHONPATH")))))
    command = [sys.executable, "-m", "metamap.safe_hdf", key, str(path)]
    try:
        done = subprocess.run(command, input=image, capture_output=True, env=env, timeout=CHILD_TIMEOUT_S)
    except subprocess.TimeoutExpired as exc:
        raise DataError(f"{path}: expected a pandas HDF5 file, but reading it took over {CHILD_TIMEOUT_S} s") from exc
    said = (done.stdout or done.stderr).decode(errors="replace").strip().splitlines()
    last = said[-1] if said else ""
    if done.returncode == 0:
        return
    if done.returncode == _EXIT_DATA_ERROR:
        raise DataError(last)
    if done.returncode < 0:
        name = signal.Signals(-done.returncode).name if -done.returncode in signal.valid_signals() else -done.returncode
        raise DataError(f"{path}: expected a pandas HDF5 file, but the HDF5 library crashed reading it ({name})")
    raise DataError(f"{path}: expected a pandas HDF5 file, but it cannot be read ({last or done.returncode})")


def _child_main() -> int:
    """The child of :func:`_check_in_child`: the file contents on stdin; argv: key, path (for messages)."""
    key, path = sys.argv[1], Path(sys.argv[2])
    image = sys.stdin.buffer.read()
    try:
        _read_image(image, key, path)
    except MetamapError as exc:
        print(exc)
        return _EXIT_DATA_ERROR
    except _LIBRARY_ERRORS as exc:
        print(one_line(exc))
        return _EXIT_OTHER_ERROR
    return 0


def _read_image(image: bytes, key: str, path: Path) -> pd.DataFrame:
    with _open(image, path) as file:
        name = "/" + key.strip("/")
        if name not in file.handle:
            keys = file.keys()
            held = ", ".join(repr(k) for k in keys[:5]) + (f" (and {len(keys) - 5} more)" if len(keys) > 5 else "")
            raise DataError(f"{path}: expected the key {key!r}, but the file holds {held or 'no keys'}")
        group = file.node(name)
        if not isinstance(group, tables.Group):
            raise DataError(f"{path}: expected a pandas group under key {key!r}, got a {type(group).__name__}")
        pandas_type = _attr(file, group, "pandas_type", str)
        if pandas_type == "frame":
            return _read_fixed(file, group)
        if pandas_type == "frame_table":
            return _read_table(file, group)
        raise DataError(f"{path}: expected a DataFrame under key {key!r}, got pandas type {pandas_type!r}")


if __name__ == "__main__":
    sys.exit(_child_main())
