"""Physical constants of mtcv_thermo (ASE's values and units)."""

from __future__ import annotations

from ase import units

#: Boltzmann constant, eV/K
KB: float = float(units.kB)

__all__ = ["KB"]
