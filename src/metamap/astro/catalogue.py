"""Photometric catalogues: ugriz magnitudes (with errors where present), position, class, redshift.

Read from CSV, Parquet, or FITS tables (through astropy, when installed).
Which column holds what is given by ``columns`` (the CLI's ``--columns
u=dered_u,g=dered_g,...,redshift=z_spec``: keys :data:`FIELDS`) or else
found by name, case-insensitively: each band as ``u`` or ``modelMag_u`` /
``cModelMag_u`` / ``dered_u`` / ``psfMag_u`` / ``mag_u`` / ``u_mag``, its
error as ``err_u`` / ``u_err`` / ``modelMagErr_u`` / ``magerr_u``, the
redshift as ``redshift`` / ``z_spec`` / ``specz``. Nothing is guessed:
two columns that fit one field, or a bare ``z`` column beside bands found
under other names (the z-band or a redshift?), is a DataError naming the
``--columns`` entry to pass; a band column whose values are not
magnitudes (median below 5, e.g. a redshift read as the z-band) is one too.
A missing magnitude is NaN or a survey sentinel (-9999, 99, 99.99: any
value <= -90 or >= 90); it becomes ``False`` in the validity mask and NaN
in ``mags``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from metamap.errors import ConfigError, DataError, one_line

BANDS = ("u", "g", "r", "i", "z")
SENTINEL_LIMIT = 90.0  # |magnitude| >= 90 marks a missing value (-9999, 99, 99.99)
CLASSES = ("STAR", "GALAXY", "QSO")
_MAG_NAMES = (
    "{b}",
    "modelmag_{b}",
    "cmodelmag_{b}",
    "dered_{b}",
    "psfmag_{b}",
    "petromag_{b}",
    "mag_{b}",
    "{b}_mag",
    "{b}mag",
)
_ERR_NAMES = (
    "err_{b}",
    "{b}_err",
    "modelmagerr_{b}",
    "cmodelmagerr_{b}",
    "psfmagerr_{b}",
    "magerr_{b}",
    "{b}_magerr",
    "{b}err",
)
_REDSHIFT_NAMES = ("redshift", "z_spec", "zspec", "specz", "spec_z")
_CLASS_NAMES = ("class", "spec_class", "type_name")
FIELDS = (*BANDS, *(f"{b}_err" for b in BANDS), "redshift", "ra", "dec", "class")
"""The keys of a column mapping (``--columns``): the bands, their errors, redshift, position and class."""
MIN_MEDIAN_MAG = 5.0  # a band column whose valid values have a smaller median holds no apparent magnitudes
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
    columns: dict[str, str] = field(default_factory=dict)
    """Which file column each field (:data:`FIELDS`) was read from."""

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
            self.columns,
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
                f"{self.source}: the catalogue lacks {missing}; columns expected: ra, dec, redshift (or z_spec), "
                "class; a column named otherwise is given by --columns, e.g. --columns redshift=zspec_col"
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


def load_catalogue(path: Path, columns: dict[str, str] | None = None) -> Catalogue:
    """Read a catalogue file; see :func:`catalogue_from_frame`."""
    return catalogue_from_frame(read_table(path), source=str(path), columns=columns)


def parse_columns(text: str | None) -> dict[str, str]:
    """``"u=dered_u,g=dered_g,redshift=z_spec"`` -> ``{"u": "dered_u", ...}`` (None or "" -> ``{}``).

    Raises:
        ConfigError: an entry is not ``key=column``, a key is not one of :data:`FIELDS`,
            or a key or a column is named twice.
    """
    mapping: dict[str, str] = {}
    for entry in (text or "").split(","):
        if not entry.strip():
            continue
        key, sep, column = (part.strip() for part in entry.partition("="))
        if not sep or not key or not column:
            raise ConfigError(f"--columns: expected entries like u=dered_u,redshift=z_spec, got {entry.strip()!r}")
        if key.lower() not in FIELDS:
            raise ConfigError(f"--columns: unknown field {key!r}; expected some of {', '.join(FIELDS)}")
        if key.lower() in mapping:
            raise ConfigError(f"--columns: field {key!r} is given twice")
        if column in mapping.values():
            raise ConfigError(f"--columns: column {column!r} is given for two fields")
        mapping[key.lower()] = column
    return mapping


def catalogue_from_frame(
    frame: pd.DataFrame, source: str = "catalogue", columns: dict[str, str] | None = None
) -> Catalogue:
    """Build a :class:`Catalogue` from a table, ``columns`` naming the column of any field (:data:`FIELDS`).

    Raises:
        DataError: a mapped column is absent; a band has no column, or two; an ambiguous ``z``;
            a band column that holds no magnitudes; non-numeric values; rows with no valid band.
    """
    used = _resolve_columns(frame, source, columns or {})
    mag_cols = [used[b] for b in BANDS]
    mags = _numeric(frame, mag_cols, source)
    valid = np.isfinite(mags) & (np.abs(mags) < SENTINEL_LIMIT)
    for b, col, values, ok in zip(BANDS, mag_cols, mags.T, valid.T, strict=True):
        if ok.any() and np.median(values[ok]) < MIN_MEDIAN_MAG:
            raise DataError(
                f"{source}: column {col!r}, read as the {b}-band magnitude, has median {np.median(values[ok]):.3g}, "
                f"not an apparent magnitude; if it is a redshift, pass --columns redshift={col},{b}=<{b}-band column>"
            )
    empty = np.flatnonzero(~valid.any(1))
    if empty.size:
        raise DataError(
            f"{source}: {empty.size} row(s) have no valid magnitude in any band "
            f"(first rows {empty[:5].tolist()}); drop them or give at least one band"
        )
    mags = np.where(valid, mags, np.nan)
    mag_err = None
    if all(f"{b}_err" in used for b in BANDS):
        mag_err = _numeric(frame, [used[f"{b}_err"] for b in BANDS], source)
        mag_err = np.where(valid & np.isfinite(mag_err) & (mag_err >= 0) & (mag_err < SENTINEL_LIMIT), mag_err, np.nan)
    label = None
    if "class" in used:
        label = frame[used["class"]].astype(str).str.strip().str.upper().to_numpy()
    one = {name: _numeric(frame, [used[name]], source)[:, 0] for name in ("ra", "dec", "redshift") if name in used}
    return Catalogue(
        mags=mags,
        valid=valid,
        mag_err=mag_err,
        ra=one.get("ra"),
        dec=one.get("dec"),
        label=label,
        redshift=one.get("redshift"),
        source=source,
        columns=used,
    )


def _resolve_columns(frame: pd.DataFrame, source: str, mapping: dict[str, str]) -> dict[str, str]:
    """The file column of each field: ``mapping``'s, else the one column whose name fits (see module notes)."""
    names = [str(c) for c in frame.columns]
    lower = {name.lower(): name for name in names}
    used: dict[str, str] = {}
    for key, column in mapping.items():
        found = column if column in names else lower.get(column.lower())
        if found is None:
            raise DataError(f"{source}: --columns {key}={column}: no such column; the file has {names}")
        used[key] = found
    taken = set(used.values())

    def find(key: str, candidates: Sequence[str], what: str) -> None:
        if key in used:
            return
        fits = list(dict.fromkeys(lower[n] for n in candidates if n in lower and lower[n] not in taken))
        if len(fits) > 1:
            raise DataError(f"{source}: columns {fits} could each be the {what}; pass --columns {key}=<one of them>")
        if fits:
            used[key] = fits[0]
            taken.add(fits[0])

    for b in BANDS:
        find(b, [n.format(b=b) for n in _MAG_NAMES], f"{b}-band magnitude")
    lost = [b for b in BANDS if b not in used]
    if lost:
        raise DataError(
            f"{source}: no magnitude column for band(s) {lost}; expected columns named u g r i z "
            f"(or modelMag_u, dered_u, ...) or a mapping such as --columns {lost[0]}=<column>; got {names}"
        )
    found_otherwise = [used[b] for b in BANDS[:-1] if b not in mapping and used[b].lower() != b]
    if "z" not in mapping and used["z"].lower() == "z" and found_otherwise:
        others = ", ".join(used[b] for b in BANDS[:-1])
        raise DataError(
            f"{source}: column 'z' could be the z-band magnitude or the redshift (the other bands are {others}); "
            "pass --columns z=z for the band, or --columns redshift=z,z=<z-band column>"
        )
    for b in BANDS:
        find(f"{b}_err", [n.format(b=b) for n in _ERR_NAMES], f"{b}-band error")
    find("redshift", _REDSHIFT_NAMES, "redshift")
    find("ra", ["ra"], "right ascension")
    find("dec", ["dec"], "declination")
    find("class", _CLASS_NAMES, "class")
    return used


def _numeric(frame: pd.DataFrame, cols: list[str], source: str) -> np.ndarray:
    try:
        return frame[cols].apply(pd.to_numeric, errors="raise").to_numpy(dtype=np.float64)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{source}: column(s) {cols} must be numeric: {exc}") from None
