"""A one-particle double well with an analytic free energy along x, for the
OPES / metadynamics tests (batched and ASE engines)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from mtcv_core.interfaces import System
from mtcv_core.units import kT_eV

A_EV = 0.12        # barrier height of the quartic, eV
TILT_EV = 0.02     # tilt b x, eV per angstrom
K_YZ = 2.0         # harmonic y, z, eV / angstrom^2


def potential(x: np.ndarray) -> np.ndarray:
    """V(x, y, z) for positions (n, 1, 3), eV."""
    p = np.asarray(x, float)[:, 0]
    return (A_EV * (p[:, 0] ** 2 - 1.0) ** 2 + TILT_EV * p[:, 0]
            + 0.5 * K_YZ * (p[:, 1] ** 2 + p[:, 2] ** 2))


def forces(x: np.ndarray) -> np.ndarray:
    p = np.asarray(x, float)[:, 0]
    f = np.zeros((len(p), 1, 3))
    f[:, 0, 0] = -(4 * A_EV * p[:, 0] * (p[:, 0] ** 2 - 1.0) + TILT_EV)
    f[:, 0, 1:] = -K_YZ * p[:, 1:]
    return f


def exact_f(x: np.ndarray) -> np.ndarray:
    """F(x) along the CV x, eV (up to a constant): the potential in x."""
    return A_EV * (x**2 - 1.0) ** 2 + TILT_EV * x


def exact_delta_f(temperature_K: float) -> float:
    """F(B: x > 0) - F(A: x < 0), eV, by quadrature."""
    kt = kT_eV(temperature_K)
    x = np.linspace(-3, 3, 200001)
    w = np.exp(-exact_f(x) / kt)
    return float(-kt * np.log(w[x > 0].sum() / w[x < 0].sum()))


class DoubleWellCalculator(Calculator):
    implemented_properties: ClassVar[list[str]] = ["energy", "forces"]  # type: ignore[misc]

    def calculate(self, atoms: Any = None, properties: Any = ("energy",),
                  system_changes: Any = tuple(all_changes)) -> None:
        super().calculate(atoms, properties, system_changes)
        x = self.atoms.get_positions()[None]
        self.results["energy"] = float(potential(x)[0])
        self.results["forces"] = forces(x)[0]


class DoubleWell(System):
    """One particle of 12 amu in the tilted double well (basins A: x < 0, B: x > 0)."""

    name: ClassVar[str] = "double_well_1d"
    basins = ("A", "B")
    true_cv_names = ("x",)
    true_cv_units = "angstrom"
    temperature_K = 300.0

    def make_atoms(self, basin: str | None = None) -> Atoms:
        x0 = 1.0 if basin == "B" else -1.0
        atoms = Atoms("C", positions=[[x0, 0.0, 0.0]], masses=[12.0])
        atoms.calc = DoubleWellCalculator()
        return atoms

    def basin_index(self, positions: np.ndarray) -> np.ndarray:
        return (np.asarray(positions)[:, 0, 0] > 0).astype(int)

    def true_cv(self, positions: np.ndarray) -> np.ndarray:
        return np.asarray(positions, float)[:, 0, :1]

    def energy_and_forces(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return potential(positions), forces(positions)


class XCoordinate(torch.nn.Module):
    """The CV x of the particle: positions (n, 1, 3) -> (n, 1)."""

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return positions[:, 0, 0:1]


def start_frames(n: int = 200, seed: int = 0) -> Any:
    from mtcv_core.interfaces import StartFrames

    rng = np.random.default_rng(seed)
    x = np.zeros((n, 1, 3))
    x[:, 0, 0] = np.where(np.arange(n) % 2 == 0, -1.0, 1.0) + 0.1 * rng.standard_normal(n)
    x[:, 0, 1:] = 0.1 * rng.standard_normal((n, 2))
    return StartFrames(x, x[:, 0, :1].copy(), (x[:, 0, 0] > 0).astype(int), np.array([12.0]))
