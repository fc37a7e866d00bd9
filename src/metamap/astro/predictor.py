"""A photo-z model to apply to new catalogues: point estimate, calibrated quantiles, out-of-distribution score.

:func:`fit_predictor` on training galaxies (ugriz and spectroscopic redshift):

1. features (:mod:`~metamap.astro.features`) standardized from the training galaxies;
2. out-of-fold predictions of the chosen all-data model (5 folds) give each
   training galaxy a residual the model did not see;
3. the PDF (:mod:`~metamap.astro.pdf`): the neighbour count chosen on the
   folds by mean CRPS, its levels calibrated on the folds' PIT;
4. the model fitted on all training galaxies;
5. the out-of-distribution score: mean distance to the 10 nearest training
   galaxies in standardized feature space; the flag's threshold is the
   ``1 - ood_fpr`` quantile of the training galaxies' leave-one-out scores
   (a false-positive rate of ``ood_fpr`` on galaxies like the training ones).

:func:`save_predictor` / :func:`load_predictor`: a run folder with
``photoz_model.json`` and ``photoz_model.safetensors``. No model object is
pickled: the scikit-learn model is fitted again on load from the saved
training features with its saved settings and seed (deterministic), and
must reproduce the predictions saved with it, else the run is refused.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.base import clone
from sklearn.model_selection import KFold, cross_val_predict
from sklearn.neighbors import NearestNeighbors

from metamap.astro.baselines import make_model
from metamap.astro.catalogue import BANDS, Catalogue
from metamap.astro.features import FEATURE_NAMES, fit_scaler, standardized_features
from metamap.astro.pdf import (
    GRID,
    NEIGHBOUR_CANDIDATES,
    LocalResiduals,
    calibrated_levels,
    mean_crps,
    validation_pit,
)
from metamap.errors import CheckpointError, ConfigError, DataError
from metamap.experiment import ValidationTask, choose_on_validation
from metamap.preprocessing import Standardizer
from metamap.report import write_json, write_safetensors

RUN_KIND = "metamap astro photoz model"
MODEL_FILES = ("photoz_model.json", "photoz_model.safetensors")
QUANTILES = (0.05, 0.16, 0.5, 0.84, 0.95)
OOD_NEIGHBOURS = 10
N_CHECK = 256  # points (midpoints of training rows) whose saved predictions a refitted model must reproduce
FOLDS = 5
MIN_TRAIN = 4 * OOD_NEIGHBOURS  # training galaxies: every fold keeps more than OOD_NEIGHBOURS + 1 of them


@dataclass(frozen=True)
class PhotozPrediction:
    """Per object: ``z_phot [N]``, calibrated ``quantiles [N, M]`` at levels ``GRID``, ``ood_score [N]``
    (mean distance to the 10 nearest training galaxies, standardized units) and ``ood_flag [N]``."""

    z_phot: np.ndarray
    quantiles: np.ndarray
    ood_score: np.ndarray
    ood_flag: np.ndarray

    def at(self, levels: tuple[float, ...] = QUANTILES) -> np.ndarray:
        """Quantiles ``[N, L]`` at ``levels`` (within [0.005, 0.995]), interpolated linearly between grid levels."""
        return np.stack([_interp_levels(self.quantiles, level) for level in levels], axis=1)

    def to_frame(self, levels: tuple[float, ...] = QUANTILES) -> pd.DataFrame:
        """Columns ``z_phot``, ``z_q05`` ... ``z_q95`` (one per level), ``ood_score``, ``ood_flag``."""
        columns: dict[str, np.ndarray] = {"z_phot": self.z_phot}
        for level, values in zip(levels, self.at(levels).T, strict=True):
            columns[f"z_q{round(100 * level):02d}"] = values
        return pd.DataFrame({**columns, "ood_score": self.ood_score, "ood_flag": self.ood_flag})


@dataclass
class PhotozPredictor:
    """A fitted photo-z model (module notes); :meth:`predict` applies it to a catalogue."""

    scaler: Standardizer
    model_name: str
    model_params: dict[str, Any]
    quick: bool
    seed: int
    x_train: np.ndarray  # float32 [N, 14] standardized features of the training galaxies
    z_train: np.ndarray  # [N] spectroscopic redshifts
    residual: np.ndarray  # [N] out-of-fold (z_spec - z_oof) / (1 + z_oof)
    neighbours: int  # calibration galaxies per PDF
    levels: np.ndarray  # [M] calibrated residual levels
    loo_scores: np.ndarray  # [N] leave-one-out OOD scores of the training galaxies
    ood_fpr: float
    columns: dict[str, str]  # which catalogue column each band was read from
    record: dict[str, Any] = field(default_factory=dict)  # how the settings were chosen (JSON)
    model: Any = None  # the fitted scikit-learn model (fitted here when None)

    def __post_init__(self) -> None:
        if self.model is None:
            self.model = make_model(self.model_name, self.model_params, quick=self.quick, seed=self.seed)
            self.model.fit(self.x_train, self.z_train)
        self.pdf = LocalResiduals(self.levels)
        self.pdf.adapt((self.x_train, self.residual), neighbours=self.neighbours)
        self.ood_index = NearestNeighbors(n_neighbors=min(OOD_NEIGHBOURS, len(self.z_train))).fit(self.x_train)

    @property
    def ood_threshold(self) -> float:
        """OOD scores above this are flagged: the ``1 - ood_fpr`` quantile of the leave-one-out scores."""
        return self.threshold_at(self.ood_fpr)

    def threshold_at(self, fpr: float) -> float:
        """The threshold flagging a share ``fpr`` of the training galaxies (leave-one-out)."""
        if not 0.0 < fpr < 1.0:
            raise ConfigError(f"the OOD false-positive rate must be in (0, 1), got {fpr}")
        return float(np.quantile(self.loo_scores, 1.0 - fpr))

    def features(self, cat: Catalogue) -> np.ndarray:
        """Standardized features ``float32 [N, 14]`` of ``cat`` with the training galaxies' statistics."""
        return standardized_features(self.scaler, cat.mags, cat.valid)

    def predict(self, cat: Catalogue, *, calibrated: bool = True) -> PhotozPrediction:
        """z_phot, quantiles (uncalibrated with ``calibrated=False``) and the OOD score and flag of every object."""
        x = self.features(cat)
        z_phot = self.model.predict(x)
        pdf = self.pdf if calibrated else self.pdf.with_levels(GRID)
        score = self.ood_index.kneighbors(x)[0].mean(1)
        return PhotozPrediction(z_phot, pdf.predict((x, z_phot)), score, score > self.ood_threshold)


