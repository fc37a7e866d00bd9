"""Crafted hostile files: each would run a payload if its reader unpickled it.

Every builder takes a folder, writes one file there and returns
:class:`Crafted`: the file and the marker path that the payload creates when
it runs. A safe reader must refuse the file (or read it as plain data)
without the marker appearing. The payload only creates an empty marker file.

Builders (the file each writes):

* :func:`hdf_pickled_column_name` — pandas HDF whose column index holds one
  pickled object (pandas stores it as an object VLArray);
* :func:`hdf_object_block` — pandas HDF with an object-dtype column;
* :func:`hdf_object_index` — pandas HDF whose row index holds an object;
* :func:`hdf_pickled_attribute` — a clean pandas HDF plus one HDF5 attribute
  holding a pickle, which PyTables unpickles as soon as the node is opened;
* :func:`npz_object_array` — a ``.npz`` whose array is object dtype;
* :func:`parquet_pickled_extension` — a Parquet column tagged as pyarrow's
  former pickle-based extension type (``arrow.py_extension_type``);
* :func:`fits_yaml_object` — a FITS table whose astropy column metadata asks
  YAML to construct a Python object.

:data:`BUILDERS` maps a short name to each builder.
"""

from __future__ import annotations

import pathlib
import pickle
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd


class Crafted(NamedTuple):
    """A crafted file and the marker its payload would create."""

    path: Path
    marker: Path


class Payload:
    """Unpickles as ``Path(marker).touch()``: the marker's existence proves the unpickling ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return pathlib.Path.touch, (pathlib.Path(self.marker),)


def readings_frame(n_steps: int = 12, n_sensors: int = 3) -> pd.DataFrame:
    """A small METR-LA-like frame: speeds (mph) ``[n_steps, n_sensors]``, 5-min DatetimeIndex, str sensor ids."""
    times = pd.date_range("2012-03-01", periods=n_steps, freq="5min")
    speeds = 50 + 10 * np.sin(np.arange(n_steps * n_sensors, dtype=np.float64).reshape(n_steps, n_sensors))
    return pd.DataFrame(speeds, index=times, columns=[str(773869 + i) for i in range(n_sensors)])


def _marker(folder: Path, name: str) -> Path:
    marker = Path(folder) / f"{name}.ran"
    marker.unlink(missing_ok=True)
    return marker


def _to_hdf(frame: pd.DataFrame, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pandas warns that it pickles object data: the point here
        frame.to_hdf(path, key="df", format="fixed")


def hdf_pickled_column_name(folder: Path) -> Crafted:
    """``readings.h5``: key ``df``; the first column name is a pickled object."""
    marker = _marker(folder, "hdf_pickled_column_name")
    frame = readings_frame()
    frame.columns = [Payload(marker), *frame.columns[1:]]
    path = Path(folder) / "pickled_column_name.h5"
    _to_hdf(frame, path)
    return Crafted(path, marker)


def hdf_object_block(folder: Path) -> Crafted:
    """``object_block.h5``: key ``df``; one column holds objects, stored as a pickled block."""
    marker = _marker(folder, "hdf_object_block")
    frame = readings_frame().astype({"773870": object})
    frame.iloc[0, 1] = Payload(marker)
    path = Path(folder) / "object_block.h5"
    _to_hdf(frame, path)
    return Crafted(path, marker)


def hdf_object_index(folder: Path) -> Crafted:
    """``object_index.h5``: key ``df``; the row index holds an object among the timestamps."""
    marker = _marker(folder, "hdf_object_index")
    frame = readings_frame()
    frame.index = pd.Index([Payload(marker), *frame.index[1:]], dtype=object)
    path = Path(folder) / "object_index.h5"
    _to_hdf(frame, path)
    return Crafted(path, marker)


def hdf_pickled_attribute(folder: Path, node: str = "/df/axis1", name: str = "freq") -> Crafted:
    """``pickled_attribute.h5``: a clean frame whose ``node`` attribute ``name`` is a pickled object."""
    import tables

    marker = _marker(folder, "hdf_pickled_attribute")
    path = Path(folder) / "pickled_attribute.h5"
    _to_hdf(readings_frame(), path)
    with tables.open_file(str(path), mode="a") as handle:
        handle.set_node_attr(node, name, Payload(marker))
    return Crafted(path, marker)


def npz_object_array(folder: Path, key: str = "data") -> Crafted:
    """``object_array.npz``: array ``key`` is object dtype ``[2]`` (pickled inside the archive)."""
    marker = _marker(folder, "npz_object_array")
    path = Path(folder) / "object_array.npz"
    np.savez(path, **{key: np.array([Payload(marker), 1.0], dtype=object)})
    return Crafted(path, marker)


def parquet_pickled_extension(folder: Path) -> Crafted:
    """``pickled_extension.parquet``: columns ra, dec, and ``z`` tagged ``arrow.py_extension_type`` with a pickle."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    marker = _marker(folder, "parquet_pickled_extension")
    tag = {
        b"ARROW:extension:name": b"arrow.py_extension_type",
        b"ARROW:extension:metadata": pickle.dumps(Payload(marker)),
    }
    schema = pa.schema(
        [pa.field("ra", pa.float64()), pa.field("dec", pa.float64()), pa.field("z", pa.binary(), metadata=tag)]
    )
    table = pa.table({"ra": [10.0, 11.0], "dec": [1.0, 2.0], "z": [b"a", b"b"]}, schema=schema)
    path = Path(folder) / "pickled_extension.parquet"
    pq.write_table(table, path)
    return Crafted(path, marker)


def fits_yaml_object(folder: Path, how: str = "yaml_tag") -> Crafted:
    """``yaml_object.fits``: columns ra, dec; astropy's serialized-column header asks for ``Path(marker).touch()``.

    ``how``: ``"yaml_tag"`` (a ``!!python/object/apply`` YAML tag) or
    ``"mixin_class"`` (a mixin column whose ``__class__`` is ``pathlib.Path``).
    """
    from astropy.io import fits

    marker = _marker(folder, "fits_yaml_object")
    columns = [fits.Column(name=n, format="D", array=np.array([10.0, 11.0])) for n in ("ra", "dec")]
    hdu = fits.BinTableHDU.from_columns(columns)
    if how == "yaml_tag":
        meta = ["meta: !!python/object/apply:pathlib.Path.touch", f"- !!python/object/apply:pathlib.Path ['{marker}']"]
    else:
        meta = [
            "meta: !!omap",
            "- __serialized_columns__:",
            "    ra:",
            "      __class__: pathlib.Path",
            f"      value: !astropy.table.SerializedColumn {{name: ra, path: '{marker}'}}",
        ]
    lines = ["datatype:", "- {name: ra, datatype: float64}", "- {name: dec, datatype: float64}", *meta]
    for line in ["--BEGIN-ASTROPY-SERIALIZED-COLUMNS--", *lines, "--END-ASTROPY-SERIALIZED-COLUMNS--"]:
        hdu.header.add_comment(line)
    path = Path(folder) / f"yaml_object_{how}.fits"
    hdu.writeto(path, overwrite=True)
    return Crafted(path, marker)


BUILDERS: dict[str, Callable[[Path], Crafted]] = {
    "hdf_pickled_column_name": hdf_pickled_column_name,
    "hdf_object_block": hdf_object_block,
    "hdf_object_index": hdf_object_index,
    "hdf_pickled_attribute": hdf_pickled_attribute,
    "npz_object_array": npz_object_array,
    "parquet_pickled_extension": parquet_pickled_extension,
    "fits_yaml_object": fits_yaml_object,
}
