"""A second enhanced sampler on the learned CV: OPES-metaD and well-tempered
metadynamics with several walkers sharing one bias, and free energies by
reweighting their samples.

* :class:`~mtcv_opes.bias.OpesBias`, :class:`~mtcv_opes.bias.MetadBias`: the
  biases as state objects, updated only by an explicit step;
* :class:`~mtcv_opes.calculator.HistoryBiasCalculator` and
  :func:`~mtcv_opes.calculator.deposit_callback`: the bias as an ASE
  calculator and its update as a dynamics observer;
* samplers ``opes`` and ``metad`` (:mod:`mtcv_opes.sampler`): batched or ASE
  walkers, checkpointed and resumable, writing ``mtcv.biased/1`` samples;
* estimator ``reweight`` (:mod:`mtcv_opes.estimator`): F along the CV or any
  recorded observable, block-bootstrap errors, dF and barriers against time;
* :mod:`mtcv_opes.plumed`: the PLUMED input of the same run.

The package plugs in through the sampler and estimator interfaces alone, as
a third-party package would.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtcv_core import hookimpl
from mtcv_opes.bias import HistoryBias, MetadBias, OpesBias
from mtcv_opes.calculator import HistoryBiasCalculator, deposit_callback
from mtcv_opes.estimator import ReweightEstimator
from mtcv_opes.sampler import MetadSampler, OpesSampler


@hookimpl
def mtcv_register_samplers(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the ``opes`` and ``metad`` samplers."""
    register("opes", OpesSampler)
    register("metad", MetadSampler)


@hookimpl
def mtcv_register_estimators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the ``reweight`` estimator."""
    register("reweight", ReweightEstimator)


__all__ = ["HistoryBias", "OpesBias", "MetadBias", "HistoryBiasCalculator",
           "deposit_callback", "OpesSampler", "MetadSampler", "ReweightEstimator"]
