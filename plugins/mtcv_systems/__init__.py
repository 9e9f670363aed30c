"""mtcv's built-in model systems: the 5D Müller-Brown and 5D three-well
potentials of Sun et al. (JCTC 2022), registered through the ``mtcv``
entry-point group exactly as a third-party plugin would be."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtcv_core import __version__, hookimpl
from mtcv_systems.embedded5d import (
    DOF_MASK,
    Embedded5DCalculator,
    Embedded5DSystem,
    MullerBrown5D,
    ThreeWell5D,
)
from mtcv_systems.potentials2d import (
    MullerBrown2D,
    Potential2D,
    ThreeWell2D,
    find_critical_points,
    steepest_descent,
)


@hookimpl
def mtcv_register_systems(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the 5D Müller-Brown and 5D three-well systems."""
    register("muller_brown_5d", MullerBrown5D)
    register("three_well_5d", ThreeWell5D)


__all__ = ["__version__", "DOF_MASK", "Embedded5DCalculator", "Embedded5DSystem",
           "MullerBrown5D", "ThreeWell5D", "MullerBrown2D", "Potential2D", "ThreeWell2D",
           "find_critical_points", "steepest_descent", "mtcv_register_systems"]
