"""Gap-filling evaluation on any field: the baselines and a fill run scored on pixels hidden by a mask.

Shared by ``metamap geo evaluate`` (a user's file) and ``metamap bench geo``
(the bundled grids), so that the benchmark is the command on the bundled data.

A :class:`Case` is one time step: the file's field (the truth), the observed
mask hiding some of it, and the run's climatology at that time. The scored
pixels are the hidden ones where the truth is finite. Methods:

- baselines (:func:`baseline_scores`): the field mean of the observed pixels
  (raw and on the anomaly from the climatology), the climatology itself,
  linear and cubic interpolation (raw; linear also on the anomaly), ordinary
  kriging on the raw field and on the anomaly, each with the variogram model
  chosen on tuning fields (:func:`choose_variogram`);
- ``kriging_local_anomaly``: the estimate the run's residual stands on, kriging
  of the model-space anomaly from the nearest observed pixels with the
  variogram fitted at training (:mod:`metamap.geo.kriging`), so that a table
  shows what the network adds to its own input (the fill's own estimate,
  :func:`metamap.geo.fill.residual_inputs`, kriged once for both);
- the run (:func:`evaluate_fill`): the residual diffusion ensemble, raw and
  with the calibration of :mod:`metamap.geo.calibration` (mean weight on the
  kriging it stands on, spread factor) fitted on the same
  tuning fields (tuning never sees the evaluated times).

Scores (file unit, cos-latitude weighted, on the scored pixels): RMSE (of
the ensemble mean), CRPS (fair CRPS for ensembles, MAE for a deterministic
fill, the closed-form Gaussian CRPS for kriging from its variance),
spread/skill; the rank histogram of the calibrated ensemble.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from metamap.errors import ConfigError
from metamap.geo import baselines, metrics
from metamap.geo.anomaly import FieldScaler, field_fraction
from metamap.geo.calibration import fit_calibration
from metamap.geo.data import static_channels
from metamap.geo.fill import ResidualInputs, residual_fill, residual_inputs, run_variogram
from metamap.geo.io import GeoField
from metamap.geo.masks import make_mask
from metamap.geo.models import GeoModel
from metamap.geo.transforms import dry_accuracy, fraction_negative
from metamap.report import mean_ci95

SCENARIOS = {"sparse90": ("stations", 0.9), "blobs40": ("blobs", 0.4), "swath": ("swaths", 0.5)}
"""Named masks: (kind of :func:`metamap.geo.masks.make_mask`, missing fraction)."""
KRIGING = ("kriging", "kriging_anomaly")
TUNE_SEED, TEST_SEED = 5000, 1000  # mask and sampler seeds of the n-th tuning / evaluated field: seed + n

MaskMaker = Callable[[int, tuple[int, int]], np.ndarray]
"""``(field number, grid shape) -> observed [H, W]`` bool."""


def timed(fn: Callable[..., Any], *args: Any) -> tuple[Any, float]:
    """``(fn(*args), wall seconds)``."""
    start = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - start


def summarize(per_field: list[dict[str, float]], seconds: list[float] | None = None) -> dict[str, Any]:
    """Mean and 95% CI half-width of each score over fields; the median seconds per field."""
    out: dict[str, Any] = {}
    for key in per_field[0]:
        mean, ci = mean_ci95([row[key] for row in per_field])
        out[key], out[f"{key}_ci95"] = mean, ci
    if seconds is not None:
        out["seconds_median"] = statistics.median(seconds)
    out["n_fields"] = len(per_field)
    out["rmse_per_field"] = [row["rmse"] for row in per_field]
    return out


def ensemble_scores(
    ensemble: np.ndarray, truth: np.ndarray, mask: np.ndarray | None, lat: np.ndarray
) -> dict[str, float]:
    """RMSE of the mean, fair CRPS and spread/skill of ``ensemble [M, H, W]`` against ``truth [H, W]``."""
    return {
        "rmse": metrics.ensemble_mean_rmse(ensemble, truth, lat, mask),
        "crps": metrics.fair_crps(ensemble, truth, lat, mask),
        "spread_skill": metrics.spread_skill(ensemble, truth, lat, mask),
    }


def point_scores(
    prediction: np.ndarray, truth: np.ndarray, mask: np.ndarray | None, lat: np.ndarray
) -> dict[str, float]:
    """A deterministic field's RMSE and CRPS (= MAE)."""
    return {"rmse": metrics.rmse(prediction, truth, lat, mask), "crps": metrics.mae(prediction, truth, lat, mask)}


