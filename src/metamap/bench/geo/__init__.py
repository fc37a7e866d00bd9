"""Benchmark ``geo``: diffusion gap-filling, forecasting and generation on ERA5 2 m temperature over the UK.

Data: ``geo/era5_t2m_uk_2019-03.nc`` (hourly, March 2019, 33 x 49 at 0.25
degrees). Train on days 1-24 (the standardization too), test on days 25-31.

- Gap-filling: a fixed set of test fields (seeded), two scenarios: 90 %
  missing as sparse stations and 40 % missing as 2-3 cloud blobs. Methods:
  field mean, linear and cubic interpolation, ordinary kriging (variogram
  model chosen per scenario on training fields, parameters fitted per field;
  on the raw field and on the anomaly from the training climatology, the
  better of the two is the reference), our conditional diffusion model and
  our training-free inpainting (both 16 members), and the RePaint peer
  (:mod:`metamap.bench.repaint_peer`), given our conditional model's
  channels and residual target, so that the two differ in the network and
  the sampler only. Scores on the missing pixels: RMSE
  (ensemble mean), fair CRPS (kriging: closed-form Gaussian CRPS), spread/skill.
- Forecast: one conditional diffusion model for leads 1..6 h given the
  previous 3 fields (the lead is a conditioning channel), 16 members; against
  persistence (CRPS = MAE) and a deterministic UNet of the same widths
  trained with MSE for the same number of steps.
- Generation: samples of the static-conditioned model against held-out test
  fields: Wasserstein-1 of the marginal, radially averaged power spectrum,
  spatial autocorrelation; training fields are the reference point.

Training runs are kept in ``<json stem>_runs/`` and reused by a rerun.
Every training has a wall-clock cap (``BUDGET``); the JSON states it and the
steps actually done.

Modules: :mod:`~metamap.bench.geo.settings`, :mod:`~metamap.bench.geo.training`
(the models and the split), :mod:`metamap.geo.evaluation` (the scores and baselines it shares with
``metamap geo evaluate``),
:mod:`~metamap.bench.geo.fill`, :mod:`~metamap.bench.geo.forecast` and
:mod:`~metamap.bench.geo.generation` (the three parts),
:mod:`~metamap.bench.geo.summary` (headline, goals, notes, tables) and
:mod:`~metamap.bench.geo.benchmark` (the run).
"""

from metamap.bench.geo.benchmark import run

__all__ = ["run"]
