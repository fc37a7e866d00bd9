"""Gap-filling baselines on one field ``[H, W]``: field mean, linear/cubic interpolation, ordinary kriging.

All take the field (values where ``observed`` is True; the rest is ignored),
the observed mask and the grid's ``lat [H]``, ``lon [W]`` in degrees, and
return a full field ``[H, W]`` (kriging also its predictive variance).
Distances are measured on a local equirectangular plane (longitude scaled by
cos of the mean latitude), in degrees of latitude. Pass ``background`` (e.g.
the training climatology ``[H, W]``) to interpolate the anomaly from it and
add it back.
"""

from __future__ import annotations

import numpy as np

from metamap.errors import ConfigError, DataError

VARIOGRAMS = ("exponential", "spherical", "gaussian")


def _plane(lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Grid point coordinates ``y, x [H, W]`` in degrees of latitude on a local plane."""
    lat, lon = np.asarray(lat, np.float64), np.asarray(lon, np.float64)
    yy, xx = np.meshgrid(lat, lon * np.cos(np.deg2rad(lat.mean())), indexing="ij")
    return yy, xx


def _split(values: np.ndarray, observed: np.ndarray, background: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values, np.float64)
    observed = np.asarray(observed, bool) & np.isfinite(values)
    if observed.sum() < 3:
        raise DataError(f"gap-filling needs at least 3 observed pixels, got {int(observed.sum())}")
    anomaly = values - (background if background is not None else 0.0)
    return anomaly, observed


def field_mean(values: np.ndarray, observed: np.ndarray, background: np.ndarray | None = None) -> np.ndarray:
    """Every pixel set to the mean of the observed ones (of the anomaly, when ``background`` is given)."""
    anomaly, observed = _split(values, observed, background)
    filled = np.full(anomaly.shape, anomaly[observed].mean())
    return filled + (background if background is not None else 0.0)


def interpolate(
    values: np.ndarray,
    observed: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    method: str = "linear",
    background: np.ndarray | None = None,
) -> np.ndarray:
    """``scipy.interpolate.griddata`` (``linear`` | ``cubic``) from the observed pixels; outside their convex
    hull, the nearest observed value."""
    from scipy.interpolate import griddata

    if method not in ("linear", "cubic"):
        raise ConfigError(f"interpolation method must be linear or cubic, got {method!r}")
    anomaly, observed = _split(values, observed, background)
    yy, xx = _plane(lat, lon)
    points = np.stack([yy[observed], xx[observed]], axis=1)
    targets = np.stack([yy.ravel(), xx.ravel()], axis=1)
    filled = griddata(points, anomaly[observed], targets, method=method).reshape(anomaly.shape)
    outside = ~np.isfinite(filled)
    if outside.any():
        filled[outside] = griddata(points, anomaly[observed], targets[outside.ravel()], method="nearest")
    return filled + (background if background is not None else 0.0)


def ordinary_kriging(
    values: np.ndarray,
    observed: np.ndarray,
    lat: np.ndarray,
    lon: np.ndarray,
    variogram: str = "exponential",
    background: np.ndarray | None = None,
    nlags: int = 12,
    nonnegative: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """PyKrige ordinary kriging with a ``variogram`` model whose parameters are fitted to this field.

    Returns ``(mean [H, W], variance [H, W])``; the variance is kriging's
    predictive variance (zero at observed pixels up to the fitted nugget).
    Observations that are all equal (say a completely dry precipitation
    field) have no variogram to fit: the answer is then that constant with
    zero variance. ``nonnegative`` clips the mean at 0 (precipitation, in its own unit).
    """
    from pykrige.ok import OrdinaryKriging

    if variogram not in VARIOGRAMS:
        raise ConfigError(f"variogram must be one of {', '.join(VARIOGRAMS)}, got {variogram!r}")
    anomaly, observed = _split(values, observed, background)
    known = anomaly[observed]
    if np.all(known == known[0]):
        constant = np.full(anomaly.shape, known[0]) + (background if background is not None else 0.0)
        return (np.maximum(constant, 0.0) if nonnegative else constant), np.zeros(anomaly.shape)
    yy, xx = _plane(lat, lon)
    model = OrdinaryKriging(xx[observed], yy[observed], known, variogram_model=variogram, nlags=nlags)
    mean, variance = model.execute("points", xx.ravel(), yy.ravel())
    mean = np.asarray(mean, np.float64).reshape(anomaly.shape)
    variance = np.maximum(np.asarray(variance, np.float64).reshape(anomaly.shape), 0.0)
    mean = mean + (background if background is not None else 0.0)
    return (np.maximum(mean, 0.0) if nonnegative else mean), variance
