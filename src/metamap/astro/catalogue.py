"""Photometric catalogues: ugriz magnitudes (with errors where present), position, class, redshift.

Read from CSV, Parquet, or FITS tables (through astropy, when installed).
Column names are matched case-insensitively; each band is found as ``u`` or
``modelMag_u`` / ``psfMag_u`` / ``mag_u`` / ``u_mag``, its error as ``err_u``
/ ``u_err`` / ``modelMagErr_u`` / ``magerr_u``. A missing magnitude is NaN
or a survey sentinel (-9999, 99, 99.99: any value <= -90 or >= 90); it
becomes ``False`` in the validity mask and NaN in ``mags``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from metamap.errors import DataError, one_line

BANDS = ("u", "g", "r", "i", "z")
SENTINEL_LIMIT = 90.0  # |magnitude| >= 90 marks a missing value (-9999, 99, 99.99)
CLASSES = ("STAR", "GALAXY", "QSO")
_MAG_NAMES = ("{b}", "modelmag_{b}", "psfmag_{b}", "petromag_{b}", "mag_{b}", "{b}_mag", "{b}mag")
_ERR_NAMES = ("err_{b}", "{b}_err", "modelmagerr_{b}", "psfmagerr_{b}", "magerr_{b}", "{b}_magerr", "{b}err")
_REDSHIFT_NAMES = ("redshift", "z_spec", "zspec", "specz", "spec_z")
_CLASS_NAMES = ("class", "spec_class", "type_name")
# What pandas, pyarrow (its errors subclass these) and astropy raise on a corrupt file; no reader here unpickles.
_CORRUPT_FILE_ERRORS = (OSError, ValueError, TypeError, KeyError, IndexError, NotImplementedError)


@dataclass(frozen=True)
class Catalogue:
    """N objects of a photometric catalogue.

    ``mags [N, 5]`` ugriz magnitudes (NaN where missing); ``valid [N, 5]``
    bool, ``True`` where the band was measured; ``mag_err [N, 5]`` or None;
    ``ra``, ``dec`` ``[N]`` degrees or None; ``label [N]`` upper-case class
    names (STAR / GALAXY / QSO) or None; ``redshift [N]`` spectroscopic or None.
    """

    mags: np.ndarray
    valid: np.ndarray
    mag_err: np.ndarray | None = None
    ra: np.ndarray | None = None
    dec: np.ndarray | None = None
    label: np.ndarray | None = None
    redshift: np.ndarray | None = None
    source: str = ""

    def __len__(self) -> int:
        return int(self.mags.shape[0])

    def subset(self, rows: np.ndarray) -> Catalogue:
        """The objects at ``rows`` (integer indices or a boolean mask)."""
        pick = lambda a: None if a is None else a[rows]  # noqa: E731
        return Catalogue(
            self.mags[rows],
            self.valid[rows],
            pick(self.mag_err),
            pick(self.ra),
            pick(self.dec),
            pick(self.label),
            pick(self.redshift),
            self.source,
        )

    def of_class(self, name: str) -> Catalogue:
        """Only the objects of spectroscopic class ``name`` (needs a class column)."""
        if self.label is None:
            raise DataError(f"{self.source}: the catalogue has no class column (expected one of {_CLASS_NAMES})")
        return self.subset(self.label == name.upper())

    def need(self, *fields: str) -> None:
        """Raise DataError unless every named field (``ra``, ``dec``, ``redshift``, ``label``) is present."""
        missing = [f for f in fields if getattr(self, f) is None]
        if missing:
            raise DataError(
                f"{self.source}: the catalogue lacks {missing}; columns expected: ra, dec, redshift (or z_spec), class"
            )


def read_table(path: Path) -> pd.DataFrame:
    """The catalogue file as a DataFrame (.csv[.gz], .parquet/.pq, .fits/.fit[.gz])."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"catalogue {path} not found")
    name = path.name.lower()
    try:
        if name.endswith((".csv", ".csv.gz", ".txt")):
            return pd.read_csv(path)
        if name.endswith((".parquet", ".pq")):
            return pd.read_parquet(path)
        if name.endswith((".fits", ".fit", ".fits.gz", ".fit.gz")):
            try:
                from astropy.table import Table
                from astropy.table.meta import YamlParseError
            except ImportError:
                raise DataError(f"reading {path} needs astropy (pip install astropy)") from None
            try:
                return Table.read(path).to_pandas()
            except YamlParseError as exc:  # astropy's YAML loader builds plain data only and refuses the rest
                raise DataError(
                    f"catalogue {path}: its astropy column header is not plain YAML data ({one_line(exc)})"
                ) from None
    except _CORRUPT_FILE_ERRORS as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"catalogue {path} cannot be read ({one_line(exc)})") from None
    raise DataError(f"catalogue {path}: unknown format; expected .csv, .parquet or .fits")


def load_catalogue(path: Path) -> Catalogue:
    """Read a catalogue file; see :func:`catalogue_from_frame`."""
    return catalogue_from_frame(read_table(path), source=str(path))


def catalogue_from_frame(frame: pd.DataFrame, source: str = "catalogue") -> Catalogue:
    """Build a :class:`Catalogue` from a table; raise DataError on missing bands or all-missing rows."""
    columns = {str(c).lower(): c for c in frame.columns}
    mag_cols = [_find(columns, [n.format(b=b) for n in _MAG_NAMES]) for b in BANDS]
    if any(c is None for c in mag_cols):
        lost = [b for b, c in zip(BANDS, mag_cols) if c is None]
        raise DataError(
            f"{source}: no magnitude column for band(s) {lost}; expected columns named "
            f"u g r i z (or modelMag_u, psfMag_u, ...), got {list(frame.columns)}"
        )
    mags = _numeric(frame, mag_cols, source)
    valid = np.isfinite(mags) & (np.abs(mags) < SENTINEL_LIMIT)
    empty = np.flatnonzero(~valid.any(1))
    if empty.size:
        raise DataError(
            f"{source}: {empty.size} row(s) have no valid magnitude in any band "
            f"(first rows {empty[:5].tolist()}); drop them or give at least one band"
        )
    mags = np.where(valid, mags, np.nan)
    err_cols = [_find(columns, [n.format(b=b) for n in _ERR_NAMES]) for b in BANDS]
    mag_err = None
    if all(c is not None for c in err_cols):
        mag_err = _numeric(frame, err_cols, source)
        mag_err = np.where(valid & np.isfinite(mag_err) & (mag_err >= 0) & (mag_err < SENTINEL_LIMIT), mag_err, np.nan)
    ra_col, dec_col = _find(columns, ["ra"]), _find(columns, ["dec"])
    z_col, class_col = _find(columns, _REDSHIFT_NAMES), _find(columns, _CLASS_NAMES)
    label = None
    if class_col is not None:
        label = frame[class_col].astype(str).str.strip().str.upper().to_numpy()
    redshift = None if z_col is None else _numeric(frame, [z_col], source)[:, 0]
    return Catalogue(
        mags=mags,
        valid=valid,
        mag_err=mag_err,
        ra=None if ra_col is None else _numeric(frame, [ra_col], source)[:, 0],
        dec=None if dec_col is None else _numeric(frame, [dec_col], source)[:, 0],
        label=label,
        redshift=redshift,
        source=source,
    )


def _find(columns: dict[str, str], names: list[str]) -> str | None:
    for name in names:
        if name.lower() in columns:
            return columns[name.lower()]
    return None


def _numeric(frame: pd.DataFrame, cols: list[str], source: str) -> np.ndarray:
    try:
        return frame[cols].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{source}: column(s) {cols} must be numeric: {exc}") from None
