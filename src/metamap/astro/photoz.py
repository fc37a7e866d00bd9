"""Photometric redshift: all-data baselines and few-shot adaptation to a new sky region.

Two protocols on the galaxies of a catalogue:

- **all data** (:func:`run_all_data`): a random train/test split of all
  galaxies; kNN, histogram gradient boosting and a random forest, each tuned
  by 5-fold CV on the training galaxies; the model with the best CV
  sigma_NMAD is the reported one. Robustness: bands dropped at random
  (10-50%, train and test alike) and extra photometric noise on the test
  magnitudes.
- **new region** (:func:`run_fewshot`): galaxies grouped into ra/dec cells
  (or bins of r magnitude); cells split into meta-train / meta-val / meta-test
  at random, or, ``group_by="faint"``, magnitude bins in order: the brightest
  meta-train, the next meta-val, the faintest are the test tasks (the shift a
  survey going deeper than its spectroscopy meets). On a test cell a method
  sees K labelled galaxies and predicts the rest of the cell. Methods:
  meta-learners (MAML, Meta-SGD, ANIL), pretrain + fine-tune (Adam), one model on
  all source galaxies with no adaptation (an MLP and the tuned gradient
  boosting), that model plus the support's median offset, and kNN / gradient
  boosting fitted on the K support galaxies alone. Every setting a method
  takes at test time (adaptation steps, neighbours, depth) is chosen on the
  meta-val cells. Standardization comes from source (non-test) galaxies only.
  A network-based method falls back to its unadapted network on a task whose
  adaptation fits the support worse (a few galaxies with wild magnitudes can
  make inner SGD diverge); each method's ratio to the global model chosen on
  the meta-val cells (gradient boosting or the pretrained MLP) comes with a
  paired bootstrap interval over episodes.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from metamap.astro import baselines
from metamap.astro.catalogue import BANDS, Catalogue
from metamap.astro.features import add_noise, drop_bands, fit_scaler, standardized_features
from metamap.astro.metrics import crps, photoz_metrics, pit, pit_histogram, pit_ks
from metamap.astro.predictor import OOD_NEIGHBOURS, PhotozPredictor, fit_predictor
from metamap.astro.tasks import GroupedRegression, magnitude_bins, sky_cells, split_groups, split_ordered_groups
from metamap.errors import ConfigError, DataError, ShapeError, describe
from metamap.experiment import Choice, Method, Settings, ValidationTask, choose_on_validation
from metamap.experiment.guard import guard
from metamap.learners import make_learner
from metamap.learners.base import Adapted, AdaptOptions, MetaLearner
from metamap.learners.finetune import fit_per_task
from metamap.nn import MLP
from metamap.nn.devices import module_device
from metamap.progress import progress_bar
from metamap.report import mean_ci95
from metamap.seeding import seeded
from metamap.tasks.episode import Episode
from metamap.tasks.family import make_generator
from metamap.training import TrainConfig
from metamap.training.retry import meta_train_lowering_inner_lr

META_LEARNERS = ("maml", "metasgd", "anil")
SPLIT_FRACTIONS = (0.55, 0.2, 0.25)  # meta-train / meta-val / meta-test groups
META_CANDIDATES: list[Settings] = [{"steps": s} for s in (1, 5, 10, 25)]  # SGD steps at the inner rate
FINETUNE_CANDIDATES: list[Settings] = [{"steps": s, "lr": lr} for lr in (1e-3, 1e-2) for s in (5, 25, 100)]  # Adam
SUPPORT_KINDS = ("knn", "gbm")
SUPPORT_CANDIDATES: dict[str, list[Settings]] = {
    "knn_support": [{"neighbours": k} for k in (1, 3, 5, 10)],
    "gbm_support": [{"depth": d} for d in (1, 2, 3)],
}
GLOBAL_MODELS = ("global_gbm", "global_mlp")  # one model of all source galaxies, no adaptation
PhotozMethod = Method[Episode, Episode, np.ndarray]  # z_phot [T, Q] of an episode's query galaxies


def galaxies_with_redshift(cat: Catalogue) -> Catalogue:
    """The catalogue's galaxies with a finite spectroscopic redshift (all rows if it has no class column)."""
    cat.need("redshift")
    rows = np.isfinite(cat.redshift)
    if cat.label is not None:
        rows &= cat.label == "GALAXY"
    if rows.sum() < 50:
        raise DataError(f"{cat.source}: only {int(rows.sum())} galaxies with a redshift; need at least 50")
    return cat.subset(rows)


