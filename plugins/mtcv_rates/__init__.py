"""Rate constants along a learned CV (issue #20, in progress).

The rate theory itself (TST along a CV, the Bennett-Chandler transmission
coefficient, first passages, the committor) is in :mod:`mtcv_core.rates`;
this package runs the simulations it needs:

* :class:`~mtcv_rates.first_passage.BruteForceRates`: brute-force rates from
  many unbiased walkers, first passages counted by the basin last visited;
* :class:`~mtcv_rates.surface.SurfaceSampler`: configurations on a
  dividing surface ``xi = xi*`` from restrained MD, weighted to undo the
  restraint, with ``|grad xi|_M`` (the flux factor of TST);
* :class:`~mtcv_rates.surface_shots.SurfaceShots`: shots from
  configurations on a dividing surface ``xi = xi*`` (kappa, committor).

:mod:`mtcv_rates.analysis` turns shots into kappa(t) with bootstrap errors
and its plateau, and into the committor test;
:class:`~mtcv_rates.along_cv.RatesAlongCV` puts it all together for one
transition along a 1D CV and its PMF, and
:class:`~mtcv_rates.estimator.ReactiveFluxRates` (registered as the rate
estimator ``reactive_flux``) does it for every transition of a run in the
rate stage (``[rate] enabled = true``).
"""

from collections.abc import Callable
from typing import Any

from mtcv_core import hookimpl
from mtcv_rates.along_cv import RatesAlongCV
from mtcv_rates.estimator import ReactiveFluxRates
from mtcv_rates.first_passage import BruteForceRates, rates_dataset
from mtcv_rates.surface import SurfaceSampler
from mtcv_rates.surface_shots import SurfaceShots


@hookimpl
def mtcv_register_rate_estimators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the reactive-flux rate estimator."""
    register("reactive_flux", ReactiveFluxRates)


__all__ = ["BruteForceRates", "RatesAlongCV", "ReactiveFluxRates",
           "mtcv_register_rate_estimators", "SurfaceSampler", "SurfaceShots", "rates_dataset"]
