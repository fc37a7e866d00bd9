"""Few-shot traffic forecasting across sensors and cities.

Files -> :func:`~metamap.traffic.io.load_traffic` (METR-LA/PEMS-BAY ``.h5`` +
DCRNN pickle, PeMS ``.npz`` + distance CSV) -> :class:`TrafficData` ->
:class:`~metamap.traffic.features.SeriesFeatures` (12-in/12-out windows) ->
:class:`~metamap.traffic.family.SensorTasks` (each sensor a task) -> the
learners; :mod:`~metamap.traffic.experiment` compares them with the
baselines, :mod:`~metamap.traffic.protocols` holds P1 (new sensors) and P2
(new city), :mod:`~metamap.traffic.patterns` finds recurring daily patterns
with Prototypical Networks, :mod:`~metamap.traffic.commands` is
``metamap traffic``.
"""

from metamap.traffic.data import TrafficData
from metamap.traffic.io import load_traffic

__all__ = ["TrafficData", "load_traffic"]