# --------------------------------------------------------------------------- all data


def split_galaxies(cat: Catalogue, *, seed: int = 0, test_fraction: float = 0.2) -> tuple[Catalogue, Catalogue]:
    """The galaxies with a redshift, split at random (from ``seed``) into training and test galaxies."""
    gal = galaxies_with_redshift(cat)
    order = np.random.default_rng(seed).permutation(len(gal))
    n_test = int(round(test_fraction * len(gal)))
    return gal.subset(order[n_test:]), gal.subset(order[:n_test])


def run_all_data(
    cat: Catalogue,
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    quick: bool = False,
    missing_fractions: Sequence[float] = (0.1, 0.3, 0.5),
    noise_mags: Sequence[float] = (0.05, 0.1),
) -> dict[str, Any]:
    """Train on a random split of all galaxies, test on the rest; returns metrics and the test predictions."""
    train, test = split_galaxies(cat, seed=seed, test_fraction=test_fraction)
    scaler = fit_scaler(train.mags, train.valid)
    x_train, x_test = (
        standardized_features(scaler, train.mags, train.valid),
        standardized_features(scaler, test.mags, test.valid),
    )
    searches = baselines.fit_tuned(x_train, train.redshift, quick=quick, seed=seed)
    models = {
        name: {
            "cv_sigma_nmad": -float(s.best_score_),
            "best_params": s.best_params_,
            **photoz_metrics(s.predict(x_test), test.redshift),
        }
        for name, s in searches.items()
    }
    chosen = min(models, key=lambda n: models[n]["cv_sigma_nmad"])
    rng = np.random.default_rng(seed + 1)
    missing = {}
    for fraction in missing_fractions:
        tr_valid, te_valid = drop_bands(train.valid, fraction, rng), drop_bands(test.valid, fraction, rng)
        scaled = fit_scaler(train.mags, tr_valid)
        model = baselines.refit(searches[chosen], standardized_features(scaled, train.mags, tr_valid), train.redshift)
        missing[str(fraction)] = photoz_metrics(
            model.predict(standardized_features(scaled, test.mags, te_valid)), test.redshift
        )
    noise = {
        str(sigma): photoz_metrics(
            searches[chosen].predict(standardized_features(scaler, add_noise(test.mags, sigma, rng), test.valid)),
            test.redshift,
        )
        for sigma in noise_mags
    }
    return {
        "protocol": f"random {1 - test_fraction:.0%}/{test_fraction:.0%} split of {len(train) + len(test)} galaxies; "
        "models tuned by CV on the training split only (scored by sigma_NMAD)",
        "n_train": len(train),
        "n_test": len(test),
        "models": models,
        "chosen": chosen,
        "chosen_metrics": models[chosen],
        "missing_bands": missing,
        "extra_noise_test_only": noise,
        "z_spec": test.redshift.tolist(),
        "z_phot": searches[chosen].predict(x_test).tolist(),
    }


def run_probabilistic(
    cat: Catalogue,
    all_data: dict[str, Any],
    *,
    seed: int = 0,
    test_fraction: float = 0.2,
    quick: bool = False,
    ood_fpr: float = 0.01,
) -> tuple[dict[str, Any], PhotozPredictor]:
    """The model :func:`run_all_data` chose, refitted on the same training galaxies with its PDF and OOD score
    (:func:`~metamap.astro.predictor.fit_predictor`), scored on the same test galaxies and on the stars and
    QSOs of ``cat``; returns the JSON-able scores and the predictor (to save)."""
    train, test = split_galaxies(cat, seed=seed, test_fraction=test_fraction)
    chosen = all_data["chosen"]
    predictor = fit_predictor(
        train, chosen, all_data["models"][chosen]["best_params"], quick=quick, seed=seed, ood_fpr=ood_fpr
    )
    others = {} if cat.label is None else {name: cat.of_class(name) for name in ("STAR", "QSO")}
    return evaluate_predictor(predictor, test, {name: c for name, c in others.items() if len(c)}), predictor


