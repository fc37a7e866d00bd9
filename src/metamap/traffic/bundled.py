"""The LA week bundled with the package, so that ``metamap demo`` runs anywhere.

``bundled/metr_la_week.npz`` holds ``../shared/data/traffic/metr-la-week.h5``
(207 METR-LA sensors, 2012-03-01 to 03-07, 5 min, mph), the DCRNN adjacency
``adj_mx_la.pkl`` and the sensor locations, converted only in format (a
compressed npz, float32 as in the source) by :func:`write_bundle`. Provenance
and licences: ``bundled/ATTRIBUTION.md``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from metamap.errors import DataError, one_line
from metamap.traffic.data import TrafficData

BUNDLE = Path(__file__).with_name("bundled") / "metr_la_week.npz"


def write_bundle(data: TrafficData, path: Path = BUNDLE) -> None:
    """Store ``data`` (with its adjacency and coordinates) as a compressed npz without pickled objects."""
    np.savez_compressed(
        path,
        values=data.values,
        times=data.times.astype("datetime64[ns]").astype(np.int64),
        sensor_ids=np.array(data.sensor_ids),
        adjacency=data.adjacency,
        coords=data.coords,
    )


def load_bundled_la(path: Path = BUNDLE) -> TrafficData:
    """The bundled METR-LA week: values ``[2016, 207]`` mph, DCRNN adjacency, coordinates."""
    if not path.is_file():
        raise DataError(f"the bundled LA week is missing: expected {path} (reinstall metamap)")
    try:
        with np.load(path, allow_pickle=False) as bundle:  # no pickled objects: see write_bundle
            arrays = {key: bundle[key] for key in ("values", "times", "sensor_ids", "adjacency", "coords")}
    except (OSError, ValueError, KeyError, EOFError) as exc:
        raise DataError(f"the bundled LA week {path} cannot be read ({one_line(exc)}); reinstall metamap") from exc
    values = arrays["values"]
    times = arrays["times"].astype("datetime64[ns]")
    return TrafficData(
        values=values,
        mask=values != 0,
        times=times,
        step_minutes=int((times[1] - times[0]) // np.timedelta64(1, "m")),
        sensor_ids=tuple(str(s) for s in arrays["sensor_ids"]),
        adjacency=arrays["adjacency"],
        coords=arrays["coords"],
        name="metr-la-week",
    )
