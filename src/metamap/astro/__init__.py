"""Astronomy: photometric catalogues, photometric redshift and few-shot star / galaxy / quasar classification.

- :mod:`~metamap.astro.catalogue`: ``load_catalogue`` (CSV, Parquet, FITS) -> :class:`Catalogue`
  (ugriz magnitudes with a validity mask; sentinels and NaN are missing);
- :mod:`~metamap.astro.features`: magnitudes, colours and missing-band flags, standardized from
  training objects only (``fit_scaler``, ``standardized_features``); ``drop_bands`` / ``add_noise`` for robustness tests;
- :mod:`~metamap.astro.metrics`: sigma_NMAD, outlier fraction, bias;
- :mod:`~metamap.astro.tasks`: sky cells / magnitude bins as few-shot regression tasks;
- :mod:`~metamap.astro.photoz`: the all-data and new-region photo-z protocols;
- :mod:`~metamap.astro.classify`: 3-way K-shot classification with ProtoNet and Matching;
- :mod:`~metamap.astro.baselines`: scikit-learn baselines; :mod:`~metamap.astro.commands`: ``metamap astro``.
"""

from typing import TYPE_CHECKING

from metamap.extras import lazy_exports

# Names are imported on first use, so that building the CLI's parser imports no catalogue or model code.
__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "catalogue": ("BANDS", "CLASSES", "Catalogue", "catalogue_from_frame", "load_catalogue"),
        "features": ("add_noise", "drop_bands", "fit_scaler", "standardized_features"),
        "metrics": ("bias", "outlier_fraction", "photoz_metrics", "sigma_nmad"),
        "tasks": ("GroupedRegression", "magnitude_bins", "sky_cells", "split_groups"),
    },
)

if TYPE_CHECKING:
    from metamap.astro.catalogue import BANDS, CLASSES, Catalogue, catalogue_from_frame, load_catalogue
    from metamap.astro.features import add_noise, drop_bands, fit_scaler, standardized_features
    from metamap.astro.metrics import bias, outlier_fraction, photoz_metrics, sigma_nmad
    from metamap.astro.tasks import GroupedRegression, magnitude_bins, sky_cells, split_groups

__all__ = [
    "BANDS",
    "CLASSES",
    "Catalogue",
    "GroupedRegression",
    "add_noise",
    "bias",
    "catalogue_from_frame",
    "drop_bands",
    "fit_scaler",
    "load_catalogue",
    "magnitude_bins",
    "outlier_fraction",
    "photoz_metrics",
    "sigma_nmad",
    "sky_cells",
    "split_groups",
    "standardized_features",
]
