"""Calculators that evaluate many configurations at once.

An ASE calculator that can batch declares it with one method,
``batch_energy_and_forces(positions)``: positions (n, n_atoms, 3) angstrom
-> energy (n,) eV, forces (n, n_atoms, 3) eV/angstrom, the same energy as
its ``calculate`` (:func:`can_batch` checks a calculator class or instance).
A system built on such a calculator (system ``"ase"``) then reports
``supports_batch`` and the MD engines advance all walkers of a task with one
call per step (the batched engine) instead of one ASE ``Langevin`` per walker.

:class:`BatchedLennardJones` is a complete example, vectorised over
configurations, and equal to ``ase.calculators.lj.LennardJones`` without a
cutoff.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
from ase.calculators.calculator import Calculator, all_changes

#: the method a calculator defines to evaluate many configurations at once
BATCH_METHOD = "batch_energy_and_forces"


def can_batch(calculator: Any) -> bool:
    """Whether a calculator (class or instance) defines :data:`BATCH_METHOD`."""
    return callable(getattr(calculator, BATCH_METHOD, None))


class BatchedLennardJones(Calculator):
    """Lennard-Jones between all pairs, no cutoff, no periodic images:
    ``E = sum_{i<j} 4 epsilon ((sigma/r)^12 - (sigma/r)^6)``.

    Parameters
    ----------
    sigma : float
        angstrom.
    epsilon : float
        eV.
    """

    implemented_properties: ClassVar[list[str]] = ["energy", "free_energy", "forces"]  # type: ignore[misc]

    def __init__(self, sigma: float = 1.0, epsilon: float = 1.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not (sigma > 0 and epsilon > 0):
            raise ValueError(f"sigma and epsilon must be > 0, got {sigma!r}, {epsilon!r}")
        self.sigma, self.epsilon = float(sigma), float(epsilon)

    def batch_energy_and_forces(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, n_atoms, 3) angstrom -> energy (n,) eV, forces (n, n_atoms, 3)
        eV/angstrom."""
        x = np.asarray(positions, float)
        x = x.reshape(-1, *x.shape[-2:])
        d = x[:, :, None, :] - x[:, None, :, :]              # (n, N, N, 3): r_i - r_j
        r2 = np.einsum("nijc,nijc->nij", d, d)
        n_atoms = x.shape[1]
        off = ~np.eye(n_atoms, dtype=bool)
        inv = np.zeros_like(r2)
        inv[:, off] = self.sigma ** 2 / r2[:, off]
        s6 = inv ** 3
        s12 = s6 * s6
        energy = 2.0 * self.epsilon * (s12 - s6).sum(axis=(1, 2))  # each pair twice
        coef = np.zeros_like(r2)
        coef[:, off] = 24.0 * self.epsilon * (2.0 * s12[:, off] - s6[:, off]) / r2[:, off]
        forces = np.einsum("nij,nijc->nic", coef, d)
        return energy, forces

    def calculate(self, atoms: Any = None, properties: Sequence[str] = ("energy", "forces"),
                  system_changes: Sequence[str] = tuple(all_changes)) -> None:
        super().calculate(atoms, properties, system_changes)
        e, f = self.batch_energy_and_forces(self.atoms.positions[None])
        self.results = {"energy": float(e[0]), "free_energy": float(e[0]), "forces": f[0]}


__all__ = ["BATCH_METHOD", "BatchedLennardJones", "can_batch"]
