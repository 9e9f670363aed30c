"""The umbrella bias as an ASE calculator.

``UmbrellaBias(calc, cv, center, k)`` is the wrapped calculator's energy plus
``0.5 * sum_d k_d (xi_d(x) - center_d)^2`` on a CV ``xi`` (a torch module
positions (n, n_atoms, 3) angstrom -> (n, d), e.g. ``torch.jit.load("cv.ts")``),
forces by autograd. It is a pure function of the positions (asking twice
changes nothing). Results, all in ``implemented_properties``: ``energy``
and ``free_energy`` (the wrapped calculator's plus the bias), ``forces``
(biased), ``stress`` (the wrapped calculator's plus the bias's virial, for
a CV of the positions alone), ``cv`` (d,), ``bias_energy`` and
``unbiased_energy`` (eV). The CV
module is not changed (a float32 module is converted on a copy). With ``calc=None`` it is the
bias alone, to combine with :class:`ase.calculators.mixing.SumCalculator`.

Periodic CVs (dihedrals in radians, period 2 pi) restrain the minimum-image
difference ``xi - center - period * round((xi - center) / period)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from mtcv_ase.torch_calculator import TorchCalculator, in_dtype


class UmbrellaBias(TorchCalculator):
    """Harmonic restraint on a CV, on top of ``calc`` (see module docstring).

    Parameters
    ----------
    calc : ASE calculator or None
        The physical potential; None for the bias alone.
    cv : torch.nn.Module
        positions (n, n_atoms, 3) angstrom -> xi (n, d).
    center : (d,) CV units
    k : (d,) or scalar, eV / CV unit^2
    period : (d,) or scalar, CV units, optional
        Period of each CV dimension; 0 (the default) for a non-periodic one.
    """

    implemented_properties: ClassVar[list[str]] = [  # type: ignore[misc]
        "energy", "free_energy", "forces", "stress", "cv", "bias_energy", "unbiased_energy"]

    def __init__(self, calc: Calculator | None, cv: torch.nn.Module, center: Any, k: Any,
                 period: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calc = calc
        self.cv = in_dtype(cv, self.dtype)
        self.center = torch.atleast_1d(torch.as_tensor(center, dtype=self.dtype))
        self.k = torch.atleast_1d(torch.as_tensor(k, dtype=self.dtype)).expand_as(self.center)
        self.period = _periods(period, self.center.shape[-1], self.dtype)

    def energy_fn(self, positions: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        xi = self.cv(positions[None])[0]
        bias = 0.5 * (self.k * min_image(xi - self.center, self.period) ** 2).sum()
        return bias, {"cv": xi, "bias_energy": bias}

    def calculate(self, atoms: Atoms | None = None,
                  properties: Sequence[str] = ("energy",),
                  system_changes: Sequence[str] = tuple(all_changes)) -> None:
        super().calculate(atoms, properties, system_changes)
        unbiased = unbiased_free = 0.0
        if self.calc is not None:
            unbiased = float(self.calc.get_potential_energy(self.atoms))
            unbiased_free = (float(self.calc.get_property("free_energy", self.atoms))
                             if "free_energy" in getattr(self.calc, "implemented_properties", ())
                             else unbiased)
            self.results["forces"] = self.results["forces"] + self.calc.get_forces(self.atoms)
        self.results["unbiased_energy"] = unbiased
        self.results["energy"] = unbiased + self.results["bias_energy"]
        self.results["free_energy"] = unbiased_free + self.results["bias_energy"]
        if "stress" in properties:
            self.results["stress"] = self._stress()

    def _stress(self) -> np.ndarray:
        """(6,) Voigt stress, eV/angstrom^3: the wrapped calculator's plus the
        bias's virial ``(1/V) dE_bias/d(strain)`` with the atoms scaled by
        the strain, ``-(1/V) sym(sum_i r_i (x) f_i)``. Exact for a CV of the
        positions alone; a CV that reads the cell (minimum images through a
        cell buffer) also changes with the cell itself, which this leaves
        out."""
        from ase.calculators.calculator import PropertyNotImplementedError

        volume = float(abs(self.atoms.get_volume())) if self.atoms.cell.rank == 3 else 0.0
        if volume <= 0:
            raise PropertyNotImplementedError("stress: the atoms have no 3D cell")
        stress = np.zeros(6)
        bias_forces = self.results["forces"]
        if self.calc is not None:
            if "stress" not in getattr(self.calc, "implemented_properties", ()):
                raise PropertyNotImplementedError(
                    f"stress: the wrapped {type(self.calc).__name__} does not give one")
            stress = np.asarray(self.calc.get_stress(self.atoms), float)
            bias_forces = bias_forces - self.calc.get_forces(self.atoms)
        virial = -np.einsum("ia,ib->ab", self.atoms.get_positions(), bias_forces) / volume
        virial = 0.5 * (virial + virial.T)
        return stress + virial[[0, 1, 2, 1, 0, 0], [0, 1, 2, 2, 2, 1]]


class BatchedBias:
    """Harmonic CV restraints for many walkers at once (the fast path).

    ``__call__(x)`` returns the total energy (n,) eV and forces
    (n, n_atoms, 3) eV/angstrom of the system plus each walker's own
    restraint; the last CV values (n, d) and bias energies (n,) are kept in
    :attr:`last_cv` and :attr:`last_bias`.

    centers, k: (n, d) for the n walkers, in the order of the positions;
    periods: (d,) CV units, 0 for a non-periodic dimension (default: none).
    """

    def __init__(self, system: Any, cv: torch.nn.Module, centers: np.ndarray, k: np.ndarray,
                 periods: Any = None):
        self.system = system
        self.cv = in_dtype(cv, torch.float64)
        self.centers = torch.as_tensor(np.asarray(centers, float))
        self.k = torch.as_tensor(np.asarray(k, float))
        self.periods = _periods(periods, self.centers.shape[-1], torch.float64)
        self.last_cv = np.zeros(self.centers.shape)
        self.last_bias = np.zeros(len(self.centers))
        self.last_unbiased = np.zeros(len(self.centers))

    def bias(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bias energy (n,), bias forces (n, n_atoms, 3), xi (n, d)."""
        pos = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            xi = self.cv(pos)
            e = 0.5 * (self.k * min_image(xi - self.centers, self.periods) ** 2).sum(dim=1)
            (grad,) = torch.autograd.grad(e.sum(), pos)
        return e.detach().numpy(), -grad.numpy(), xi.detach().numpy()

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e0, f0 = self.system.energy_and_forces(x)
        eb, fb, xi = self.bias(x)
        self.last_cv, self.last_bias, self.last_unbiased = xi, eb, e0
        return e0 + eb, f0 + fb


def _periods(period: Any, d: int, dtype: torch.dtype) -> torch.Tensor:
    """(d,) periods, 0 where a dimension is not periodic."""
    if period is None:
        return torch.zeros(d, dtype=dtype)
    p = torch.atleast_1d(torch.as_tensor(period, dtype=dtype)).expand(d).clone()
    if not bool(torch.all(torch.isfinite(p) & (p >= 0))):
        raise ValueError(f"umbrella bias: periods must be finite and >= 0, got {p.tolist()}")
    return p


def min_image(diff: torch.Tensor, period: torch.Tensor) -> torch.Tensor:
    """``diff`` (..., d) wrapped to [-period/2, period/2] where ``period`` (d,)
    is positive, unchanged where it is 0. The shift is piecewise constant, so
    the gradient is that of ``diff``."""
    if not bool(torch.any(period > 0)):
        return diff
    safe = torch.where(period > 0, period, torch.ones_like(period))
    shift = torch.where(period > 0, safe * torch.round(diff / safe), torch.zeros_like(diff))
    return diff - shift