def fit_predictor(
    train: Catalogue,
    model_name: str,
    model_params: dict[str, Any],
    *,
    quick: bool = False,
    seed: int = 0,
    ood_fpr: float = 0.01,
) -> PhotozPredictor:
    """Fit the photo-z model ``model_name`` with ``model_params`` (e.g. those chosen by CV in
    :func:`~metamap.astro.photoz.run_all_data`) on the galaxies of ``train``, with its PDF and OOD score."""
    train.need("redshift")
    z = np.asarray(train.redshift)
    if not np.isfinite(z).all():
        raise DataError(f"{train.source}: the training galaxies need a finite redshift each")
    if len(train) < MIN_TRAIN:
        raise DataError(f"{train.source}: {len(train)} training galaxies; the photo-z PDF needs >= {MIN_TRAIN}")
    scaler = fit_scaler(train.mags, train.valid)
    x = standardized_features(scaler, train.mags, train.valid)
    model = make_model(model_name, model_params, quick=quick, seed=seed)
    folds = KFold(FOLDS, shuffle=True, random_state=seed)
    z_oof = cross_val_predict(clone(model), x, z, cv=folds)
    residual = (z - z_oof) / (1.0 + z_oof)
    validation = [ValidationTask((x[t], residual[t]), (x[v], z_oof[v]), z[v]) for t, v in folds.split(x)]
    choice = choose_on_validation(
        LocalResiduals(), [{"neighbours": k} for k in NEIGHBOUR_CANDIDATES], validation, mean_crps, name="photo-z PDF"
    )
    raw = LocalResiduals()
    quantiles = []
    for task in validation:
        raw.adapt(task.support, **choice.settings)
        quantiles.append(raw.predict(task.inputs))
    levels = calibrated_levels(validation_pit(quantiles, [task.truth for task in validation]))
    distances = NearestNeighbors(n_neighbors=OOD_NEIGHBOURS + 1).fit(x).kneighbors(x)[0]
    record = {
        "pdf_neighbours": {**choice.to_json(), "at_grid_edge": list(choice.at_edge)},
        "protocol": f"{FOLDS}-fold out-of-fold residuals of the training galaxies; PDF neighbours chosen by mean "
        "CRPS on the folds, levels calibrated on the folds' PIT; OOD threshold from leave-one-out scores",
    }
    return PhotozPredictor(
        scaler=scaler,
        model_name=model_name,
        model_params=dict(model_params),
        quick=quick,
        seed=seed,
        x_train=x,
        z_train=z,
        residual=residual,
        neighbours=int(choice.settings["neighbours"]),
        levels=levels,
        loo_scores=distances[:, 1:].mean(1),  # the nearest is the galaxy itself
        ood_fpr=ood_fpr,
        columns={b: train.columns.get(b, b) for b in BANDS},
        record=record,
        model=model.fit(x, z),
    )


# --------------------------------------------------------------------------- run folder


