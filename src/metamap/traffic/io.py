"""Read traffic detector files into :class:`~metamap.traffic.data.TrafficData`.

Supported layouts (those of DCRNN, ASTGCN and their successors):

* readings: pandas HDF (``.h5``, METR-LA / PEMS-BAY: a ``[time, sensor]``
  DataFrame with a DatetimeIndex, read without unpickling) or numpy
  ``.npz`` (PeMS03/04/07/08: key ``data``, ``[time, node, channel]``, no
  timestamps);
* graph: DCRNN's ``adj_mx.pkl`` (``[sensor_ids, sensor_id_to_ind, adj_mx]``)
  or a ``from,to,cost`` road-distance CSV turned into weights by DCRNN's
  thresholded Gaussian kernel;
* sensor locations: a ``sensor_id,latitude,longitude`` CSV.

NaN readings, the file's own missing-value codes (``missing_values``) and,
unless ``zero_is_missing=False``, zeros are missing values (``mask == False``,
value 0). Timestamps keep the file's local wall-clock time (a time-zone-aware
index is not turned into UTC), so that time of day and weekend are those the
drivers saw. Every error names the file, what was expected and what came.
"""

from __future__ import annotations

import os
import zipfile
import zlib
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from metamap.errors import ConfigError, DataError, ShapeError, describe, one_line
from metamap.safe_hdf import read_frame
from metamap.traffic.data import TrafficData
from metamap.traffic.safe_pickle import load_allowed

PathLike = str | os.PathLike

PEMS_CHANNELS = ("flow", "occupancy", "speed")
H5_SUFFIXES = (".h5", ".hdf5", ".hdf")
NPZ_SUFFIXES = (".npz",)
PICKLE_SUFFIXES = (".pkl", ".pickle")
CSV_SUFFIXES = (".csv",)
_NPZ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)  # corrupt; object arrays: ValueError


class Readings(NamedTuple):
    """Detector readings as read from one file.

    Attributes:
        values: ``float32 [T, N]``, in the file's unit (mph for speed); 0 where missing.
        mask: ``bool [T, N]``; True where a reading exists (see :func:`_values_and_mask`).
        times: ``datetime64[ns] [T]`` local wall-clock times, ``step_minutes`` apart
            (except across a daylight-saving change of ``timezone``).
        sensor_ids: the N sensor ids as strings, in column order.
        step_minutes: minutes between consecutive time steps (elapsed time).
        timezone: the zone of ``times`` (e.g. ``"America/Los_Angeles"``), or
            None for a file without one.
    """

    values: np.ndarray
    mask: np.ndarray
    times: np.ndarray
    sensor_ids: tuple[str, ...]
    step_minutes: int
    timezone: str | None = None


