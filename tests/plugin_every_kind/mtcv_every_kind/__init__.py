"""One component of every kind the ``mtcv run`` pipeline uses, written
against :mod:`mtcv_core.interfaces` and ``docs/plugins.md`` only:

=================  ===================  ==========================================
kind               name                 what
=================  ===================  ==========================================
system             ``ek_double_well``   one H atom, V = a (x^2 - 1)^2 + k (y^2 + z^2)/2
data_source        ``ek_md``            Langevin MD from each basin, region labels
featurizer         ``ek_position``      the atom's (x, y, z)
loss_head          ``ek_logistic``      logistic basin classifier on xi
sampler            ``ek_plain_md``      unbiased MD recording xi (no bias)
estimator          ``ek_histogram``     histogram PMF, basin free energies, barriers
rate_estimator     ``ek_tst``           transition-state theory along xi (kappa = 1)
=================  ===================  ==========================================
"""

from __future__ import annotations

from mtcv_core import hookimpl
from mtcv_every_kind.components import (
    DoubleWell,
    HistogramPMF,
    LogisticHead,
    PlainMD,
    PositionFeatures,
    RegionMD,
    TSTRates,
)


@hookimpl
def mtcv_register_systems(register):
    register("ek_double_well", DoubleWell)


@hookimpl
def mtcv_register_data_sources(register):
    register("ek_md", RegionMD)


@hookimpl
def mtcv_register_featurizers(register):
    register("ek_position", PositionFeatures)


@hookimpl
def mtcv_register_loss_heads(register):
    register("ek_logistic", LogisticHead)


@hookimpl
def mtcv_register_samplers(register):
    register("ek_plain_md", PlainMD)


@hookimpl
def mtcv_register_estimators(register):
    register("ek_histogram", HistogramPMF)


@hookimpl
def mtcv_register_rate_estimators(register):
    register("ek_tst", TSTRates)