def save_predictor(predictor: PhotozPredictor, folder: Path) -> None:
    """Write ``photoz_model.json`` and ``photoz_model.safetensors`` into ``folder`` (atomically, each)."""
    import sklearn

    folder = Path(folder)
    check = predictor.model.predict(_check_points(predictor.x_train))
    arrays = {
        "x_train": predictor.x_train,
        "z_train": predictor.z_train,
        "residual": predictor.residual,
        "levels": predictor.levels,
        "loo_scores": predictor.loo_scores,
        "check_z_phot": check,
    }
    write_safetensors(
        folder / MODEL_FILES[1], {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}
    )
    write_json(
        folder / MODEL_FILES[0],
        {
            "kind": RUN_KIND,
            "features": list(FEATURE_NAMES),
            "columns": predictor.columns,
            "model": {
                "name": predictor.model_name,
                "params": predictor.model_params,
                "quick": predictor.quick,
                "seed": predictor.seed,
                "scikit_learn": sklearn.__version__,
            },
            "scaler": predictor.scaler.state_dict(),
            "pdf": {"neighbours": predictor.neighbours, "levels": len(predictor.levels)},
            "ood": {
                "neighbours": OOD_NEIGHBOURS,
                "fpr": predictor.ood_fpr,
                "threshold": predictor.ood_threshold,
            },
            "n_train": len(predictor.z_train),
            "record": predictor.record,
        },
    )


def load_predictor(folder: Path) -> PhotozPredictor:
    """The model saved by :func:`save_predictor` in ``folder``, refitted and checked (module notes).

    Raises:
        CheckpointError: the files are missing, unreadable, of another kind or inconsistent, or the
            refitted model does not reproduce the saved predictions.
    """
    import sklearn
    from safetensors.numpy import load_file

    folder = Path(folder)
    if not all((folder / name).is_file() for name in MODEL_FILES):
        raise CheckpointError(f"{folder}: not a photo-z run; expected {' and '.join(MODEL_FILES)} from --save")
    try:
        info = json.loads((folder / MODEL_FILES[0]).read_text())
        arrays = load_file(str(folder / MODEL_FILES[1]))
        if not isinstance(info, dict) or info.get("kind") != RUN_KIND:
            raise CheckpointError(f"its JSON is not a {RUN_KIND!r}")
        if info["features"] != list(FEATURE_NAMES):
            raise CheckpointError(f"features {info['features']}, expected {list(FEATURE_NAMES)}")
        x, n = arrays["x_train"], len(arrays["z_train"])
        shapes_ok = x.shape == (n, len(FEATURE_NAMES)) and all(
            arrays[k].shape == (n,) for k in ("residual", "loo_scores")
        )
        if (
            not shapes_ok
            or arrays["levels"].shape != GRID.shape
            or not all(np.isfinite(a).all() for a in arrays.values())
        ):
            raise CheckpointError("its arrays have inconsistent shapes or non-finite values")
        model = info["model"]
        predictor = PhotozPredictor(
            scaler=Standardizer.from_state_dict(info["scaler"]),
            model_name=model["name"],
            model_params=model["params"],
            quick=bool(model["quick"]),
            seed=int(model["seed"]),
            x_train=x,
            z_train=arrays["z_train"],
            residual=arrays["residual"],
            neighbours=int(info["pdf"]["neighbours"]),
            levels=arrays["levels"],
            loo_scores=arrays["loo_scores"],
            ood_fpr=float(info["ood"]["fpr"]),
            columns={b: str(info["columns"][b]) for b in BANDS},
            record=info.get("record", {}),
        )
    except (OSError, KeyError, TypeError, ValueError, ConfigError, CheckpointError) as exc:
        raise CheckpointError(f"{folder}: not a readable photo-z run ({exc})") from None
    again, saved = predictor.model.predict(_check_points(x)), arrays["check_z_phot"]
    if again.shape != saved.shape or not np.allclose(again, saved, rtol=1e-6, atol=1e-9):
        raise CheckpointError(
            f"{folder}: the {model['name']} model fitted again with scikit-learn {sklearn.__version__} does not "
            f"reproduce the run's saved predictions (the run used {model['scikit_learn']}); "
            "fit it again with metamap astro photoz --save"
        )
    return predictor


def _check_points(x: np.ndarray) -> np.ndarray:
    """Midpoints ``[<= N_CHECK, F]`` of consecutive training rows: off the training points, where a
    distance-weighted kNN would return the training redshifts whatever its settings."""
    head = x[: N_CHECK + 1]
    return (head[:-1] + head[1:]) / 2 if len(head) > 1 else head


def _interp_levels(quantiles: np.ndarray, level: float) -> np.ndarray:
    """Column ``[N]`` of ``quantiles [N, M]`` (at ``GRID``) at ``level``, linear between grid levels."""
    if not GRID[0] <= level <= GRID[-1]:
        raise ConfigError(f"quantile level {level} lies outside [{GRID[0]}, {GRID[-1]}]")
    j = int(np.clip(np.searchsorted(GRID, level) - 1, 0, GRID.size - 2))
    w = (level - GRID[j]) / (GRID[j + 1] - GRID[j])
    return (1 - w) * quantiles[:, j] + w * quantiles[:, j + 1]
