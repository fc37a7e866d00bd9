"""Forecast files for a dashboard: what ``metamap traffic predict`` writes.

- ``.csv``: one row per sensor and lead: ``sensor_id, issued, valid_time,
  lead_minutes``, then ``forecast`` (the run's method, named in ``method``) and
  one column per simple baseline. Times are the file's own wall-clock times
  (ISO 8601, to the minute), in the zone of the ``timezone`` column where the
  file named one.
- ``.nc`` (NetCDF, needs the ``geo`` extra): ``forecast [sensor, lead]`` and
  one variable per baseline, coordinates ``sensor_id``, ``lead_minutes`` and
  ``valid_time``; ``issued``, ``method`` and ``timezone`` as attributes.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from metamap.report import atomic_write_bytes


def write_forecasts(
    path: Path,
    sensor_ids: Sequence[str],
    issued: np.datetime64,
    valid: np.ndarray,
    forecasts: dict[str, torch.Tensor],
    method: str,
    step_minutes: int,
    timezone: str | None = None,
) -> Path:
    """Write ``forecasts`` (``{name: [N, H]}`` in the readings' unit, ``method`` first) issued at ``issued``
    for the times ``valid [H]`` to ``path`` (``.csv`` or ``.nc``), atomically."""
    leads = step_minutes * np.arange(1, len(valid) + 1)
    arrays = {("forecast" if name == method else name): f.numpy().astype(np.float64) for name, f in forecasts.items()}
    if path.suffix.lower() == ".nc":
        _write_netcdf(path, sensor_ids, issued, valid, leads, arrays, method, timezone)
    else:
        _write_csv(path, sensor_ids, issued, valid, leads, arrays, method, timezone)
    return path


def _write_csv(
    path: Path,
    sensor_ids: Sequence[str],
    issued: np.datetime64,
    valid: np.ndarray,
    leads: np.ndarray,
    arrays: dict[str, np.ndarray],
    method: str,
    timezone: str | None,
) -> None:
    n, h = len(sensor_ids), len(valid)
    frame = pd.DataFrame(
        {
            "sensor_id": np.repeat(np.asarray(sensor_ids, dtype=str), h),
            "issued": np.datetime_as_string(issued, unit="m"),
            "valid_time": np.tile(np.datetime_as_string(valid, unit="m"), n),
            "lead_minutes": np.tile(leads, n),
            "method": method,
            **{name: values.reshape(-1) for name, values in arrays.items()},
        }
    )
    if timezone:
        frame["timezone"] = timezone
    atomic_write_bytes(path, frame.to_csv(index=False, float_format="%.6g").encode())


def _write_netcdf(
    path: Path,
    sensor_ids: Sequence[str],
    issued: np.datetime64,
    valid: np.ndarray,
    leads: np.ndarray,
    arrays: dict[str, np.ndarray],
    method: str,
    timezone: str | None,
) -> None:
    import xarray as xr

    dataset = xr.Dataset(
        {name: (("sensor", "lead"), values) for name, values in arrays.items()},
        coords={
            "sensor_id": ("sensor", np.asarray(sensor_ids, dtype=str)),
            "lead_minutes": ("lead", leads),
            "valid_time": ("lead", valid.astype("datetime64[ns]")),
        },
        attrs={
            "issued": str(np.datetime_as_string(issued, unit="m")),
            "method": method,
            "timezone": timezone or "unknown (the file named none)",
            "title": "metamap traffic predict: forecasts from the end of the readings",
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")  # renamed into place: no half-written file
    dataset.to_netcdf(temporary)
    temporary.replace(path)
