"""MBAR free-energy estimation from umbrella sampling.

Registers the ``mbar`` estimator (:class:`MBAREstimator`) through the
``mtcv`` entry-point group. The umbrella and free-energy dataset schemas it
reads and writes live in :mod:`mtcv_core.schema_umbrella`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtcv_core import __version__, hookimpl
from mtcv_core.schema_umbrella import (
    FES_SCHEMA,
    UMBRELLA_SCHEMA,
    make_umbrella_dataset,
    transitions_table,
    validate_fes,
    validate_umbrella,
)
from mtcv_mbar.estimator import KB_EV_PER_K, MBAREstimator


@hookimpl
def mtcv_register_estimators(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the MBAR estimator."""
    register("mbar", MBAREstimator)


__all__ = ["__version__", "MBAREstimator", "transitions_table", "KB_EV_PER_K",
           "UMBRELLA_SCHEMA", "FES_SCHEMA", "make_umbrella_dataset", "validate_umbrella",
           "validate_fes", "mtcv_register_estimators"]
