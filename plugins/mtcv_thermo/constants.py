"""Physical constants of mtcv_thermo (one value each: mtcv_core.units)."""

from __future__ import annotations

from mtcv_core.units import KB_EV_PER_K

#: Boltzmann constant, eV/K (mtcv_core.units.KB_EV_PER_K)
KB: float = KB_EV_PER_K

__all__ = ["KB"]
