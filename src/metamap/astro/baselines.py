"""scikit-learn baselines: models tuned by cross-validation on training objects, and per-task fits.

- ``fit_tuned``: k-nearest neighbours, histogram gradient boosting and a
  random forest, each tuned by K-fold CV (scored by sigma_NMAD) on the
  training objects only;
- ``fit_predict_support``: kNN or gradient boosting fitted on one task's K
  support objects, predicting its queries.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, clone
from sklearn.ensemble import GradientBoostingRegressor, HistGradientBoostingRegressor, RandomForestRegressor
from sklearn.metrics import make_scorer
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.neighbors import KNeighborsClassifier, KNeighborsRegressor

from metamap.astro.metrics import sigma_nmad
from metamap.errors import ConfigError

SUPPORT_METHODS = ("knn", "gbm")


def model_grids(quick: bool, seed: int) -> dict[str, tuple[BaseEstimator, dict[str, list[Any]]]]:
    """Each all-data model with the grid its CV searches."""
    if quick:
        return {
            "knn": (KNeighborsRegressor(weights="distance"), {"n_neighbors": [5, 15]}),
            "hgb": (HistGradientBoostingRegressor(max_iter=100, random_state=seed), {"learning_rate": [0.1]}),
            "rf": (RandomForestRegressor(n_estimators=30, random_state=seed, n_jobs=1), {"min_samples_leaf": [3]}),
        }
    return {
        "knn": (KNeighborsRegressor(weights="distance"), {"n_neighbors": [5, 10, 20, 40]}),
        "hgb": (
            HistGradientBoostingRegressor(max_iter=200, random_state=seed),
            {"learning_rate": [0.05, 0.1], "max_leaf_nodes": [15, 31]},
        ),
        "rf": (RandomForestRegressor(n_estimators=100, random_state=seed, n_jobs=1), {"min_samples_leaf": [2, 5]}),
    }


def fit_tuned(
    x: np.ndarray, z: np.ndarray, *, quick: bool = False, seed: int = 0, names: tuple[str, ...] = ("knn", "hgb", "rf")
) -> dict[str, GridSearchCV]:
    """Fit the ``names`` models of :func:`model_grids` on ``x [N, F]``, ``z [N]`` with CV-tuned settings."""
    scorer = make_scorer(sigma_nmad, greater_is_better=False)
    folds = KFold(3 if quick else 5, shuffle=True, random_state=seed)
    grids = model_grids(quick, seed)
    return {
        name: GridSearchCV(grids[name][0], grids[name][1], scoring=scorer, cv=folds, n_jobs=1).fit(x, z)
        for name in names
    }


def make_model(name: str, params: dict[str, Any], *, quick: bool, seed: int) -> BaseEstimator:
    """The unfitted all-data model ``name`` of :func:`model_grids` with the chosen ``params`` (e.g. CV's best)."""
    grids = model_grids(quick, seed)
    if name not in grids:
        raise ConfigError(f"unknown photo-z model {name!r}; expected one of {sorted(grids)}")
    return clone(grids[name][0]).set_params(**params)


def refit(search: GridSearchCV, x: np.ndarray, z: np.ndarray) -> BaseEstimator:
    """The CV-chosen model of ``search`` fitted afresh on other training data."""
    return clone(search.best_estimator_).fit(x, z)


def fit_predict_support(
    method: str, x_support: np.ndarray, z_support: np.ndarray, x_query: np.ndarray, option: int, seed: int = 0
) -> np.ndarray:
    """One task: fit ``method`` on ``x_support [K, F]``, ``z_support [K]``; predict ``x_query [Q, F]``.

    ``option`` is the neighbour count (``knn``, capped at K) or the tree depth (``gbm``).
    """
    if method == "knn":
        model: BaseEstimator = KNeighborsRegressor(n_neighbors=min(option, len(z_support)), weights="distance")
    elif method == "gbm":
        model = GradientBoostingRegressor(
            n_estimators=100, max_depth=option, learning_rate=0.1, subsample=1.0, random_state=seed
        )
    else:
        raise ConfigError(f"unknown support method {method!r}; expected one of {SUPPORT_METHODS}")
    return model.fit(x_support, z_support).predict(x_query)


def knn_classify_support(x_support: np.ndarray, y_support: np.ndarray, x_query: np.ndarray, k: int) -> np.ndarray:
    """Class of each query ``[Q]`` by distance-weighted kNN on one task's support set."""
    model = KNeighborsClassifier(n_neighbors=min(k, len(y_support)), weights="distance")
    return model.fit(x_support, y_support).predict(x_query)
