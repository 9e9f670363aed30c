"""Reusable checks for plugin authors who write ASE calculators.

>>> from mtcv_ase.testing import check_forces_finite_difference
>>> check_forces_finite_difference(MyCalculator(), atoms)   # in a pytest test
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator


def numeric_forces(calc: Calculator, atoms: Atoms, delta: float = 1e-5,
                   mask: Sequence[Sequence[bool]] | np.ndarray | None = None) -> np.ndarray:
    """Central finite-difference forces -dE/dR, (n_atoms, 3) eV/angstrom.

    ``delta`` is the displacement in angstrom; coordinates where ``mask``
    (n_atoms, 3) is False are skipped (their force is left at zero).
    """
    probe = atoms.copy()
    probe.calc = calc
    base = probe.get_positions()
    active = np.ones(base.shape, bool) if mask is None else np.asarray(mask, bool)
    forces = np.zeros(base.shape)
    for a, k in zip(*np.nonzero(active), strict=True):
        energies = []
        for sign in (1.0, -1.0):
            pos = base.copy()
            pos[a, k] += sign * delta
            probe.set_positions(pos, apply_constraint=False)
            energies.append(probe.get_potential_energy())
        forces[a, k] = -(energies[0] - energies[1]) / (2.0 * delta)
    return forces


def check_forces_finite_difference(calc: Calculator, atoms: Atoms, delta: float = 1e-5,
                                   rtol: float = 1e-5, atol: float = 1e-6,
                                   mask: Sequence[Sequence[bool]] | np.ndarray | None = None
                                   ) -> tuple[np.ndarray, np.ndarray]:
    """Assert that ``calc``'s forces equal central finite differences of its energy.

    Parameters
    ----------
    calc : ASE calculator under test (attached to a copy of ``atoms``)
    atoms : configuration, angstrom
    delta : finite-difference step, angstrom
    rtol, atol : tolerances of ``np.testing.assert_allclose`` (atol in eV/angstrom)
    mask : (n_atoms, 3) bool, optional; only these coordinates are compared

    Returns
    -------
    (analytic, numeric) forces, each (n_atoms, 3) eV/angstrom.

    Raises
    ------
    AssertionError
        Naming the worst atom/coordinate when they differ.
    """
    probe = atoms.copy()
    probe.calc = calc
    analytic = np.asarray(probe.get_forces(apply_constraint=False), dtype=np.float64)
    numeric = numeric_forces(calc, atoms, delta=delta, mask=mask)
    active = np.ones(analytic.shape, bool) if mask is None else np.asarray(mask, bool)
    diff = np.where(active, np.abs(analytic - numeric), 0.0)
    worst = np.unravel_index(int(np.argmax(diff)), diff.shape)
    np.testing.assert_allclose(
        np.where(active, analytic, 0.0), numeric, rtol=rtol, atol=atol,
        err_msg=(f"{type(calc).__name__}: forces differ from central finite differences "
                 f"(delta={delta} angstrom); worst at atom {worst[0]}, coordinate "
                 f"{'xyz'[worst[1]]}: analytic {analytic[worst]:.8g}, "
                 f"numeric {numeric[worst]:.8g} eV/angstrom"))
    return analytic, numeric


__all__ = ["numeric_forces", "check_forces_finite_difference"]