def evaluate_predictor(predictor: PhotozPredictor, test: Catalogue, others: dict[str, Catalogue]) -> dict[str, Any]:
    """Point metrics, PIT (KS distance, histogram), CRPS and interval coverage on the ``test`` galaxies, and
    the share of each catalogue of ``others`` (e.g. stars, QSOs) that the OOD flag catches."""
    test.need("redshift")
    z = test.redshift
    pred, raw = predictor.predict(test), predictor.predict(test, calibrated=False)
    pit_cal, pit_raw = pit(pred.quantiles, z), pit(raw.quantiles, z)
    q05, q16, q84, q95 = pred.at((0.05, 0.16, 0.84, 0.95)).T
    at_5pct = predictor.threshold_at(0.05)
    ood: dict[str, Any] = {
        "score": f"mean distance to the {OOD_NEIGHBOURS} nearest training galaxies in standardized feature space",
        "threshold_fpr_on_validation": predictor.ood_fpr,
        "threshold": predictor.ood_threshold,
        "test_galaxies_flagged": float(pred.ood_flag.mean()),
        "threshold_at_5pct_fpr": at_5pct,
        "test_galaxies_flagged_at_5pct": float((pred.ood_score > at_5pct).mean()),
    }
    for name, other in others.items():
        scored = predictor.predict(other)
        ood[name] = {
            "n": len(other),
            "flagged": float(scored.ood_flag.mean()),
            "flagged_at_5pct": float((scored.ood_score > at_5pct).mean()),
        }
        if other.redshift is not None and name == "QSO":
            ood[name]["photoz_if_taken_for_galaxies"] = photoz_metrics(scored.z_phot, other.redshift)
    return {
        "protocol": "the all-data model refitted on its training split; " + predictor.record["protocol"],
        "point": photoz_metrics(pred.z_phot, z),
        "pit_ks": pit_ks(pit_cal),
        "pit_ks_uncalibrated": pit_ks(pit_raw),
        "pit_histogram": pit_histogram(pit_cal),
        "pit_histogram_uncalibrated": pit_histogram(pit_raw),
        "crps": float(crps(pred.quantiles, z).mean()),
        "crps_uncalibrated": float(crps(raw.quantiles, z).mean()),
        "coverage_68": float(np.mean((q16 <= z) & (z <= q84))),
        "coverage_90": float(np.mean((q05 <= z) & (z <= q95))),
        "pdf_neighbours": predictor.record["pdf_neighbours"],
        "ood": ood,
    }


# --------------------------------------------------------------------------- few-shot new region


@dataclass(frozen=True)
class RegionData:
    """Galaxies of eligible sky cells: features ``x [N, 14]``, redshift ``z [N]``, cells split by name,
    and the r magnitude range ``[min, max]`` of each split's galaxies."""

    x: np.ndarray
    z: np.ndarray
    groups: dict[str, list[np.ndarray]]
    z_mean: float
    z_std: float
    r_range: dict[str, list[float]]

    def family(self, k_shot: int, n_query: int | None, split: str) -> GroupedRegression:
        y = torch.as_tensor((self.z - self.z_mean) / self.z_std, dtype=torch.float32)[:, None]
        return GroupedRegression(torch.as_tensor(self.x), y, self.groups, k_shot, n_query, split)

    def source_rows(self) -> np.ndarray:
        """Rows of galaxies outside the val and test cells (meta-train cells and small cells)."""
        return np.concatenate(self.groups["train"] + self.groups["rest"])

    def unscale(self, z_scaled: np.ndarray) -> np.ndarray:
        return z_scaled * self.z_std + self.z_mean


def region_data(
    cat: Catalogue,
    *,
    cell_deg: float = 10.0,
    min_cell: int = 80,
    seed: int = 0,
    group_by: str = "sky",
    n_bins: int = 20,
) -> RegionData:
    """Group the galaxies into tasks; groups with >= ``min_cell`` galaxies become tasks.

    ``group_by="sky"``: ``cell_deg`` ra/dec cells; ``"magnitude"``: ``n_bins`` equally populated bins of r,
    split at random; ``"faint"``: the same bins split bright (meta-train) to faint (meta-test), every bin
    a task (:func:`~metamap.astro.tasks.split_ordered_groups`).
    """
    gal = galaxies_with_redshift(cat)
    r = BANDS.index("r")
    if group_by == "sky":
        gal.need("ra", "dec")
        groups = split_groups(sky_cells(gal.ra, gal.dec, cell_deg), min_cell, SPLIT_FRACTIONS, seed)
    elif group_by in ("magnitude", "faint"):
        ids = magnitude_bins(gal.mags[:, r], gal.valid[:, r], n_bins)
        groups = (
            split_groups(ids, min_cell, SPLIT_FRACTIONS, seed)
            if group_by == "magnitude"
            else split_ordered_groups(ids, min_cell, SPLIT_FRACTIONS)
        )
    else:
        raise ConfigError(f"unknown grouping {group_by!r}; expected 'sky', 'magnitude' or 'faint'")
    source = np.concatenate(groups["train"] + groups["rest"])
    scaler = fit_scaler(gal.mags[source], gal.valid[source])
    z_src = gal.redshift[source]
    r_range = {}
    for name in ("train", "val", "test"):
        rows = np.concatenate(groups[name])
        mag = gal.mags[rows, r][gal.valid[rows, r]]
        r_range[name] = [float(mag.min()), float(mag.max())] if mag.size else []
    return RegionData(
        standardized_features(scaler, gal.mags, gal.valid),
        gal.redshift,
        groups,
        float(z_src.mean()),
        float(z_src.std()),
        r_range,
    )