def _few(items, limit: int = 5) -> str:
    """``'a', 'b', 'c' (and 4 more)`` for error messages."""
    items = list(items)
    shown = ", ".join(repr(i) for i in items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def _require_file(path: PathLike, what: str) -> Path:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: expected {what}, but there is no such file")
    return path


def _values_and_mask(
    array: np.ndarray, path: Path, missing_values: tuple[float, ...] = (), zero_is_missing: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """``float32`` values with zeros where missing, and the mask of present readings.

    Missing: NaN, any of ``missing_values`` (the file's sentinel codes, such as
    -1) and, with ``zero_is_missing``, 0 (a loop detector reports a speed of 0
    when it has no reading). A negative reading that is not a listed code is
    refused rather than masked: speeds, flows and occupancies are never
    negative, so it is an unnamed code, and neither keeping it as a reading nor
    silently dropping it would be right; the error names the values to pass as
    missing-value codes.
    """
    infinite = np.isinf(array)
    if infinite.any():
        t, n = np.argwhere(infinite)[0]
        raise DataError(
            f"{path}: expected finite readings (NaN or 0 for missing), got {int(infinite.sum())} infinite values, "
            f"the first at time step {t}, sensor column {n}"
        )
    mask = ~np.isnan(array) & ~np.isin(array, missing_values)
    if zero_is_missing:
        mask &= array != 0
    negative = mask & (array < 0)
    if negative.any():
        codes = np.unique(array[negative])
        raise DataError(
            f"{path}: expected non-negative readings, got {int(negative.sum())} negative values "
            f"({_few(codes.tolist(), 3)}); if they are missing-value codes, name them (--missing-value)"
        )
    with np.errstate(over="ignore"):
        values = np.where(mask, array, 0).astype(np.float32)
    if np.isinf(values).any():
        largest = float(np.abs(array[mask]).max())
        raise DataError(f"{path}: expected readings within float32 range (|x| < 3.4e38), got {largest:.3g}")
    return values, mask


def _check_unique(sensor_ids: tuple[str, ...], path: Path) -> None:
    ids = pd.Index(sensor_ids)
    if ids.has_duplicates:
        raise DataError(f"{path}: expected each sensor id once, got repeats {_few(ids[ids.duplicated()].unique())}")


# --------------------------------------------------------------------------- pandas HDF


def _check_frame(frame: pd.DataFrame, path: Path, key: str) -> pd.DataFrame:
    if not isinstance(frame.index, pd.DatetimeIndex):
        raise DataError(f"{path}: expected a DatetimeIndex of timestamps, got {type(frame.index).__name__}")
    if frame.shape[1] == 0:
        raise DataError(f"{path}: expected one column per sensor, got no columns")
    bad = [f"{c} ({t})" for c, t in frame.dtypes.items() if not pd.api.types.is_numeric_dtype(t)]
    if bad:
        raise DataError(f"{path}: expected numeric readings in every column, got non-numeric columns {_few(bad)}")
    return frame


MINUTES_PER_DAY = 24 * 60


def _step_minutes(times: np.ndarray, path: Path) -> int:
    """Check that ``times`` (datetime64[ns] instants) are unique, increasing and regular; the step in minutes.

    The step must divide a day, since days and times of day are counted in steps.
    """
    if len(times) < 2:
        raise DataError(f"{path}: expected at least 2 time steps to infer the step, got {len(times)}")
    duplicated = pd.Index(times).duplicated()
    if duplicated.any():
        row = int(np.argmax(duplicated))
        raise DataError(f"{path}: expected each timestamp once, but {pd.Timestamp(times[row])} repeats at row {row}")
    diffs = np.diff(times.astype(np.int64))
    backwards = np.flatnonzero(diffs < 0)
    if backwards.size:
        row = int(backwards[0]) + 1
        raise DataError(
            f"{path}: expected increasing timestamps, but row {row} ({pd.Timestamp(times[row])}) "
            f"comes after row {row - 1} ({pd.Timestamp(times[row - 1])})"
        )
    step_ns = int(np.median(diffs))
    minute_ns = 60 * 10**9
    if step_ns % minute_ns:
        raise DataError(f"{path}: expected a step of whole minutes, got a median step of {pd.Timedelta(step_ns)}")
    irregular = np.flatnonzero(diffs != step_ns)
    if irregular.size:
        row = int(irregular[0])
        raise DataError(
            f"{path}: expected a regular step of {step_ns // minute_ns} min, but rows {row}-{row + 1} "
            f"({pd.Timestamp(times[row])} to {pd.Timestamp(times[row + 1])}) are {pd.Timedelta(int(diffs[row]))} apart "
            f"({irregular.size} irregular gaps in all)"
        )
    return _day_divisor(step_ns // minute_ns, str(path))


def _day_divisor(step_minutes: int, where: str) -> int:
    """``step_minutes``, checked to divide a day (1440 minutes)."""
    if MINUTES_PER_DAY % step_minutes:
        raise DataError(
            f"{where}: expected a time step that divides a day (e.g. 5min, 15min, 1h, 1day), got {step_minutes} min"
        )
    return step_minutes


def read_h5(
    path: PathLike, key: str = "df", missing_values: tuple[float, ...] = (), zero_is_missing: bool = True
) -> Readings:
    """Read a pandas HDF file of readings (METR-LA / PEMS-BAY layout) without unpickling anything.

    The file is read by :func:`metamap.safe_hdf.read_frame`, which refuses
    pickled attributes and object (pickled) nodes instead of loading them.

    Args:
        path: the ``.h5`` file; under ``key`` a DataFrame ``[T, N]`` with a
            regular DatetimeIndex (naive or time-zone-aware) and one numeric
            column per sensor.
        key: the HDF key of the DataFrame.
        missing_values, zero_is_missing: which readings are missing (see :func:`_values_and_mask`).

    Returns:
        :class:`Readings`: ``values float32 [T, N]``, ``mask bool [T, N]``,
        ``times datetime64[ns] [T]`` (the index's local wall-clock times),
        ``sensor_ids`` (the column names as strings), ``step_minutes`` (the
        index's step, in elapsed time) and ``timezone`` (the index's zone or None).

    Raises:
        DataError: missing or unreadable file, missing key, not a DataFrame,
            pickled objects in the file, no DatetimeIndex, duplicate,
            decreasing or irregular timestamps, non-numeric columns,
            infinite values.
    """
    path = _require_file(path, "a pandas HDF5 file of readings")
    frame = _check_frame(read_frame(path, key), path, key)
    index = frame.index
    timezone = None if index.tz is None else str(index.tz)
    step = _step_minutes(index.to_numpy(dtype="datetime64[ns]"), path)  # instants (UTC): elapsed time
    times = (index if timezone is None else index.tz_localize(None)).to_numpy(dtype="datetime64[ns]")
    sensor_ids = tuple(str(c) for c in frame.columns)
    _check_unique(sensor_ids, path)
    values, mask = _values_and_mask(frame.to_numpy(dtype=np.float64), path, missing_values, zero_is_missing)
    return Readings(values, mask, times, sensor_ids, step, timezone)


# --------------------------------------------------------------------------- numpy npz


def _channel_index(channel: str | int, n_channels: int, path: Path) -> int:
    """The index of ``channel`` (a PeMS channel name or an int) among ``n_channels``."""
    if isinstance(channel, str):
        if channel not in PEMS_CHANNELS:
            raise ConfigError(f"channel: expected one of {PEMS_CHANNELS} or an int index, got {channel!r}")
        if n_channels == 1:
            return 0
        if n_channels != len(PEMS_CHANNELS):
            raise ConfigError(
                f"{path}: channel names {PEMS_CHANNELS} apply to the 3-channel PeMS layout, "
                f"but the file has {n_channels} channels; pass an int index"
            )
        return PEMS_CHANNELS.index(channel)
    if isinstance(channel, (int, np.integer)) and not isinstance(channel, bool) and 0 <= channel < n_channels:
        return int(channel)
    raise ConfigError(f"{path}: channel: expected a name or an int in [0, {n_channels}), got {channel!r}")


def _regular_times(start: str, step_minutes: int, n_steps: int) -> np.ndarray:
    try:
        first = np.datetime64(start, "ns")
    except ValueError as exc:
        raise ConfigError(f"start: expected an ISO date/time such as '2018-01-01T00:00', got {start!r}") from exc
    return first + np.arange(n_steps) * np.timedelta64(int(step_minutes), "m")


def _stored_step(archive: np.lib.npyio.NpzFile, path: Path) -> int | None:
    """The archive's optional ``step_minutes`` key (a positive integer scalar dividing a day), or None."""
    if "step_minutes" not in archive.files:
        return None
    try:
        value = archive["step_minutes"]
    except _NPZ_ERRORS as exc:
        raise DataError(f"{path}: the array 'step_minutes' cannot be read ({one_line(exc)})") from exc
    if value.shape != () or not np.issubdtype(value.dtype, np.integer) or value <= 0:
        raise DataError(f"{path}: expected 'step_minutes' as one positive integer, got {describe(value)}")
    return _day_divisor(int(value), f"{path}: step_minutes")


def _npz_step(path: Path, stored: int | None, step_minutes: int | None) -> int:
    """The step in minutes of a ``.npz`` file: ``step_minutes`` if given, else the one it ``stored``.

    Raises:
        ConfigError: neither gives a step, both do and differ, or ``step_minutes`` is not a positive int
            dividing a day.
    """
    if step_minutes is None:
        if stored is None:
            raise ConfigError(
                f"{path}: a .npz file has no timestamps, so its time step must be given (--step, e.g. 5min or 1h)"
            )
        return stored
    if isinstance(step_minutes, bool) or not isinstance(step_minutes, (int, np.integer)) or step_minutes <= 0:
        raise ConfigError(f"step_minutes: expected a positive int, got {step_minutes!r}")
    if stored is not None and stored != step_minutes:
        raise ConfigError(f"step: {path} stores {stored}-minute steps, but {step_minutes} min was given")
    if MINUTES_PER_DAY % step_minutes:
        raise ConfigError(
            f"step: expected a time step that divides a day (e.g. 5min, 1h, 1day), got {step_minutes} min"
        )
    return int(step_minutes)


def _load_npz_data(path: Path) -> tuple[np.ndarray, int | None]:
    """The archive's ``data`` array and its stored step in minutes (None if it holds none)."""
    try:
        archive = np.load(path, allow_pickle=False)
    except _NPZ_ERRORS as exc:
        raise DataError(f"{path}: expected a numpy .npz archive, but it is not one ({one_line(exc)})") from exc
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: expected a .npz archive with key 'data', got a single {describe(archive)} array")
    with archive:
        if "data" not in archive.files:
            keys = _few(archive.files) or "no keys"
            raise DataError(f"{path}: expected the key 'data', but the archive holds {keys}")
        try:
            data = archive["data"]
        except _NPZ_ERRORS as exc:
            raise DataError(f"{path}: the array 'data' cannot be read ({one_line(exc)})") from exc
        return data, _stored_step(archive, path)


def read_npz(
    path: PathLike,
    channel: str | int = "speed",
    start: str = "2018-01-01T00:00",
    step_minutes: int | None = None,
    missing_values: tuple[float, ...] = (),
    zero_is_missing: bool = True,
) -> Readings:
    """Read a PeMS ``.npz`` archive (ASTGCN / STSGCN layout).

    Args:
        path: the archive; key ``data`` holds ``[T, N, C]`` readings (PeMS:
            C = 3 channels: flow in vehicles per step, occupancy as a fraction,
            speed in mph) or ``[T, N]`` (one channel).
            An optional integer scalar ``step_minutes`` holds the time step.
        channel: ``"flow"``, ``"occupancy"``, ``"speed"`` (3-channel layout; a
            one-channel file is taken as the named quantity) or an int index.
        start: the time of the first step (the file has no timestamps).
        step_minutes: minutes between steps; required unless the archive stores
            them, and then it must agree.
        missing_values, zero_is_missing: which readings are missing (see :func:`_values_and_mask`).

    Returns:
        :class:`Readings` with ``values float32 [T, N]``, ``mask bool [T, N]``,
        ``times datetime64[ns] [T]`` from ``start`` every ``step_minutes``, and
        sensor ids ``"0" .. "N-1"`` (the node indices of the distance CSV).

    Raises:
        DataError: missing or unreadable file, no ``data`` key, non-numeric
            or infinite values.
        ShapeError: ``data`` is not 2- or 3-dimensional.
        ConfigError: unknown channel name or index out of range, bad
            ``start``, a missing or contradicting ``step_minutes``.
    """
    path = _require_file(path, "a numpy .npz archive of readings")
    data, stored_step = _load_npz_data(path)
    if data.ndim not in (2, 3):
        raise ShapeError(f"{path}: expected 'data' as [time, node, channel] or [time, node], got {describe(data)}")
    if not (np.issubdtype(data.dtype, np.integer) or np.issubdtype(data.dtype, np.floating)):
        raise DataError(f"{path}: expected real numeric readings in 'data', got dtype {data.dtype}")
    if data.ndim == 2:
        data = data[:, :, None]
    channel_index = _channel_index(channel, data.shape[2], path)
    step = _npz_step(path, stored_step, step_minutes)
    readings = data[:, :, channel_index].astype(np.float64)
    values, mask = _values_and_mask(readings, path, missing_values, zero_is_missing)
    times = _regular_times(start, step, data.shape[0])
    sensor_ids = tuple(str(i) for i in range(data.shape[1]))
    return Readings(values, mask, times, sensor_ids, step)


# --------------------------------------------------------------------------- graphs


def read_dcrnn_adjacency(path: PathLike) -> tuple[tuple[str, ...], np.ndarray]:
    """Read DCRNN's ``adj_mx.pkl``: ``[sensor_ids, sensor_id_to_ind, adj_mx]``.

    The pickle is loaded with :func:`~metamap.traffic.safe_pickle.load_allowed`
    (numpy arrays and builtins only; Python 2 pickles work).

    Returns:
        ``(sensor_ids, adjacency)``: the N ids as strings, and ``float32
        [N, N]`` edge weights as stored (row = from, column = to) in the
        order of the ids.

    Raises:
        DataError: missing, corrupt or unsafe pickle, wrong structure,
            non-finite weights.
        ShapeError: the matrix is not square or its size differs from the ids.
    """
    path = _require_file(path, "a DCRNN adjacency pickle")
    content = load_allowed(path)
    if not isinstance(content, (list, tuple)) or len(content) != 3:
        raise DataError(
            f"{path}: expected a list [sensor_ids, sensor_id_to_ind, adj_mx], got {type(content).__name__}"
            + (f" of length {len(content)}" if isinstance(content, (list, tuple)) else "")
        )
    ids, id_to_index, matrix = content
    if not isinstance(ids, (list, tuple)) or not isinstance(id_to_index, dict):
        raise DataError(
            f"{path}: expected a list of sensor ids and a dict id -> index, "
            f"got {type(ids).__name__} and {type(id_to_index).__name__}"
        )
    sensor_ids = tuple(i.decode("latin1") if isinstance(i, bytes) else str(i) for i in ids)
    _check_unique(sensor_ids, path)
    adjacency = np.asarray(matrix)
    if not np.issubdtype(adjacency.dtype, np.number):
        raise DataError(f"{path}: expected a numeric adjacency matrix, got dtype {adjacency.dtype}")
    n = len(sensor_ids)
    if adjacency.shape != (n, n):
        raise ShapeError(f"{path}: expected a [{n}, {n}] adjacency for the {n} sensor ids, got {describe(adjacency)}")
    n_bad = int((~np.isfinite(adjacency)).sum())
    if n_bad:
        raise DataError(f"{path}: expected finite adjacency weights, got {n_bad} NaN/inf")
    return sensor_ids, adjacency.astype(np.float32)


def gaussian_kernel_adjacency(
    src: np.ndarray,
    dst: np.ndarray,
    cost: np.ndarray,
    n_sensors: int,
    sigma: float | None = None,
    threshold: float = 0.1,
) -> np.ndarray:
    """DCRNN's thresholded Gaussian kernel of road distances.

    ``w[i, j] = exp(-(d[i, j] / sigma) ** 2)`` for each listed edge i -> j
    (a repeated edge keeps its last distance), 0 where no distance is listed
    (the diagonal too, unless a self-distance is listed), and 0 where the
    weight is below ``threshold``. The graph is directed as listed.

    Args:
        src, dst: ``int [E]`` node indices in ``[0, n_sensors)``.
        cost: ``float [E]`` distances (any unit, e.g. metres), >= 0.
        n_sensors: N.
        sigma: the kernel width in the unit of ``cost``; None: the standard
            deviation of the listed finite distances.
        threshold: weights below it become 0.

    Returns:
        ``float32 [N, N]`` weights in ``[0, 1]``, row = from, column = to.

    Raises:
        ShapeError: ``src``, ``dst``, ``cost`` differ in length.
        DataError: negative or NaN costs, indices out of range, sigma cannot
            be inferred (no finite distances, or all equal).
        ConfigError: ``n_sensors``, ``sigma`` or ``threshold`` invalid.
    """
    src, dst, cost = (np.asarray(a).reshape(-1) for a in (src, dst, cost))
    if not src.size == dst.size == cost.size:
        raise ShapeError(f"edges: expected src, dst, cost of one length, got {src.size}, {dst.size}, {cost.size}")
    if n_sensors < 1:
        raise ConfigError(f"n_sensors: expected a positive int, got {n_sensors!r}")
    if not threshold >= 0:
        raise ConfigError(f"threshold: expected a weight >= 0, got {threshold!r}")
    if np.isnan(cost).any() or (cost < 0).any():
        bad = cost[np.isnan(cost) | (cost < 0)]
        raise DataError(f"edges: expected distances >= 0, got {_few(bad.tolist())}")
    for name, nodes in (("from", src), ("to", dst)):
        if nodes.size and not np.issubdtype(nodes.dtype, np.integer):
            raise DataError(f"edges: expected integer '{name}' node indices, got dtype {nodes.dtype}")
        outside = nodes[(nodes < 0) | (nodes >= n_sensors)]
        if outside.size:
            raise DataError(f"edges: expected '{name}' node indices in [0, {n_sensors}), got {_few(outside.tolist())}")
    distances = np.full((n_sensors, n_sensors), np.inf)
    distances[src, dst] = cost
    sigma = _kernel_width(distances) if sigma is None else sigma
    if not sigma > 0:
        raise ConfigError(f"sigma: expected a positive kernel width, got {sigma!r}")
    weights = np.exp(-np.square(distances / sigma))
    weights[weights < threshold] = 0
    return weights.astype(np.float32)


def _kernel_width(distances: np.ndarray) -> float:
    finite = distances[np.isfinite(distances)]
    width = float(finite.std()) if finite.size else 0.0
    if width == 0:
        raise DataError(
            f"edges: cannot infer sigma as the std of the listed distances ({finite.size} finite, std 0); pass sigma"
        )
    return width


def _node_indices(column: pd.Series, sensor_ids: tuple[str, ...] | None, path: Path) -> np.ndarray:
    """The CSV column ``from``/``to`` as node indices: int indices, or ids mapped through ``sensor_ids``."""
    if sensor_ids is None:
        numbers = pd.to_numeric(column, errors="coerce")
        bad = column[numbers.isna() | (numbers % 1 != 0)]
        if bad.size:
            raise DataError(f"{path}: expected integer node indices in column {column.name!r}, got {_few(bad)}")
        return numbers.to_numpy(dtype=np.int64)
    position = {s: i for i, s in enumerate(sensor_ids)}
    unknown = sorted(set(column) - position.keys())
    if unknown:
        raise DataError(f"{path}: column {column.name!r} names sensors that are not in the data: {_few(unknown)}")
    return column.map(position).to_numpy(dtype=np.int64)


def read_distance_csv(
    path: PathLike,
    n_sensors: int,
    sensor_ids: tuple[str, ...] | None = None,
    sigma: float | None = None,
    threshold: float = 0.1,
) -> np.ndarray:
    """Read a ``from,to,cost`` road-distance CSV into Gaussian-kernel weights.

    Args:
        path: the CSV; ``from`` and ``to`` are node indices in
            ``[0, n_sensors)``, or sensor ids when ``sensor_ids`` is given;
            ``cost`` is the distance (e.g. metres).
        n_sensors: N.
        sensor_ids: the N ids in node order, to map ``from``/``to`` through.
        sigma, threshold: see :func:`gaussian_kernel_adjacency`.

    Every sensor must appear in some row (as ``from`` or ``to``): a CSV that
    leaves sensors out is most likely the graph of another selection of them.

    Returns:
        ``float32 [N, N]`` weights, row = from, column = to.

    Raises:
        DataError: missing or unreadable file, missing columns, unknown
            ids, bad indices or costs, sensors that no row names.
        ConfigError: ``sensor_ids`` does not hold ``n_sensors`` ids.
    """
    path = _require_file(path, "a from,to,cost distance CSV")
    if sensor_ids is not None and len(sensor_ids) != n_sensors:
        raise ConfigError(f"sensor_ids: expected {n_sensors} ids, got {len(sensor_ids)}")
    frame = _read_csv(path, ("from", "to", "cost"), dtype={"from": str, "to": str})
    cost = pd.to_numeric(frame["cost"], errors="coerce")
    if cost.isna().any():
        raise DataError(f"{path}: expected numeric distances in column 'cost', got {_few(frame['cost'][cost.isna()])}")
    src = _node_indices(frame["from"].str.strip(), sensor_ids, path)
    dst = _node_indices(frame["to"].str.strip(), sensor_ids, path)
    try:
        weights = gaussian_kernel_adjacency(src, dst, cost.to_numpy(np.float64), n_sensors, sigma, threshold)
    except DataError as exc:
        raise DataError(f"{path}: {exc}") from exc
    _check_covers(path, np.concatenate([src, dst]), sensor_ids or tuple(str(i) for i in range(n_sensors)))
    return weights


def _check_covers(path: Path, nodes: np.ndarray, sensor_ids: tuple[str, ...]) -> None:
    """Refuse a distance CSV whose rows (node indices ``nodes``) leave some of ``sensor_ids`` out."""
    absent = np.setdiff1d(np.arange(len(sensor_ids)), nodes)
    if absent.size:
        raise DataError(
            f"{path}: expected distances for all {len(sensor_ids)} sensors of the readings, but "
            f"{absent.size} are in no row, e.g. {_few([sensor_ids[i] for i in absent[:2]], 2)}"
        )


def _read_csv(path: Path, columns: tuple[str, ...], dtype: dict[str, type]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=dtype, skipinitialspace=True)
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        expected = ", ".join(columns)
        reason = one_line(exc)
        raise DataError(f"{path}: expected a CSV with columns {expected}, but it cannot be read ({reason})") from exc
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: expected the columns {', '.join(columns)}, got {', '.join(map(str, frame.columns)) or 'none'}"
        )
    return frame


def read_locations(path: PathLike, sensor_ids: tuple[str, ...]) -> np.ndarray:
    """Read sensor coordinates from a ``sensor_id,latitude,longitude`` CSV (other columns ignored).

    Returns:
        ``float64 [N, 2]`` latitude, longitude in degrees, in the order of ``sensor_ids``.

    Raises:
        DataError: missing or unreadable file, missing columns, repeated or
            missing sensors, coordinates not numeric or out of range.
    """
    path = _require_file(path, "a sensor_id,latitude,longitude CSV")
    columns = ("sensor_id", "latitude", "longitude")
    frame = _read_csv(path, columns, dtype={"sensor_id": str})
    table = frame.assign(sensor_id=frame["sensor_id"].str.strip()).set_index("sensor_id")
    if table.index.has_duplicates:
        raise DataError(f"{path}: expected each sensor once, got repeats {_few(table.index[table.index.duplicated()])}")
    missing = [s for s in sensor_ids if s not in table.index]
    if missing:
        raise DataError(f"{path}: expected a location for every sensor, {len(missing)} missing: {_few(missing)}")
    coords = table.loc[list(sensor_ids), ["latitude", "longitude"]].apply(pd.to_numeric, errors="coerce").to_numpy()
    if not (np.abs(coords[:, 0]) <= 90).all() or not (np.abs(coords[:, 1]) <= 180).all():
        raise DataError(f"{path}: expected numeric latitude in [-90, 90] and longitude in [-180, 180] for every sensor")
    return coords.astype(np.float64)


# --------------------------------------------------------------------------- everything at once


def _check_suffix(path: Path, supported: tuple[str, ...], what: str) -> str:
    suffix = path.suffix.lower()
    if suffix not in supported:
        raise ConfigError(f"{path}: unknown {what} file type {suffix or '(none)'!r}; supported: {', '.join(supported)}")
    return suffix


def _read_readings(
    path: Path,
    key: str,
    channel: str | int,
    start: str | None,
    step_minutes: int | None,
    missing_values: tuple[float, ...],
    zero_is_missing: bool,
) -> Readings:
    suffix = _check_suffix(path, H5_SUFFIXES + NPZ_SUFFIXES, "readings")
    if suffix in NPZ_SUFFIXES:
        first = start or "2018-01-01T00:00"
        return read_npz(path, channel, first, step_minutes, missing_values, zero_is_missing)
    if start is not None:
        raise ConfigError(f"start: applies to .npz files only; {path} carries its own timestamps")
    readings = read_h5(path, key, missing_values, zero_is_missing)
    if step_minutes is not None and step_minutes != readings.step_minutes:
        raise ConfigError(f"step: {path} has {readings.step_minutes}-minute steps, but {step_minutes} min was given")
    return readings


def _aligned_dcrnn_adjacency(path: Path, sensor_ids: tuple[str, ...]) -> np.ndarray:
    """DCRNN adjacency reordered to ``sensor_ids`` (its ids must be a permutation of them)."""
    graph_ids, adjacency = read_dcrnn_adjacency(path)
    if len(graph_ids) != len(sensor_ids):
        raise DataError(f"{path}: expected an adjacency for the data's {len(sensor_ids)} sensors, got {len(graph_ids)}")
    if graph_ids == sensor_ids:
        return adjacency
    position = {s: i for i, s in enumerate(graph_ids)}
    absent = [s for s in sensor_ids if s not in position]
    if absent:
        extra = sorted(set(graph_ids) - set(sensor_ids))
        raise DataError(
            f"{path}: expected the data's sensor ids, but {len(absent)} differ: "
            f"data has {_few(absent)}, the graph has {_few(extra)} instead"
        )
    order = [position[s] for s in sensor_ids]
    return adjacency[np.ix_(order, order)]


def _read_adjacency(path: Path, sensor_ids: tuple[str, ...], sigma: float | None, threshold: float) -> np.ndarray:
    suffix = _check_suffix(path, PICKLE_SUFFIXES + CSV_SUFFIXES, "adjacency")
    if suffix in PICKLE_SUFFIXES:
        return _aligned_dcrnn_adjacency(path, sensor_ids)
    return read_distance_csv(path, len(sensor_ids), sensor_ids, sigma, threshold)


def _without_silent(data: TrafficData, path: Path, drop_silent: bool) -> TrafficData:
    silent = np.flatnonzero(~data.mask.any(axis=0))
    if silent.size == 0:
        return data
    names = [data.sensor_ids[i] for i in silent]
    if not drop_silent:
        raise DataError(
            f"{path}: expected every sensor to report at least once, {silent.size} never do: {_few(names)}; "
            "add --drop-silent (load_traffic(..., drop_silent=True)) to drop them"
        )
    if silent.size == data.n_sensors:
        raise DataError(f"{path}: expected some readings, but all {data.n_sensors} sensors are silent")
    return data.sensors(np.flatnonzero(data.mask.any(axis=0)))


def load_traffic(
    data_path: PathLike,
    adj_path: PathLike | None = None,
    locations_path: PathLike | None = None,
    *,
    key: str = "df",
    channel: str | int = "speed",
    start: str | None = None,
    step_minutes: int | None = None,
    missing_values: tuple[float, ...] = (),
    zero_is_missing: bool = True,
    sigma: float | None = None,
    threshold: float = 0.1,
    drop_silent: bool = False,
    name: str | None = None,
) -> TrafficData:
    """Read readings, and optionally a graph and sensor locations, into one :class:`TrafficData`.

    Args:
        data_path: ``.h5``/``.hdf5``/``.hdf`` (:func:`read_h5`) or ``.npz`` (:func:`read_npz`).
        adj_path: ``.pkl``/``.pickle`` (:func:`read_dcrnn_adjacency`, reordered to
            the data's sensor order if its ids are a permutation of them) or
            ``.csv`` (:func:`read_distance_csv`, ``from``/``to`` being the
            data's sensor ids; for ``.npz`` data these are the node indices).
        locations_path: a ``sensor_id,latitude,longitude`` CSV (:func:`read_locations`).
        key: HDF key (``.h5`` only).
        channel: channel name or index (``.npz`` only).
        start: time of the first step (``.npz`` only; default 2018-01-01T00:00).
        step_minutes: minutes per step (``.npz``: required unless the archive
            stores it; ``.h5``: the index gives it, and a given value must match).
        missing_values: the file's codes for a missing reading (e.g. ``(-1,)``).
        zero_is_missing: whether a reading of 0 is missing (speed data) or a
            real count (flow data with empty roads).
        sigma, threshold: Gaussian kernel of a distance CSV.
        drop_silent: drop sensors without a single reading (and their graph
            rows/columns) instead of raising.
        name: label of the data; default the stem of ``data_path``.

    Returns:
        :class:`TrafficData` with ``values float32 [T, N]``, ``mask bool [T, N]``,
        ``adjacency float32 [N, N]`` or None, ``coords float64 [N, 2]`` or None.

    Raises:
        ConfigError: unknown file type or invalid option.
        DataError: unusable files, a graph or locations that do not match the
            data's sensors, sensors that never report (unless ``drop_silent``).
        ShapeError: arrays of the wrong shape in the files.
    """
    data_path = Path(data_path)
    readings = _read_readings(data_path, key, channel, start, step_minutes, missing_values, zero_is_missing)
    adjacency = None if adj_path is None else _read_adjacency(Path(adj_path), readings.sensor_ids, sigma, threshold)
    coords = None if locations_path is None else read_locations(locations_path, readings.sensor_ids)
    data = TrafficData(
        values=readings.values,
        mask=readings.mask,
        times=readings.times,
        sensor_ids=readings.sensor_ids,
        adjacency=adjacency,
        coords=coords,
        name=data_path.stem if name is None else name,
        step_minutes=readings.step_minutes,
        timezone=readings.timezone,
    )
    return _without_silent(data, data_path, drop_silent)
