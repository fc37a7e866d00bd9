"""Physics: parametric physical systems as few-shot task families.

- :mod:`~metamap.physics.systems`: damped driven oscillator, nonlinear pendulum, Lotka-Volterra,
  1-D heat equation (method of lines); ``System.simulate(params, t)``; unphysical parameters raise;
- :mod:`~metamap.physics.family`: ``SystemFamily``: one task = one system, K noisy irregular observations;
- :mod:`~metamap.physics.fit`: multi-start least-squares fit of the known equation;
- :mod:`~metamap.physics.experiment`: trajectory prediction and parameter identification, all methods,
  and the hybrid (probe-head proposal refined by one least-squares fit);
- :mod:`~metamap.physics.residual`: the known equation misspecified (pendulum data, small-angle fit) plus a
  meta-learned residual network;
- :mod:`~metamap.physics.user_ode`: a user's own ODE ``f(t, y, params)`` fitted to measured trajectories;
- :mod:`~metamap.physics.commands`: ``metamap physics run | fit``.
"""

from metamap.physics.family import SystemFamily
from metamap.physics.fit import least_squares_fit
from metamap.physics.systems import SYSTEMS, System, get_system

__all__ = ["SYSTEMS", "System", "SystemFamily", "get_system", "least_squares_fit"]