def train_learners(
    data: RegionData,
    names: Sequence[str],
    *,
    k_shot: int,
    steps: int,
    seed: int,
    device: torch.device | str = "cpu",
) -> tuple[dict[str, MetaLearner], dict[str, float]]:
    """Meta-train each learner (and ``pretrain``) on the meta-train cells, on ``device``: MLP 14-64-64-1,
    5 inner SGD steps.

    The inner rate is 0.05; a learner whose meta-loss turns NaN is trained again from scratch at
    0.02, then 0.01. Returns the learners and the inner rate each was trained with.
    """
    family = data.family(k_shot, 30, "train")
    config = TrainConfig(
        steps=steps, meta_batch=10, lr=1e-3, seed=seed, checkpoint_every=0, grad_clip=1.0, progress=False
    )
    learners, rates = {}, {}
    for name in (*names, "pretrain"):

        def build(inner_lr: float, name: str = name) -> MetaLearner:
            with seeded(seed):
                network = MLP(data.x.shape[1], [64, 64], 1)
                return make_learner(name, network, inner_steps=5, inner_lr=inner_lr).to(device)

        learners[name] = meta_train_lowering_inner_lr(build, family, config, label=f"photo-z {name}")
        rates[name] = learners[name].inner_lr
    return learners, rates


class LearnerMethod:
    """A trained learner adapted by ``steps`` SGD steps at its inner rate (0: as trained); z_phot ``[T, Q]``.

    Guarded: a task whose adapted network fits its own support worse than the unadapted one (or not at all:
    NaN), as a few galaxies with wild magnitudes can make it, is predicted by the unadapted network; such
    tasks are counted in ``fallbacks``. The guard looks at the support alone.
    """

    def __init__(self, data: RegionData, learner: MetaLearner) -> None:
        self.data = data
        self.learner = learner
        self.fallbacks = 0

    def fit(self, source: Any) -> None:
        """Trained beforehand by :func:`train_learners`."""

    def adapt(self, support: Episode, *, steps: int) -> None:
        support = support.to(module_device(self.learner))
        self.keep(support, self.learner.adapt(support.x_support, support.y_support, options=AdaptOptions(steps=steps)))

    def keep(self, support: Episode, adapted: Adapted) -> None:
        """Use ``adapted`` for the tasks of ``support`` where its support MSE is finite and no larger than
        the unadapted network's, the unadapted network elsewhere (:func:`metamap.experiment.guard.guard`)."""
        start = self.learner.adapt(support.x_support, support.y_support, options=AdaptOptions(steps=0))
        self.guarded = guard(start, adapted, support.x_support, support.y_support)
        self.fallbacks += self.guarded.fallbacks

    def predict(self, x: Episode) -> np.ndarray:
        """z_phot ``[T, Q]``; the network runs where the learner lives (the episode is moved there)."""
        x_query = x.x_query.to(module_device(self.learner))
        with torch.no_grad():
            z_scaled = self.guarded.predict(x_query)[..., 0]
        return self.data.unscale(z_scaled.cpu().numpy())


class FinetuneMethod(LearnerMethod):
    """The pretrained network fitted to each task's support by ``steps`` Adam steps at rate ``lr``."""

    def adapt(self, support: Episode, *, steps: int, lr: float | None = None) -> None:
        if lr is None:
            raise ConfigError("fine-tuning needs a learning rate (lr)")
        support = support.to(module_device(self.learner))
        params = dict(self.learner.model.named_parameters())
        self.keep(
            support, fit_per_task(self.learner, params, support.x_support, support.y_support, None, steps=steps, lr=lr)
        )