def scenario_masks(scenario: str) -> MaskMaker:
    """The masks of a named scenario of :data:`SCENARIOS`; field ``n`` draws from a generator seeded ``n``."""
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown mask {scenario!r}; expected one of {', '.join(SCENARIOS)} or a mask file")
    kind, missing = SCENARIOS[scenario]
    return lambda number, shape: make_mask(kind, shape, missing, np.random.default_rng(number))


@dataclass
class Case:
    """One field to fill: ``truth [H, W]`` (file unit, NaN = undefined), ``observed [H, W]`` bool (finite
    where True) and the run's ``climatology [H, W]`` at that time (file unit)."""

    truth: np.ndarray
    observed: np.ndarray
    climatology: np.ndarray

    @property
    def hidden(self) -> np.ndarray:
        """The field a method sees ``[H, W]``: the truth where observed, NaN elsewhere."""
        return np.where(self.observed, self.truth, np.nan)

    @property
    def gaps(self) -> np.ndarray:
        """The scored pixels ``[H, W]``: hidden and finite in the truth."""
        return ~self.observed & np.isfinite(self.truth)


def masked_case(
    field: GeoField, scaler: FieldScaler, fraction: np.ndarray, masks: MaskMaker, index: int, number: int
) -> Case:
    """The :class:`Case` of ``field`` at time ``index`` (``fraction [T]``: :func:`field_fraction`) under the mask
    ``masks(number, shape)``, with ``scaler``'s climatology at that time."""
    truth = field.values(slice(index, index + 1))[0]
    observed = np.asarray(masks(number, truth.shape), bool) & np.isfinite(truth)
    return Case(truth, observed, scaler.climatology_field(fraction[index : index + 1])[0])


