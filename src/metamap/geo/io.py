"""xarray in and out: one gridded variable of a netCDF file or zarr store, and ensembles back to netCDF.

Input files may name their axes ``time``/``valid_time``, ``lat``/``latitude``
and ``lon``/``longitude``, with latitude in either order. :func:`open_field`
gives a :class:`GeoField` whose ``data`` has the dims ``(time, lat, lon)``
(renamed, never reordered); :func:`write_ensemble` writes back with the
input's own names and order, an ensemble dimension ``member`` first, the
variable's CF attributes (``units``, ``long_name``, ``standard_name``, ``cell_methods``) and the
file's global attributes.

Reading is safe on untrusted files: a netCDF file must carry the netCDF or
HDF5 signature, and a zarr store whose metadata name a pickle codec or hold
an object array other than plain strings is refused before any chunk is read
(decoding a pickle runs code). Missing values become NaN (:func:`mask_missing`).

A run applies to new data only when :func:`check_same_field` finds the same
variable, units, calendar and grid coordinates as :meth:`GeoField.identity`
recorded at training.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from metamap.errors import ConfigError, DataError

AXIS_NAMES = {"time": ("time", "valid_time"), "lat": ("lat", "latitude"), "lon": ("lon", "longitude")}
CF_ATTRS = ("units", "long_name", "standard_name", "cell_methods")
DEFAULT_FILL_LIMIT = 9.9e36  # netCDF's default fill value of float variables is 9.96921e36
NETCDF_SIGNATURES = (b"CDF\x01", b"CDF\x02", b"CDF\x05", b"\x89HDF\r\n\x1a\n")
ZARR_METADATA = (".zarray", ".zmetadata", "zarr.json")
STRING_CODECS = ("vlen-utf8", "vlen-bytes")  # object arrays of plain strings, decoded without running code
CALENDAR_ALIASES = {
    "gregorian": "standard",
    "proleptic_gregorian": "standard",
    "365_day": "noleap",
    "366_day": "all_leap",
}


@dataclass
class GeoField:
    """One variable on a regular grid.

    ``data``: xarray DataArray with dims ``(time, lat, lon)``, possibly dask-backed (lazy), missing values NaN;
    ``names``: the file's own name of each axis, e.g. ``{"time": "valid_time", "lat": "latitude", ...}``;
    ``attrs``: the variable's attributes; ``global_attrs``: the file's; ``source``: the file it came from;
    ``companions``: the CF variables it refers to, kept for the outputs (:func:`cf_companions`).
    """

    data: Any
    var: str
    names: dict[str, str]
    attrs: dict[str, Any] = field(default_factory=dict)
    global_attrs: dict[str, Any] = field(default_factory=dict)
    source: str = ""
    companions: dict[str, Any] = field(default_factory=dict)

    @property
    def lat(self) -> np.ndarray:
        """Latitudes in degrees north, in the file's order ``[H]``."""
        return np.asarray(self.data["lat"].values, dtype=np.float64)

    @property
    def lon(self) -> np.ndarray:
        """Longitudes in degrees east ``[W]``."""
        return np.asarray(self.data["lon"].values, dtype=np.float64)

    @property
    def times(self) -> np.ndarray:
        """Time stamps ``[T]`` (datetime64 where the file has them)."""
        return np.asarray(self.data["time"].values)

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    @property
    def units(self) -> str:
        """The variable's ``units`` attribute ('' when it has none)."""
        return str(self.attrs.get("units", "")).strip()

    @property
    def calendar(self) -> str:
        """The time axis' CF calendar (aliases folded: ``gregorian``, ``proleptic_gregorian`` -> ``standard``,
        which agree on every date after 1582-10-15), or ``none`` when the times are not dates."""
        time = self.data["time"]
        name = time.encoding.get("calendar", time.attrs.get("calendar"))
        if name is None:
            dated = np.issubdtype(time.dtype, np.datetime64) or "units" in time.encoding
            return "standard" if dated else "none"
        name = str(name).strip().lower()
        return CALENDAR_ALIASES.get(name, name)

    def identity(self) -> dict[str, Any]:
        """What a run trained on this field must find again in new data: variable, units, calendar and the
        grid's coordinates (degrees, in the file's order), as JSON-ready values."""
        return {
            "var": self.var,
            "units": self.units,
            "calendar": self.calendar,
            "lat": self.lat.tolist(),
            "lon": self.lon.tolist(),
        }

    def loaded(self, max_bytes: int) -> GeoField:
        """This field with its values read into memory when they take at most ``max_bytes`` (as float32),
        else this field unchanged (lazy). Random patches from memory cost microseconds, from dask tens of ms."""
        if int(np.prod(self.shape)) * 4 > max_bytes:
            return self
        return replace(self, data=self.data.load())

    def values(self, times: slice | np.ndarray | None = None) -> np.ndarray:
        """The values as float32 ``[T, H, W]`` (NaN = missing), loading only the requested times."""
        data = self.data if times is None else self.data.isel(time=times)
        return np.asarray(data.values, dtype=np.float32)

    def year_fraction(self) -> np.ndarray:
        """Fraction ``[T]`` in [0, 1) of the calendar's year of each time step
        (:func:`metamap.geo.climatology.year_fraction`)."""
        from metamap.geo.climatology import year_fraction

        try:
            return year_fraction(self.times, self.calendar)
        except DataError as exc:
            raise DataError(f"{self.var}: {exc}") from None

    def day_of_month(self) -> np.ndarray:
        """Day of the month (1-31; 1-30 on ``360_day``) of each time step ``[T]``; needs dates (numpy
        datetime64 or cftime)."""
        times = self.times
        if times.dtype == object and all(hasattr(t, "day") for t in times):  # cftime dates (360_day, noleap...)
            return np.array([t.day for t in times], dtype=np.int64)
        if not np.issubdtype(times.dtype, np.datetime64):
            raise DataError(f"{self.var}: the time axis holds {times.dtype}, not dates; cannot split by day")
        days = times.astype("datetime64[D]")
        months = times.astype("datetime64[M]")
        return (days - months.astype("datetime64[D]")).astype(np.int64) + 1