class GlobalModel:
    """One model fitted on all source galaxies, unadapted; with ``offset``, shifted by the support's median residual."""

    def __init__(self, data: RegionData, model: Any, offset: bool = False) -> None:
        self.data = data
        self.model = model
        self.offset = offset

    def fit(self, source: Any) -> None:
        """Fitted beforehand (the tuned gradient boosting of :func:`run_fewshot`)."""

    def adapt(self, support: Episode) -> None:
        self.shift: np.ndarray | float = 0.0
        if self.offset:
            rows = support.meta["support_rows"].numpy()
            residual = self.data.z[rows] - self._predict(rows)
            self.shift = np.median(residual, axis=1, keepdims=True)

    def predict(self, x: Episode) -> np.ndarray:
        z_phot = self._predict(x.meta["query_rows"].numpy())
        return z_phot + self.shift if self.offset else z_phot

    def _predict(self, rows: np.ndarray) -> np.ndarray:
        return self.model.predict(self.data.x[rows.ravel()]).reshape(rows.shape)


class SupportFit:
    """kNN (``neighbours``) or gradient boosting (``depth``) fitted on each task's K support galaxies alone."""

    def __init__(self, data: RegionData, kind: str) -> None:
        self.data = data
        self.kind = kind

    def fit(self, source: Any) -> None:
        """Learns nothing from the source."""

    def adapt(self, support: Episode, *, neighbours: int | None = None, depth: int | None = None) -> None:
        option = neighbours if self.kind == "knn" else depth
        if option is None:
            raise ConfigError(f"{self.kind}_support needs {'neighbours' if self.kind == 'knn' else 'depth'}")
        self.option = option
        self.support_rows = support.meta["support_rows"].numpy()

    def predict(self, x: Episode) -> np.ndarray:
        data = self.data
        return np.stack(
            [
                baselines.fit_predict_support(self.kind, data.x[s], data.z[s], data.x[q], self.option)
                for s, q in zip(self.support_rows, x.meta["query_rows"].numpy(), strict=True)
            ]
        )


def photoz_methods(data: RegionData, learners: dict[str, MetaLearner], global_model: Any) -> dict[str, PhotozMethod]:
    """Each few-shot method, ``adapt(episode, **settings)`` then ``predict(episode) -> z_phot [T, Q]``."""
    methods: dict[str, PhotozMethod] = {}
    for name, learner in learners.items():
        if name == "pretrain":
            methods["pretrain_finetune"] = FinetuneMethod(data, learner)
            methods["global_mlp"] = LearnerMethod(data, learner)
        else:
            methods[name] = LearnerMethod(data, learner)
    methods["global_gbm"] = GlobalModel(data, global_model)
    methods["global_gbm_offset"] = GlobalModel(data, global_model, offset=True)
    for kind in SUPPORT_KINDS:
        methods[f"{kind}_support"] = SupportFit(data, kind)
    return methods


def candidate_settings(methods: dict[str, PhotozMethod]) -> dict[str, list[Settings]]:
    """The adaptation settings each method may take at test time, cheapest first."""
    fixed: dict[str, list[Settings]] = {
        "pretrain_finetune": FINETUNE_CANDIDATES,
        "global_mlp": [{"steps": 0}],
        "global_gbm": [{}],
        "global_gbm_offset": [{}],
        **SUPPORT_CANDIDATES,
    }
    return {name: fixed.get(name, META_CANDIDATES) for name in methods}


def episode_batches(family: GroupedRegression, n_episodes: int, seed: int, batch: int = 25) -> Iterator[Episode]:
    """``n_episodes`` tasks of ``family`` drawn from ``seed``, in episodes of at most ``batch`` tasks."""
    generator = make_generator(seed)
    done = 0
    while done < n_episodes:
        episode = family.sample(min(batch, n_episodes - done), generator)
        done += episode.n_tasks
        yield episode


def photoz_scores(
    data: RegionData, z_phot: Sequence[np.ndarray], episodes: Sequence[Episode]
) -> list[dict[str, float]]:
    """Per-task sigma_NMAD, outlier fraction and bias of predictions ``z_phot [T, Q]`` (one per episode)."""
    scores = []
    for z, ep in zip(z_phot, episodes, strict=True):
        mask, rows = ep.query_mask.numpy(), ep.meta["query_rows"].numpy()
        scores += [photoz_metrics(z[t][mask[t]], data.z[rows[t][mask[t]]]) for t in range(ep.n_tasks)]
    return scores


