"""Physical constants and unit conversions, one value each.

mtcv's units are ASE's: eV, angstrom, amu, K; time in fs. The Boltzmann
constant is ASE's (``ase.units.kB``, CODATA 2014), copied here so that
``mtcv_core`` needs no ASE import; ``tests/test_units.py`` checks they agree.
"""

from __future__ import annotations

#: Boltzmann constant, eV/K (= ase.units.kB)
KB_EV_PER_K: float = 8.617330337217213e-05


def kT_eV(temperature_K: float) -> float:
    """Thermal energy kT in eV at ``temperature_K`` (K)."""
    return KB_EV_PER_K * float(temperature_K)


__all__ = ["KB_EV_PER_K", "kT_eV"]
