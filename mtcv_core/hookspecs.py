"""Hook specifications: how a plugin tells mtcv what it provides.

Every hook receives one ``register`` callable. A plugin calls it once per
component it provides::

    from mtcv_core import hookimpl

    @hookimpl
    def mtcv_register_systems(register):
        register("my_system", MySystem)

``register(name, factory)`` records a component under this hook's kind; the
factory (usually a class) is called later with the component's options.
A plugin implements only the hooks it needs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("mtcv")

Register = Callable[[str, Callable[..., Any]], None]


@hookspec
def mtcv_register_systems(register: Register) -> None:
    """Register model systems (:class:`mtcv_core.interfaces.System`)."""


@hookspec
def mtcv_register_data_sources(register: Register) -> None:
    """Register data sources (:class:`mtcv_core.interfaces.DataSource`)."""


@hookspec
def mtcv_register_featurizers(register: Register) -> None:
    """Register featurizers (:class:`mtcv_core.interfaces.Featurizer`)."""


@hookspec
def mtcv_register_loss_heads(register: Register) -> None:
    """Register loss heads (:class:`mtcv_core.interfaces.LossHead`)."""


@hookspec
def mtcv_register_samplers(register: Register) -> None:
    """Register enhanced samplers (:class:`mtcv_core.interfaces.Sampler`)."""


@hookspec
def mtcv_register_estimators(register: Register) -> None:
    """Register free-energy estimators (:class:`mtcv_core.interfaces.Estimator`)."""


@hookspec
def mtcv_register_rate_estimators(register: Register) -> None:
    """Register rate estimators (:class:`mtcv_core.interfaces.RateEstimator`)."""


@hookspec
def mtcv_register_thermo_heads(register: Register) -> None:
    """Register loss terms of temperature-dependent coarse-grained free
    energies A(R, T) (:class:`mtcv_core.interfaces.ThermoLossHead`)."""
