"""mtcv-example-plugin: a third-party mtcv plugin, as a template.

It adds one model system and one loss head:

==================  ======================================================
``double_well_2d``  system: tilted 2D double well, one pseudo-atom
                    (:class:`mtcv_example.double_well.DoubleWell2D`)
``energy_huber``    loss head: energy predictor on xi with a Huber loss
                    (:class:`mtcv_example.huber.EnergyHuberHead`)
==================  ======================================================

mtcv finds the plugin through the entry point in ``pyproject.toml``::

    [project.entry-points.mtcv]
    example = "mtcv_example"

i.e. it imports this module and calls the hooks below (the hook names are
those of :mod:`mtcv_core.hookspecs`); ``mtcv plugins`` then lists both
components under the plugin name ``example`` with the package's version.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtcv_core import hookimpl

from mtcv_example.double_well import DoubleWell2D, DoubleWell2DCalculator
from mtcv_example.huber import EnergyHuberHead, huber

__version__ = "0.1.0"

Register = Callable[[str, Callable[..., Any]], None]


@hookimpl
def mtcv_register_systems(register: Register) -> None:
    """Register the 2D double well."""
    register("double_well_2d", DoubleWell2D)


@hookimpl
def mtcv_register_loss_heads(register: Register) -> None:
    """Register the Huber energy head."""
    register("energy_huber", EnergyHuberHead)


__all__ = ["__version__", "DoubleWell2D", "DoubleWell2DCalculator", "EnergyHuberHead", "huber",
           "mtcv_register_systems", "mtcv_register_loss_heads"]