def kriging_fill(
    case: Case, lat: np.ndarray, lon: np.ndarray, anomaly: bool, variogram: str, nonnegative: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Ordinary kriging of ``case`` (of its anomaly from the climatology when ``anomaly``):
    ``(mean [H, W], standard deviation [H, W])``, file unit."""
    background = case.climatology if anomaly else None
    mean, variance = baselines.ordinary_kriging(
        case.hidden, case.observed, lat, lon, variogram, background, nonnegative=nonnegative
    )
    return mean, np.sqrt(variance)


def choose_variogram(
    cases: Sequence[Case], lat: np.ndarray, lon: np.ndarray, anomaly: bool, nonnegative: bool = False
) -> str:
    """The variogram model of :data:`metamap.geo.baselines.VARIOGRAMS` with the lowest mean RMSE over the
    tuning ``cases`` (fields never evaluated)."""
    errors = {
        variogram: float(
            np.mean(
                [
                    metrics.rmse(kriging_fill(c, lat, lon, anomaly, variogram, nonnegative)[0], c.truth, lat, c.gaps)
                    for c in cases
                ]
            )
        )
        for variogram in baselines.VARIOGRAMS
    }
    return min(errors, key=errors.__getitem__)


def baseline_scores(
    case: Case, lat: np.ndarray, lon: np.ndarray, variograms: dict[str, str], nonnegative: bool = False
) -> dict[str, tuple[dict[str, float], float, np.ndarray]]:
    """Every baseline on ``case``: name -> (scores, seconds, fill ``[H, W]``); ``variograms`` holds the
    variogram of ``kriging`` and ``kriging_anomaly``."""
    hidden, observed, clim = case.hidden, case.observed, case.climatology
    point: dict[str, Callable[[], np.ndarray]] = {
        "field_mean": lambda: baselines.field_mean(hidden, observed),
        "field_mean_anomaly": lambda: baselines.field_mean(hidden, observed, clim),
        "climatology": lambda: clim,
        "linear": lambda: baselines.interpolate(hidden, observed, lat, lon, "linear"),
        "cubic": lambda: baselines.interpolate(hidden, observed, lat, lon, "cubic"),
        "linear_anomaly": lambda: baselines.interpolate(hidden, observed, lat, lon, "linear", clim),
    }
    out = {}
    for name, fn in point.items():
        filled, seconds = timed(fn)
        out[name] = (point_scores(filled, case.truth, case.gaps, lat), seconds, filled)
    for name in KRIGING:
        anomaly = name == "kriging_anomaly"
        (mean, std), seconds = timed(kriging_fill, case, lat, lon, anomaly, variograms[name], nonnegative)
        scores = {
            "rmse": metrics.rmse(mean, case.truth, lat, case.gaps),
            "crps": metrics.gaussian_crps(mean, std, case.truth, lat, case.gaps),
        }
        out[name] = (scores, seconds, mean)
    return out


@dataclass
class FillEvaluation:
    """What :func:`evaluate_fill` found: ``summary`` (JSON-ready), the calibrated ensemble's rank histogram
    ``[M + 1]`` and the first evaluated field for pictures: its :class:`Case`, the better kriging's fill
    ``[H, W]`` and the calibrated ensemble ``[M, H, W]`` (file unit)."""

    summary: dict[str, Any]
    histogram: np.ndarray
    example: tuple[Case, np.ndarray, np.ndarray]


def evaluate_fill(
    model: GeoModel,
    field: GeoField,
    times: Sequence[int] | np.ndarray,
    tune_times: Sequence[int] | np.ndarray,
    masks: MaskMaker,
    *,
    members: int = 16,
    steps: int = 20,
    sampler: str = "dpmpp",
    progress: bool = True,
    desc: str = "evaluate",
) -> FillEvaluation:
    """Score the baselines and the fill run ``model`` on the time indices ``times`` of ``field`` (the run's
    variable on its grid), each with the mask ``masks(TEST_SEED + n, shape)``.

    The ``tune_times`` (at least one, none of ``times``; masks ``masks(TUNE_SEED + n, shape)``) choose the
    kriging variograms and fit the ensemble's calibration. Raises ConfigError for a run of another task or
    tuning times that overlap the evaluated ones.
    """
    from metamap.progress import progress_bar

    if model.meta.get("task") != "fill":
        raise ConfigError(f"evaluation needs a fill run, got a {model.meta.get('task')} run")
    overlap = sorted(set(map(int, times)) & set(map(int, tune_times)))
    if not len(times) or not len(tune_times) or overlap:
        raise ConfigError(
            f"expected at least one time to evaluate and one other to tune on; got {len(times)} and "
            f"{len(tune_times)}, {len(overlap)} in both"
        )
    scaler, lat, lon, variogram = model.scaler, field.lat, field.lon, run_variogram(model)
    nonnegative = scaler.transform.nonnegative
    fraction = field_fraction(field)
    static = static_channels(lat, lon, tuple(model.meta["lat_range"]), tuple(model.meta["lon_range"]))

    def case(index: int, number: int) -> Case:
        return masked_case(field, scaler, fraction, masks, index, number)

    def kriging(c: Case, index: int) -> ResidualInputs:
        """The run's inputs for ``c`` in model space: the kriging it stands on (its variogram) and the rest."""
        z = scaler.to_model(c.hidden[None], fraction[index : index + 1])[0]
        return residual_inputs(z, static, variogram)

    def fill(inputs: ResidualInputs, seed: int) -> np.ndarray:
        """The model-space ensemble ``[M, H, W]``."""
        return residual_fill(model, inputs, members, steps, sampler, seed, never_valid=model.never_valid)

    def to_file(z: np.ndarray, c: Case, index: int) -> np.ndarray:
        ensemble = scaler.from_model(z[:, None], fraction[index : index + 1])[:, 0]
        ensemble[:, c.observed] = c.truth[c.observed]
        return ensemble

    tuning = [(case(int(i), TUNE_SEED + n), int(i)) for n, i in enumerate(tune_times)]
    tuning_inputs = [kriging(c, i) for c, i in tuning]
    variograms = {
        name: choose_variogram([c for c, _ in tuning], lat, lon, name == "kriging_anomaly", nonnegative)
        for name in KRIGING
    }
    calibration = fit_calibration(
        [fill(inputs, TUNE_SEED + n) for n, inputs in enumerate(tuning_inputs)],
        [inputs.estimate[0].numpy() for inputs in tuning_inputs],
        [scaler.to_model(c.truth[None], fraction[i : i + 1])[0] for c, i in tuning],
        [c.gaps for c, _ in tuning],
    )
    rows: dict[str, list[dict[str, float]]] = {}
    seconds: dict[str, list[float]] = {}
    histogram = np.zeros(members + 1, np.int64)
    rng = np.random.default_rng(1)
    fills: list[tuple[np.ndarray, Case]] = []
    examples: list[tuple[Case, np.ndarray, np.ndarray]] = []
    for number, index in enumerate(progress_bar(list(map(int, times)), desc=desc, enabled=progress)):
        c = case(index, TEST_SEED + number)
        found = baseline_scores(c, lat, lon, variograms, nonnegative)
        inputs, kriging_took = timed(kriging, c, index)
        z_estimate = inputs.estimate[0].numpy()
        local = to_file(z_estimate[None], c, index)[0]
        found["kriging_local_anomaly"] = (point_scores(local, c.truth, c.gaps, lat), kriging_took, local)
        z, sampling_took = timed(fill, inputs, TEST_SEED + number)
        took = kriging_took + sampling_took  # the run's time includes the kriging it stands on
        raw, ensemble = to_file(z, c, index), to_file(calibration.apply(z, z_estimate), c, index)
        found["diffusion_residual_uncalibrated"] = (ensemble_scores(raw, c.truth, c.gaps, lat), took, raw)
        found["diffusion_residual"] = (ensemble_scores(ensemble, c.truth, c.gaps, lat), took, ensemble)
        for name, (scores, spent, _) in found.items():
            rows.setdefault(name, []).append(scores)
            seconds.setdefault(name, []).append(spent)
        histogram += metrics.rank_histogram(ensemble, c.truth, rng, c.gaps)
        fills.append((ensemble, c))
        if number == 0:
            best = min(KRIGING, key=lambda name: found[name][0]["rmse"])
            examples.append((c, found[best][2], ensemble))
    methods = {name: summarize(rows[name], seconds[name]) for name in rows}
    reference = min(KRIGING, key=lambda name: methods[name]["rmse"])
    ours = methods["diffusion_residual"]
    summary: dict[str, Any] = {
        "times": list(map(int, times)),
        "tune_times": list(map(int, tune_times)),
        "variograms": variograms,
        "calibration": calibration.to_json(),
        "methods": methods,
        "kriging_reference": reference,
        "rmse_ratio_vs_kriging": ours["rmse"] / methods[reference]["rmse"],
        "crps_ratio_vs_kriging": ours["crps"] / methods[reference]["crps"],
        "spread_skill": ours["spread_skill"],
        "rank_histogram": histogram.tolist(),
    }
    if nonnegative:
        threshold = scaler.transform.dry_threshold
        summary["fraction_negative"] = max(fraction_negative(e) for e, _ in fills)
        summary["dry_accuracy"] = float(
            np.mean([dry_accuracy(e.mean(axis=0)[c.gaps], c.truth[c.gaps], threshold) for e, c in fills])
        )
    return FillEvaluation(summary, histogram, examples[0])
