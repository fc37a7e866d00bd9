"""Diffusion models for gridded geoscience fields: data, tasks, metrics, baselines.

- :mod:`metamap.geo.io`: netCDF/zarr in (any of the usual axis names, either latitude order), ensembles out.
- :mod:`metamap.geo.masks`: missing-data masks (cloud blobs, sparse stations, satellite swaths).
- :mod:`metamap.geo.data`: standardization, static channels, lazy random patches.
- :mod:`metamap.geo.metrics`: WeatherBench 2 scores (weighted RMSE, fair CRPS, spread/skill, rank histogram).
- :mod:`metamap.geo.baselines`: field mean, linear/cubic interpolation, ordinary kriging.
- :mod:`metamap.geo.fill`, :mod:`metamap.geo.forecast`, :mod:`metamap.geo.generate`: the three tasks.
- :mod:`metamap.geo.train`, :mod:`metamap.geo.models`: training a model for a task; the bridge to
  :mod:`metamap.diffusion`.
- :mod:`metamap.geo.commands`: ``metamap geo train | fill | forecast | sample``.
"""
