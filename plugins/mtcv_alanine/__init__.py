"""Alanine dipeptide (ACE-ALA-NME, 22 atoms) in vacuum with the amber99sb
force field through OpenMM, as an mtcv system plugin (``alanine_dipeptide``).

Requires the optional dependency ``openmm`` (``pip install mtcv[openmm]``)
when the system is used; importing and registering this plugin does not.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtcv_alanine.system import BASIN_REGIONS_DEG, AlanineDipeptide, DihedralCV
from mtcv_core import __version__, hookimpl


@hookimpl
def mtcv_register_systems(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the alanine dipeptide system."""
    register("alanine_dipeptide", AlanineDipeptide)


__all__ = ["__version__", "AlanineDipeptide", "BASIN_REGIONS_DEG", "DihedralCV",
           "mtcv_register_systems"]