def _find_axis(names: list[str], axis: str, source: str) -> str:
    for candidate in AXIS_NAMES[axis]:
        if candidate in names:
            return candidate
    raise DataError(
        f"{source}: no {axis} axis; expected one of {', '.join(AXIS_NAMES[axis])}, found {', '.join(names) or 'none'}"
    )


def _codecs(meta: Any) -> list[str]:
    """Every codec id (zarr v2 ``{"id": ...}``) or name (zarr v3 ``{"name": ...}``) in a metadata document."""
    if isinstance(meta, list):
        return [name for item in meta for name in _codecs(item)]
    if not isinstance(meta, dict):
        return []
    own = [str(meta[key]) for key in ("id", "name") if isinstance(meta.get(key), str)]
    return own + [name for value in meta.values() for name in _codecs(value)]


def _is_object_dtype(dtype: Any) -> bool:
    """True for zarr v2's object dtype ``|O`` (also inside a structured dtype)."""
    if isinstance(dtype, list):
        return any(_is_object_dtype(part) for part in dtype)
    return isinstance(dtype, str) and dtype.lstrip("|<>=") in ("O", "object")


def _array_metadata(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """``(name, array metadata)`` of the arrays described by one ``.zarray``, ``.zmetadata`` or ``zarr.json``."""
    nested = document.get("metadata") or (document.get("consolidated_metadata") or {}).get("metadata")
    arrays = [("", document)] if "dtype" in document or "data_type" in document else []
    for name, meta in (nested or {}).items():
        if isinstance(meta, dict) and ("dtype" in meta or "data_type" in meta):
            arrays.append((str(name).removesuffix("/.zarray"), meta))
    return arrays


def check_zarr_store(path: Path) -> None:
    """Refuse a zarr store that could run code or hand out Python objects when read.

    Reads only the JSON metadata (``.zarray``, ``.zmetadata``, ``zarr.json``),
    never a chunk. Refused: any pickle codec (a filter, compressor or object
    codec with ``pickle`` in its id) and any object-dtype array whose filters
    are not the plain string decoders (``vlen-utf8``, ``vlen-bytes``).

    Raises:
        DataError: with the offending array named.
    """
    found = (Path(folder) / name for folder, _, names in os.walk(path) for name in names if name in ZARR_METADATA)
    for meta_file in sorted(found):
        try:
            document = json.loads(meta_file.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise DataError(f"{meta_file}: unreadable zarr metadata ({exc})") from None
        if not isinstance(document, dict):
            raise DataError(f"{meta_file}: zarr metadata must be a JSON object, got {type(document).__name__}")
        for name, meta in _array_metadata(document):
            where = f"{meta_file}{f' ({name})' if name else ''}"
            codecs = _codecs({key: value for key, value in meta.items() if key != "attributes"})
            if any("pickle" in codec.lower() for codec in codecs):
                raise DataError(f"{where}: uses a pickle codec, which runs code when decoded; refusing to read it")
            filters = _codecs(meta.get("filters"))  # zarr v2 keeps an array's object codec first among these
            if _is_object_dtype(meta.get("dtype")) and not (filters and set(filters) <= set(STRING_CODECS)):
                raise DataError(
                    f"{where}: an object-dtype array with filters {filters or 'none'}; only numeric "
                    f"arrays and strings ({', '.join(STRING_CODECS)}) are read"
                )


def _check_netcdf(path: Path) -> None:
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not any(head.startswith(signature) for signature in NETCDF_SIGNATURES):
        raise DataError(f"{path}: not a netCDF file (no netCDF or HDF5 signature) and not a zarr folder")


def open_dataset(path: Path, chunks: dict[str, int] | None = None):
    """Open a netCDF file or a zarr store (folder) lazily with xarray, after the safety checks above."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or store")
    try:
        if path.is_dir():
            check_zarr_store(path)
            consolidated = (path / ".zmetadata").is_file() or _has_consolidated_v3(path)
            return xr.open_zarr(path, chunks=chunks if chunks is not None else {}, consolidated=consolidated)
        _check_netcdf(path)
        return xr.open_dataset(path, chunks=chunks, engine="netcdf4")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        if isinstance(exc, DataError):
            raise
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as netCDF or zarr ({first_line})") from exc


def _has_consolidated_v3(path: Path) -> bool:
    meta = path / "zarr.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("consolidated_metadata") is not None
    except (OSError, ValueError, AttributeError):
        return False


def _numbers(value: Any, key: str) -> np.ndarray:
    """An attribute as a flat float64 array; a non-numeric one is a :class:`DataError`."""
    try:
        return np.atleast_1d(np.asarray(value, np.float64)).ravel()
    except (TypeError, ValueError):
        raise DataError(f"the {key} attribute {value!r} is not a number") from None


def _valid_bounds(data: Any) -> tuple[float, float]:
    """``(low, high)`` from ``valid_range`` / ``valid_min`` / ``valid_max`` in the variable's (unpacked) unit."""
    attrs = data.attrs
    low, high = -np.inf, np.inf
    if "valid_range" in attrs:
        bounds = _numbers(attrs["valid_range"], "valid_range")
        if bounds.size != 2:
            raise DataError(f"valid_range must hold 2 numbers, got {attrs['valid_range']!r}")
        low, high = float(bounds[0]), float(bounds[1])
    low = float(_numbers(attrs.get("valid_min", low), "valid_min")[0])
    high = float(_numbers(attrs.get("valid_max", high), "valid_max")[0])
    scale = float(data.encoding.get("scale_factor", 1.0))  # xarray unpacked the values, not these bounds
    offset = float(data.encoding.get("add_offset", 0.0))
    low, high = sorted((low * scale + offset, high * scale + offset)) if scale != 0 else (low, high)
    return low, high


def mask_missing(data: Any) -> Any:
    """``data`` with every missing value set to NaN (lazy where ``data`` is dask-backed).

    Missing are: values equal to a ``_FillValue`` or ``missing_value`` still in
    the attributes (xarray's decoding already turned the ones it understood
    into NaN and moved them to ``encoding``); values outside ``valid_range``
    / ``valid_min`` / ``valid_max``; values with ``|x| >= 9.9e36`` (netCDF's
    default fill of unwritten float data; no physical quantity gets near it).
    Nothing else: a ``-9999`` that the file does not declare stays a value.
    """
    missing = abs(data) >= DEFAULT_FILL_LIMIT
    for key in ("_FillValue", "missing_value"):
        for sentinel in _numbers(data.attrs.get(key, []), key):
            # a float sentinel is stored in the variable's precision: compare there (1e20 as float32 is not 1e20)
            missing = missing | (data == (np.asarray(sentinel, data.dtype) if data.dtype.kind == "f" else sentinel))
    low, high = _valid_bounds(data)
    if np.isfinite(low) or np.isfinite(high):
        missing = missing | (data < low) | (data > high)
    attrs = {k: v for k, v in data.attrs.items() if k not in ("_FillValue", "missing_value")}
    masked = data.astype(np.float32).where(~missing)
    masked.attrs = attrs
    return masked


def _check_not_ragged(path: Path, var: str) -> None:
    """Refuse a netCDF variable of variable-length elements, which xarray reports as numeric but reads as
    Python objects."""
    import netCDF4

    with netCDF4.Dataset(path) as nc:
        variable = nc.variables.get(var)
        if variable is not None and (variable.dtype is str or isinstance(variable.datatype, netCDF4.VLType)):
            kind = "strings" if variable.dtype is str else "variable-length (ragged) values"
            raise DataError(f"{path}:{var} holds {kind}; expected numbers on a grid")


def _check_numeric(values: Any, what: str) -> None:
    if np.dtype(values.dtype).kind not in "iuf":
        raise DataError(f"{what} holds {values.dtype} values; expected numbers (integers or floats)")


DEFAULT_CHUNKS = {"time": 1, "lat": 256, "lon": 256}  # dask chunks the commands read fields in


def open_field(path: Path, var: str, chunks: dict[str, int] | None = None) -> GeoField:
    """Variable ``var`` of the netCDF/zarr file ``path`` as a :class:`GeoField` (lazy; dask chunks if given,
    else one chunk per time step), missing values NaN as in :func:`mask_missing`.

    ``chunks`` uses the canonical names ``time``, ``lat``, ``lon``. Extra
    length-1 dimensions (e.g. a surface level) are dropped; any other extra
    dimension is an error, and so are non-numeric values or coordinates.
    """
    ds = open_dataset(path, chunks=None)
    if var not in ds.data_vars:
        raise ConfigError(f"{path}: no variable {var!r}; the file holds {', '.join(map(str, ds.data_vars)) or 'none'}")
    if not Path(path).is_dir():
        _check_not_ragged(Path(path), var)
    data = ds[var]
    dims = [str(d) for d in data.dims]
    names = {axis: _find_axis(dims, axis, f"{path}:{var}") for axis in AXIS_NAMES}
    extra = [d for d in dims if d not in names.values()]
    for d in extra:
        if data.sizes[d] != 1:
            raise DataError(
                f"{path}:{var}: unexpected dimension {d!r} of size {data.sizes[d]}; expected (time, lat, lon)"
            )
        data = data.isel({d: 0}, drop=True)
    data = data.rename({names[a]: a for a in AXIS_NAMES}).transpose("time", "lat", "lon")
    _check_numeric(data, f"{path}:{var}")
    for axis in ("lat", "lon"):
        _check_numeric(data[axis], f"{path}: the {names[axis]} coordinate")
        if not np.isfinite(np.asarray(data[axis].values, np.float64)).all():
            raise DataError(f"{path}: the {names[axis]} coordinate holds NaN or infinite values")
    if data.sizes["lat"] < 2 or data.sizes["lon"] < 2:
        raise DataError(f"{path}:{var}: the grid is {data.sizes['lat']} x {data.sizes['lon']}; need at least 2 x 2")
    if chunks or data.chunks is None:
        data = data.chunk(chunks or {"time": 1})
    try:
        data = mask_missing(data)
    except DataError as exc:
        raise DataError(f"{path}:{var}: {exc}") from None
    return GeoField(
        data=data,
        var=var,
        names=names,
        attrs=dict(data.attrs),
        global_attrs=dict(ds.attrs),
        source=str(path),
        companions=cf_companions(ds, var, names["time"]),
    )


def cf_companions(ds: Any, var: str, time_name: str) -> dict[str, Any]:
    """The CF variables ``var`` of dataset ``ds`` refers to, as small in-memory DataArrays by role:
    ``grid_mapping`` (the variable its ``grid_mapping`` attribute names, e.g. a scalar ``crs``) and
    ``time_bounds`` (``[time, 2]``, named by the time axis' ``bounds`` attribute, its time dimension
    renamed ``time``). A role whose variable is absent is left out."""
    out = {}
    mapping = str(ds[var].attrs.get("grid_mapping", "")).strip()
    if mapping in ds.variables and ds[mapping].size <= 1024:
        out["grid_mapping"] = ds[mapping].load()
    bounds = str(ds[time_name].attrs.get("bounds", ds[time_name].encoding.get("bounds", ""))).strip()
    if bounds in ds.variables and ds[bounds].ndim == 2 and ds[bounds].dims[0] == time_name:
        out["time_bounds"] = ds[bounds].load().rename({time_name: "time"})
    return out


def _coordinate_gap(recorded: np.ndarray, found: np.ndarray, wrap: bool) -> float:
    """Largest difference in degrees (longitudes compared modulo 360)."""
    difference = found - recorded
    if wrap:
        difference = (difference + 180.0) % 360.0 - 180.0
    return float(np.abs(difference).max())


def _describe_axis(values: np.ndarray) -> str:
    return f"{values[0]:g}..{values[-1]:g} ({values.size} values)"


def check_same_field(recorded: dict[str, Any], field: GeoField, data_label: str, run_label: str) -> None:
    """Refuse ``field`` unless it matches ``recorded`` (a :meth:`GeoField.identity`): same variable and units,
    calendar, grid size, and coordinates within 1% of a grid cell (longitudes modulo 360).

    Raises:
        DataError: one line naming both sides, e.g. ``--data x.nc holds variable 'pr' [mm s-1] but the run r
            was trained on 'tasmax' [K]``.
    """
    found = field.identity()
    if (found["var"], found["units"]) != (recorded["var"], recorded["units"]):
        raise DataError(
            f"{data_label} holds variable {found['var']!r} [{found['units']}] but {run_label} was "
            f"trained on {recorded['var']!r} [{recorded['units']}]"
        )
    if found["calendar"] != recorded["calendar"]:
        raise DataError(
            f"{data_label} has the {found['calendar']!r} calendar but {run_label} was trained on the "
            f"{recorded['calendar']!r} calendar"
        )
    sizes = {axis: (len(recorded[axis]), len(found[axis])) for axis in ("lat", "lon")}
    if any(ours != theirs for ours, theirs in sizes.values()):
        raise DataError(
            f"{data_label} has a {sizes['lat'][1]} x {sizes['lon'][1]} grid but {run_label} was trained "
            f"on {sizes['lat'][0]} x {sizes['lon'][0]} (its climatology is per pixel)"
        )
    for axis in ("lat", "lon"):
        ours, theirs = np.asarray(recorded[axis], np.float64), np.asarray(found[axis], np.float64)
        cell = float(np.abs(np.diff(ours)).min()) if ours.size > 1 else 1.0
        gap = _coordinate_gap(ours, theirs, wrap=axis == "lon")
        if gap > 0.01 * cell:
            flipped = _coordinate_gap(ours[::-1], theirs, wrap=axis == "lon") <= 0.01 * cell
            hint = " (the same values in reverse order)" if flipped else ""
            raise DataError(
                f"{data_label} has {axis} {_describe_axis(theirs)} but {run_label} was trained on "
                f"{_describe_axis(ours)}: off by up to {gap:g} degrees{hint}"
            )


def _add_time_bounds(ds: Any, template: GeoField, times: np.ndarray, time_name: str) -> None:
    """Give ``ds``'s time axis the bounds of ``template``'s at ``times``, in its time encoding, when every
    one of ``times`` is a template time; else leave it without bounds."""
    bounds = template.companions.get("time_bounds")
    if bounds is None:
        return
    known = {value: index for index, value in enumerate(template.times.tolist())}
    try:
        picks = [known[value] for value in times.tolist()]
    except (KeyError, TypeError):
        return
    name = str(bounds.name)
    ds[name] = bounds.isel(time=picks).rename({"time": time_name}).drop_vars(list(bounds.coords))
    ds[time_name].attrs["bounds"] = name
    encoding = {k: v for k, v in template.data["time"].encoding.items() if k in ("units", "calendar")}
    ds[time_name].encoding.update(encoding)
    ds[name].encoding.update(encoding)


def write_ensemble(
    path: Path,
    members: np.ndarray,
    template: GeoField,
    times: np.ndarray,
    history: str,
    extra: dict[str, np.ndarray] | None = None,
) -> Path:
    """Write ``members [M, T, H, W]`` (the variable's unit) as netCDF with dims ``member, time, lat, lon``.

    Coordinates, axis names and latitude order come from ``template``; the
    variable keeps its CF attributes (``units``, ``long_name``,
    ``standard_name``, ``cell_methods``, and ``grid_mapping`` with the
    variable it names), the time axis its bounds when every one of ``times``
    is a time of ``template`` (those times' bounds; none for new times such
    as forecast valid times), and the file the input's global attributes,
    with ``history`` appended. ``extra`` adds variables such as
    ``{"ensemble_mean": [T, H, W]}`` or ``{"observed": [T, H, W]}``.
    """
    import xarray as xr

    members = np.asarray(members, dtype=np.float32)
    _, height, width = template.shape
    if members.ndim != 4 or members.shape[2:] != (height, width) or members.shape[1] != len(times):
        raise DataError(
            f"write_ensemble: expected members [M, {len(times)}, {height}, {width}], got {list(members.shape)}"
        )
    n = template.names
    coords = {
        n["time"]: np.asarray(times),
        n["lat"]: template.lat,
        n["lon"]: template.lon,
        "member": np.arange(members.shape[0], dtype=np.int32),
    }
    attrs = {k: template.attrs[k] for k in CF_ATTRS if k in template.attrs}
    mapping = template.companions.get("grid_mapping")
    if mapping is not None:
        attrs["grid_mapping"] = mapping.name
    variables = {template.var: (("member", n["time"], n["lat"], n["lon"]), members, attrs)}
    for name, values in (extra or {}).items():
        values = np.asarray(values)
        values = values.astype(np.int8) if values.dtype == bool else values.astype(np.float32)
        variables[name] = ((n["time"], n["lat"], n["lon"]), values, {})
    ds = xr.Dataset(variables, coords=coords)
    for axis in ("lat", "lon", "time"):
        source = template.data[axis]
        kept = {k: v for k, v in source.attrs.items() if isinstance(v, (str, int, float)) and k != "bounds"}
        ds[n[axis]].attrs.update(kept)
    if mapping is not None:
        ds[mapping.name] = mapping.drop_vars(list(mapping.coords))
    _add_time_bounds(ds, template, np.asarray(times), n["time"])
    global_attrs = {k: v for k, v in template.global_attrs.items() if isinstance(v, (str, int, float, np.number))}
    previous = str(global_attrs.get("history", "")).strip()
    global_attrs["history"] = f"{previous}\n{history}".strip()
    ds.attrs.update(global_attrs)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    ds.to_netcdf(tmp)
    tmp.replace(path)
    return path
