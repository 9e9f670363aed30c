"""Your own system: any ``ase.Atoms`` with any ASE calculator, geometric CVs
and basins declared in the config (system ``"ase"``,
:class:`mtcv_atoms.system.AseSystem`), or any molecule in vacuum from a PDB
and OpenMM force-field files (system ``"openmm"``,
:class:`mtcv_atoms.openmm_system.OpenMMSystem`), registered through the ``mtcv``
entry-point group exactly as a third-party plugin would be."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from mtcv_atoms.cvs import KINDS, CVSpec, GeometricCVs, parse_cvs
from mtcv_atoms.openmm_system import OpenMMSystem
from mtcv_atoms.system import AseSystem, load_calculator
from mtcv_core import __version__, hookimpl


@hookimpl
def mtcv_register_systems(register: Callable[[str, Callable[..., Any]], None]) -> None:
    """Register the config-declared systems ``ase`` (any calculator) and
    ``openmm`` (PDB + OpenMM force field, batched)."""
    register("ase", AseSystem)
    register("openmm", OpenMMSystem)


__all__ = ["__version__", "AseSystem", "CVSpec", "GeometricCVs", "KINDS", "OpenMMSystem",
           "load_calculator", "parse_cvs", "mtcv_register_systems"]
