"""A tilted 2D double well as an mtcv ``System`` (plugin name ``double_well_2d``).

Potential, eV::

    V(x, y) = h ((x / a)^2 - 1)^2 + t x / a + k y^2 / 2

with barrier height ``h`` (eV), half distance between the wells ``a``
(angstrom), tilt ``t`` (eV; ``t > 0`` raises the right well) and stiffness
``k`` across the wells (eV/angstrom^2). Defaults: h = 0.25 eV (about 10 kT
at 300 K), a = 1 angstrom, t = 0.02 eV, k = 2 eV/angstrom^2.

ASE representation
------------------
One pseudo-atom of mass 1 amu at ``(x, y, z)`` angstrom; ``z`` is inactive:
its force is zero, :meth:`DoubleWell2D.make_atoms` fixes it with
``FixCartesian`` and :attr:`DoubleWell2D.dof_mask` is ``[[True, True,
False]]`` (so the ``cartesian`` featurizer sees ``(x, y)``). Positions have
shape ``(n, 1, 3)``.

Basins
------
``"L"`` and ``"R"``, the two minima (found as the roots of ``dV/dx`` at
``y = 0``). A frame belongs to the basin on its side of the saddle if its
energy is below ``E_min + basin_fraction (E_saddle - E_min)`` of that basin
(``basin_fraction = 0.5``), else it is labelled -1; the rule of the built-in
5D systems.

True CVs ``(x, y)``, angstrom. Reference free energies
(:meth:`DoubleWell2D.reference_transitions`) by midpoint quadrature of the
2D configurational integral. Units: eV, angstrom, amu, K, eV/angstrom.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixCartesian
from ase.units import kB
from mtcv_core.interfaces import System

#: (1, 3) bool: the active coordinates x, y of the pseudo-atom
DOF_MASK = np.array([[True, True, False]])


class DoubleWell2D(System):
    """Tilted 2D double well (see the module docstring).

    Parameters
    ----------
    barrier_eV : float
        h, height of the barrier of the untilted well, eV.
    half_width_A : float
        a, the untilted minima lie at x = +-a, angstrom.
    tilt_eV : float
        t, linear tilt t x / a, eV; positive raises the right well.
    stiffness_y : float
        k, harmonic stiffness in y, eV/angstrom^2.
    temperature_K : float
        Default temperature of the experiments, K.
    basin_fraction : float
        Fraction of the barrier below which a frame counts as in a basin.
    """

    name: ClassVar[str] = "double_well_2d"
    basins: tuple[str, ...] = ("L", "R")
    true_cv_names: tuple[str, ...] = ("x", "y")
    true_cv_units: str = "angstrom"
    #: mass of the pseudo-atom, amu
    mass_amu: float = 1.0

    def __init__(self, *, barrier_eV: float = 0.25, half_width_A: float = 1.0,
                 tilt_eV: float = 0.02, stiffness_y: float = 2.0, temperature_K: float = 300.0,
                 basin_fraction: float = 0.5) -> None:
        if not (barrier_eV > 0 and half_width_A > 0 and stiffness_y > 0):
            raise ValueError("double_well_2d: barrier_eV, half_width_A and stiffness_y must "
                             "be > 0")
        self.h = float(barrier_eV)
        self.a = float(half_width_A)
        self.t = float(tilt_eV)
        self.k = float(stiffness_y)
        self.temperature_K = float(temperature_K)
        self.basin_fraction = float(basin_fraction)
        # dV/dx at y = 0: (4h/a^4) x^3 - (4h/a^2) x + t/a
        roots = np.roots([4 * self.h / self.a**4, 0.0, -4 * self.h / self.a**2, self.t / self.a])
        real = np.sort(roots.real[np.abs(roots.imag) < 1e-9])
        if len(real) != 3:
            raise ValueError(f"double_well_2d: tilt {tilt_eV} eV is too large for a double "
                             f"well of height {barrier_eV} eV (one minimum only)")
        #: x of the left minimum, the saddle and the right minimum, angstrom
        self.x_left, self.x_saddle, self.x_right = (float(v) for v in real)

    # -------------------------------------------------------------- energy
    def potential(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(V, dV/dx, dV/dy)`` of broadcastable x, y (angstrom): eV, eV/angstrom."""
        x = np.asarray(x, float)
        y = np.asarray(y, float)
        s = (x / self.a) ** 2 - 1.0
        v = self.h * s * s + self.t * x / self.a + 0.5 * self.k * y * y
        gx = 4.0 * self.h * s * x / self.a**2 + self.t / self.a
        gy = self.k * y
        return v, gx, gy

    def energy_and_forces(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """positions (n, 1, 3) angstrom (any leading shape) -> energy (n,) eV,
        forces (n, 1, 3) eV/angstrom; the z force is 0."""
        p = np.asarray(positions, float)
        if p.shape[-2:] != (1, 3):
            raise ValueError(f"double_well_2d: positions must have shape (..., 1, 3), "
                             f"got {p.shape}")
        v, gx, gy = self.potential(p[..., 0, 0], p[..., 0, 1])
        forces = np.zeros(p.shape)
        forces[..., 0, 0] = -gx
        forces[..., 0, 1] = -gy
        return v, forces

    def minimum(self, basin: str | int | None = None) -> tuple[float, float]:
        """``(x, E)`` of the basin's minimum (angstrom, eV); y = 0 there."""
        x = self.x_left if self.basin_name(basin) == "L" else self.x_right
        return x, float(self.potential(x, 0.0)[0])

    @property
    def saddle_energy_eV(self) -> float:
        return float(self.potential(self.x_saddle, 0.0)[0])

    # -------------------------------------------------------------- basins
    @property
    def dof_mask(self) -> np.ndarray:
        """(1, 3) bool: x and y are active, z is not."""
        return DOF_MASK.copy()

    def basin_index_2d(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Basin label of points (x, y), angstrom (broadcast shape): 0, 1 or -1."""
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        v = self.potential(x, y)[0]
        side = (x > self.x_saddle).astype(int)
        e_min = np.array([self.minimum("L")[1], self.minimum("R")[1]])
        bound = e_min + self.basin_fraction * (self.saddle_energy_eV - e_min)
        return np.where(v < bound[side], side, -1).astype(int)

    def basin_index(self, positions: np.ndarray) -> np.ndarray:
        """positions (n, 1, 3) angstrom -> (n,) int: 0 ("L"), 1 ("R") or -1."""
        p = np.asarray(positions, float)
        return self.basin_index_2d(p[..., 0, 0], p[..., 0, 1])

    def basin_index_cv(self, cv: np.ndarray) -> np.ndarray:
        """Basin label from true-CV values (n, 2) = (x, y) -> (n,)."""
        cv = np.asarray(cv, float)
        return self.basin_index_2d(cv[..., 0], cv[..., 1])

    def start_positions(self, basin: str | int | None, n: int, *, rng: np.random.Generator,
                        split: str = "train") -> np.ndarray:
        """(n, 1, 3): at the basin's minimum in x, with y drawn uniformly from
        [0, 0.2) angstrom for ``split="train"`` and (-0.2, 0] for ``"test"``,
        so that the two splits start from disjoint configurations."""
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        x, _ = self.minimum(basin)
        y = rng.uniform(0.0, 0.2, n) * (1.0 if split == "train" else -1.0)
        out = np.zeros((n, 1, 3))
        out[:, 0, 0] = x
        out[:, 0, 1] = y
        return out

    # ------------------------------------------------------------ true CVs
    def true_cv(self, positions: np.ndarray) -> np.ndarray:
        """(n, 1, 3) angstrom -> (n, 2): (x, y), angstrom."""
        return np.asarray(positions, float)[..., 0, :2].copy()

    def true_cv_module(self) -> torch.nn.Module:
        """(x, y) as a TorchScript module: positions (n, 1, 3) -> (n, 2) angstrom."""
        return torch.jit.script(_TrueCV())

    def reference_transitions(self, temperature_K: float) -> list[dict[str, Any]]:
        """Exact references between the two basins.

        ``delta_F_eV = F_to - F_from`` with ``F_b = -kT ln Z_b`` and ``Z_b``
        the integral of ``exp(-V/kT)`` over basin ``b`` (midpoint rule on an
        800 x 800 grid; ``*_err_eV`` is the change from a 400 x 400 grid).
        ``barrier_eV`` is the minimax level of the 2D free-energy surface
        ``F(x, y) = V(x, y)`` between the minima, i.e. exactly ``E_saddle -
        E_from``.
        """
        kt = kB * float(temperature_K)  # eV
        f_fine = self._basin_free_energies(kt, 800)
        f_coarse = self._basin_free_energies(kt, 400)
        rows = []
        for i, a in enumerate(self.basins):
            for j, b in enumerate(self.basins):
                if i == j:
                    continue
                rows.append({
                    "from": a, "to": b,
                    "delta_F_eV": float(f_fine[j] - f_fine[i]),
                    "delta_F_err_eV": float(abs((f_fine[j] - f_fine[i])
                                                - (f_coarse[j] - f_coarse[i]))),
                    "barrier_eV": self.saddle_energy_eV - self.minimum(a)[1],
                    "barrier_err_eV": 0.0,
                    "method": "midpoint quadrature of exp(-V/kT) over each basin, 800x800 "
                              "cells; barrier E_saddle - E_min",
                })
        return rows

    def _basin_free_energies(self, kt: float, n: int) -> np.ndarray:
        """-kT ln Z_b of both basins, eV (same additive constant)."""
        x_lo = self.x_left - 1.5 * self.a
        x_hi = self.x_right + 1.5 * self.a
        y_max = np.sqrt(2.0 * 40.0 * kt / self.k)
        hx, hy = (x_hi - x_lo) / n, 2.0 * y_max / n
        x = x_lo + hx * (np.arange(n) + 0.5)
        y = -y_max + hy * (np.arange(n) + 0.5)
        xx, yy = np.meshgrid(x, y, indexing="ij")
        v = self.potential(xx, yy)[0]
        label = self.basin_index_2d(xx, yy)
        e0 = float(v.min())
        out = []
        for b in range(len(self.basins)):
            z = np.exp(-(v[label == b] - e0) / kt).sum() * hx * hy
            out.append(e0 - kt * np.log(z))
        return np.array(out)

    # ------------------------------------------------------------------ ASE
    def make_atoms(self, basin: str | int | None = None) -> Atoms:
        """One pseudo-atom at the basin's minimum (the first basin when
        None), mass 1 amu, z fixed, with a :class:`DoubleWell2DCalculator`."""
        x, _ = self.minimum(basin)
        atoms = Atoms("H", positions=[[x, 0.0, 0.0]], masses=[self.mass_amu], pbc=False)
        atoms.set_constraint(FixCartesian(0, mask=(False, False, True)))
        atoms.calc = DoubleWell2DCalculator(self)
        return atoms

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update({
            "potential": "h ((x/a)^2 - 1)^2 + t x/a + k y^2/2",
            "barrier_eV": self.h, "half_width_A": self.a, "tilt_eV": self.t,
            "stiffness_y_eV_per_A2": self.k, "mass_amu": self.mass_amu,
            "basin_fraction": self.basin_fraction,
            "minima_x_A": {"L": self.x_left, "R": self.x_right},
            "saddle_x_A": self.x_saddle,
            "barriers_eV": {"L->R": self.saddle_energy_eV - self.minimum("L")[1],
                            "R->L": self.saddle_energy_eV - self.minimum("R")[1]},
        })
        return d


class DoubleWell2DCalculator(Calculator):
    """ASE calculator of a :class:`DoubleWell2D`: energy (eV) and forces
    (eV/angstrom, shape (1, 3), z force 0); a pure function of the positions."""

    implemented_properties: ClassVar[list[str]] = ["energy", "forces"]  # type: ignore[misc]

    def __init__(self, system: DoubleWell2D, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.system = system

    def calculate(self, atoms: Atoms | None = None,
                  properties: Sequence[str] = ("energy", "forces"),
                  system_changes: Sequence[str] = tuple(all_changes)) -> None:
        super().calculate(atoms, properties, system_changes)
        pos = self.atoms.positions
        if pos.shape != (1, 3):
            raise ValueError(f"double_well_2d needs 1 pseudo-atom, got {len(pos)}")
        e, f = self.system.energy_and_forces(pos[None])
        self.results = {"energy": float(e[0]), "forces": f[0]}


class _TrueCV(torch.nn.Module):
    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return positions[:, 0, :2]


__all__ = ["DOF_MASK", "DoubleWell2D", "DoubleWell2DCalculator"]
