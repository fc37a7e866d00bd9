"""xarray in and out: one gridded variable of a netCDF file or zarr store, and ensembles back to netCDF.

Input files may name their axes ``time``/``valid_time``, ``lat``/``latitude``
and ``lon``/``longitude``, with latitude in either order. :func:`open_field`
gives a :class:`GeoField` whose ``data`` has the dims ``(time, lat, lon)``
(renamed, never reordered); :func:`write_ensemble` writes back with the
input's own names and order, an ensemble dimension ``member`` first, the
variable's CF attributes (``units``, ``long_name``, ``standard_name``) and the
file's global attributes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from metamap.errors import ConfigError, DataError

AXIS_NAMES = {"time": ("time", "valid_time"), "lat": ("lat", "latitude"), "lon": ("lon", "longitude")}
CF_ATTRS = ("units", "long_name", "standard_name")


@dataclass
class GeoField:
    """One variable on a regular grid.

    ``data``: xarray DataArray with dims ``(time, lat, lon)``, possibly dask-backed (lazy);
    ``names``: the file's own name of each axis, e.g. ``{"time": "valid_time", "lat": "latitude", ...}``;
    ``attrs``: the variable's attributes; ``global_attrs``: the file's.
    """

    data: Any
    var: str
    names: dict[str, str]
    attrs: dict[str, Any] = field(default_factory=dict)
    global_attrs: dict[str, Any] = field(default_factory=dict)

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

    def values(self, times: slice | np.ndarray | None = None) -> np.ndarray:
        """The values as float32 ``[T, H, W]`` (NaN = missing), loading only the requested times."""
        data = self.data if times is None else self.data.isel(time=times)
        return np.asarray(data.values, dtype=np.float32)

    def day_of_month(self) -> np.ndarray:
        """Day of the month (1-31) of each time step ``[T]``; needs datetime time stamps."""
        times = self.times
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


def open_dataset(path: Path, chunks: dict[str, int] | None = None):
    """Open a netCDF file or a zarr store (folder or ``*.zarr``) lazily with xarray."""
    import xarray as xr

    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or store")
    try:
        if path.is_dir() or path.suffix == ".zarr":
            return xr.open_zarr(path, chunks=chunks if chunks is not None else {})
        return xr.open_dataset(path, chunks=chunks)
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as netCDF or zarr ({exc})") from exc


def open_field(path: Path, var: str, chunks: dict[str, int] | None = None) -> GeoField:
    """Variable ``var`` of the netCDF/zarr file ``path`` as a :class:`GeoField` (lazy; dask chunks if given).

    ``chunks`` uses the canonical names ``time``, ``lat``, ``lon``. Extra
    length-1 dimensions (e.g. a surface level) are dropped; any other extra
    dimension is an error.
    """
    ds = open_dataset(path, chunks=None)
    if var not in ds.data_vars:
        raise ConfigError(f"{path}: no variable {var!r}; the file holds {', '.join(map(str, ds.data_vars)) or 'none'}")
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
    if chunks:
        data = data.chunk(chunks)
    if data.sizes["lat"] < 2 or data.sizes["lon"] < 2:
        raise DataError(f"{path}:{var}: the grid is {data.sizes['lat']} x {data.sizes['lon']}; need at least 2 x 2")
    return GeoField(data=data, var=var, names=names, attrs=dict(data.attrs), global_attrs=dict(ds.attrs))


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
    variable keeps its CF attributes and the file keeps the input's global
    attributes, with ``history`` appended. ``extra`` adds variables such as
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
    coords = {n["time"]: np.asarray(times), n["lat"]: template.lat, n["lon"]: template.lon,
              "member": np.arange(members.shape[0], dtype=np.int32)}
    attrs = {k: template.attrs[k] for k in CF_ATTRS if k in template.attrs}
    variables = {template.var: (("member", n["time"], n["lat"], n["lon"]), members, attrs)}
    for name, values in (extra or {}).items():
        values = np.asarray(values)
        values = values.astype(np.int8) if values.dtype == bool else values.astype(np.float32)
        variables[name] = ((n["time"], n["lat"], n["lon"]), values, {})
    ds = xr.Dataset(variables, coords=coords)
    for axis in ("lat", "lon", "time"):
        source = template.data[axis]
        ds[n[axis]].attrs.update({k: v for k, v in source.attrs.items() if isinstance(v, (str, int, float))})
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