def score_episodes(
    data: RegionData,
    family: GroupedRegression,
    methods: dict[str, PhotozMethod],
    settings: dict[str, Settings],
    n_episodes: int,
    seed: int,
    batch: int = 25,
    keep: int = 0,
    progress: bool = False,
    reference: str = "global_gbm",
) -> tuple[dict[str, dict[str, Any]], dict[str, np.ndarray]]:
    """Per-episode sigma_NMAD, outlier fraction and bias (mean and 95% CI) of each method on the same episodes,
    and each method's mean sigma_NMAD over the ``reference`` (global) method's, with a paired bootstrap interval.

    Each method adapts with its ``settings``. Returns the summary and, per
    method, the first ``keep`` episodes' pooled ``(z_spec, z_phot)`` pairs.
    """
    values: dict[str, list[dict[str, float]]] = {name: [] for name in methods}
    pairs: dict[str, list[np.ndarray]] = {name: [] for name in methods}
    done = 0
    with progress_bar(total=n_episodes, enabled=progress, desc=f"{family.split_name} K={family.k_shot}") as bar:
        for ep in episode_batches(family, n_episodes, seed, batch):
            mask, rows = ep.query_mask.numpy(), ep.meta["query_rows"].numpy()
            for name, method in methods.items():
                method.adapt(ep, **settings[name])
                z_phot = method.predict(ep)
                values[name] += photoz_scores(data, [z_phot], [ep])
                for t in range(min(ep.n_tasks, max(keep - done, 0))):
                    pairs[name].append(np.stack([data.z[rows[t][mask[t]]], z_phot[t][mask[t]]]))
            done += ep.n_tasks
            bar.update(ep.n_tasks)
    summary = {}
    for name, rows_ in values.items():
        entry: dict[str, Any] = {"episodes": len(rows_)}
        for key in ("sigma_nmad", "outlier_frac", "bias"):
            mean, ci = mean_ci95([r[key] for r in rows_])
            entry[key], entry[f"{key}_ci95"] = mean, ci
        if reference in values:
            ratio, interval = ratio_of_means(
                [r["sigma_nmad"] for r in rows_], [r["sigma_nmad"] for r in values[reference]], seed=seed
            )
            entry["sigma_nmad_ratio_vs_global"], entry["sigma_nmad_ratio_vs_global_interval95"] = ratio, interval
        summary[name] = entry
    kept = {n: np.concatenate(p, axis=1) for n, p in pairs.items() if p}
    return summary, kept


