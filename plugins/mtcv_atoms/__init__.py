"""Your own system: any ``ase.Atoms`` with any ASE calculator, geometric CVs
and basins declared in the config (system ``"ase"``,
:class:`mtcv_atoms.system.AseSystem`), registered through the ``mtcv``
entry-point group exactly as a third-party plugin would be."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtcv_atoms.cvs import KINDS, CVSpec, GeometricCVs, parse_cvs
from mtcv_atoms.system import AseSystem, load_calculator
from mtcv_core import __version__, hookimpl


@hookimpl
def mtcv_register_systems(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the config-declared ASE system ``ase``."""
    register("ase", AseSystem)


__all__ = ["__version__", "AseSystem", "CVSpec", "GeometricCVs", "KINDS", "load_calculator",
           "parse_cvs", "mtcv_register_systems"]