def ratio_of_means(
    numerator: Sequence[float], denominator: Sequence[float], *, seed: int = 0, resamples: int = 2000
) -> tuple[float, list[float]]:
    """``mean(numerator) / mean(denominator)`` of paired per-episode values ``[E]``, and its 95% percentile
    bootstrap interval ``[low, high]`` (episodes resampled with their pairs kept together)."""
    a, b = np.asarray(numerator, dtype=np.float64), np.asarray(denominator, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ShapeError(f"ratio_of_means: expected two equal [E] arrays, got {describe(a)} and {describe(b)}")
    picks = np.random.default_rng(seed).integers(0, a.size, (resamples, a.size))
    ratios = a[picks].mean(1) / b[picks].mean(1)
    return float(a.mean() / b.mean()), np.quantile(ratios, [0.025, 0.975]).tolist()


def choose_settings(
    data: RegionData, methods: dict[str, PhotozMethod], *, k_shot: int, n_episodes: int, seed: int
) -> dict[str, Choice]:
    """Adaptation steps / neighbours / depth per method, by mean sigma_NMAD on ``n_episodes`` meta-val tasks."""
    episodes = list(episode_batches(data.family(k_shot, None, "val"), n_episodes, seed))
    validation = [ValidationTask(ep, ep, ep) for ep in episodes]

    def mean_sigma_nmad(z_phot: list[np.ndarray], truths: list[Episode]) -> float:
        return mean_ci95([s["sigma_nmad"] for s in photoz_scores(data, z_phot, truths)])[0]

    return {
        name: choose_on_validation(methods[name], settings, validation, mean_sigma_nmad, name=f"photo-z {name}")
        for name, settings in candidate_settings(methods).items()
    }


def run_fewshot(
    cat: Catalogue,
    *,
    shots: Sequence[int] = (10, 20, 50),
    train_k: int = 20,
    steps: int = 2000,
    episodes: int = 600,
    other_episodes: int | None = None,
    val_episodes: int = 100,
    cell_deg: float = 10.0,
    min_cell: int = 80,
    learner_names: Sequence[str] = META_LEARNERS,
    seed: int = 0,
    quick: bool = False,
    progress: bool = True,
    group_by: str = "sky",
    n_bins: int = 20,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """The new-region protocol (module docstring), the networks on ``device``; returns a JSON-able result
    with per-K tables.

    ``episodes`` test episodes at ``train_k`` shots, ``other_episodes`` (default the same) at the other K.
    """
    data = region_data(cat, cell_deg=cell_deg, min_cell=min_cell, seed=seed, group_by=group_by, n_bins=n_bins)
    learners, inner_rates = train_learners(data, learner_names, k_shot=train_k, steps=steps, seed=seed, device=device)
    source = data.source_rows()
    global_search = baselines.fit_tuned(data.x[source], data.z[source], quick=quick, seed=seed, names=("hgb",))["hgb"]
    methods = photoz_methods(data, learners, global_search)
    chosen = choose_settings(data, methods, k_shot=train_k, n_episodes=val_episodes, seed=seed + 7)
    choices = {name: choice.settings for name, choice in chosen.items()}
    val_scores = {name: choice.score for name, choice in chosen.items()}
    best_meta = min(learner_names, key=val_scores.__getitem__)
    best_global = min(GLOBAL_MODELS, key=val_scores.__getitem__)
    guarded = {name: m for name, m in methods.items() if isinstance(m, LearnerMethod)}
    by_k, fallbacks, scatter = {}, {}, {}
    for k in shots:
        n_episodes = episodes if k == train_k or other_episodes is None else other_episodes
        for method in guarded.values():
            method.fallbacks = 0
        summary, kept = score_episodes(
            data,
            data.family(k, None, "test"),
            methods,
            choices,
            n_episodes,
            seed + 1000 + k,
            keep=40,
            progress=progress,
            reference=best_global,
        )
        by_k[str(k)] = summary
        fallbacks[str(k)] = {name: m.fallbacks for name, m in guarded.items()}
        if k == train_k:
            scatter = {name: kept[name].tolist() for name in (best_meta, "global_gbm", "knn_support")}
    tasks = {
        "sky": f"{cell_deg:g} deg ra/dec cells with >= {min_cell} galaxies; cells split at random into "
        "meta-train/val/test",
        "magnitude": f"{n_bins} equally populated bins of r magnitude with >= {min_cell} galaxies; bins split at "
        "random into meta-train/val/test",
        "faint": f"{n_bins} equally populated bins of r magnitude, ordered: the brightest meta-train "
        f"(r {_span(data.r_range['train'])}), the next meta-val (r {_span(data.r_range['val'])}), the faintest "
        f"meta-test (r {_span(data.r_range['test'])}); the global models see the meta-train galaxies only",
    }
    return {
        "protocol": tasks[group_by] + "; "
        f"K support galaxies of a test cell, query = the rest of the cell; {episodes} episodes at "
        f"K={train_k}, {other_episodes or episodes} at the other K "
        "(episodes re-use the few test cells, so they are not independent across cells)",
        "cells": {name: [len(g) for g in groups] for name, groups in data.groups.items() if name != "rest"},
        "galaxies_outside_cells": int(len(data.groups["rest"][0])),
        "r_range": data.r_range,
        "meta_training": {
            "steps": steps,
            "meta_batch": 10,
            "train_k": train_k,
            "n_query": 30,
            "model": "MLP 14-64-64-1 ReLU",
            "inner": "5 SGD steps",
            "inner_lr": inner_rates,
            "outer": "adam 1e-3, gradient norm clipped at 1",
        },
        "settings_chosen_on_val": choices,
        "val_sigma_nmad": val_scores,
        "tried_on_val": {name: choice.to_json()["tried"] for name, choice in chosen.items()},
        "best_meta_learner_on_val": best_meta,
        "global_model_on_val": best_global,
        "global_gbm_params": global_search.best_params_,
        "by_k": by_k,
        "unadapted_fallback_tasks": fallbacks,
        "scatter_20shot": scatter,
    }


def _span(r_range: list[float]) -> str:
    return f"{r_range[0]:.2f}-{r_range[1]:.2f}" if r_range else "unknown"
