"""The learned free energy A_theta(R, T) as an ASE calculator, and CG MD on it.

:class:`FreeEnergyCalculator` is a :class:`mtcv_ase.torch_calculator.TorchCalculator`:
energy = A_theta(R, T) (eV) at the calculator's temperature, forces =
-grad_R A by autograd (eV/angstrom), for the CG sites as an ``ase.Atoms``
(:func:`make_cg_atoms`; inactive CG coordinates fixed). Sampling it at T
gives the model's CG distribution exp(-A_theta(R, T) / kT).

:func:`run_cg_md` is the fast path: many walkers at once with
:class:`mtcv_ase.md.BatchLangevin` (the same integrator as ASE's Langevin)
on the batched :meth:`FreeEnergyCalculator.energy_and_forces`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from ase import Atoms
from ase.constraints import FixCartesian

from mtcv_ase.md import BatchLangevin, LangevinParams, maxwell_boltzmann
from mtcv_ase.torch_calculator import TorchCalculator
from mtcv_thermo.models import DTYPE, FreeEnergyModel, thermo_derivatives


class FreeEnergyCalculator(TorchCalculator):
    """ASE calculator of a learned CG free energy at a fixed temperature.

    Parameters
    ----------
    model : FreeEnergyModel
        A_theta(positions (n, n_sites, 3) angstrom, temperature (n,) K) -> (n,) eV.
    temperature_K : float
        T at which A is evaluated (keyword-only), > 0.
    **kwargs
        Passed to :class:`TorchCalculator` (``device``, ...).
    """

    def __init__(self, model: FreeEnergyModel, *, temperature_K: float, **kwargs: Any) -> None:
        super().__init__(dtype=DTYPE, **kwargs)
        if not (np.isfinite(temperature_K) and temperature_K > 0):
            raise ValueError(f"temperature_K: must be finite and > 0 K, got {temperature_K!r}")
        self.model = model.to(DTYPE).eval()
        self.temperature_K = float(temperature_K)

    def energy_fn(self, positions: torch.Tensor) -> torch.Tensor:
        """A_theta(R, T) of one configuration (n_sites, 3) angstrom -> scalar eV."""
        temp = torch.full((1,), self.temperature_K, dtype=positions.dtype)
        return self.model(positions[None], temp)[0]

    def energy_and_forces(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Batched: (n, n_sites, 3) angstrom -> A (n,) eV, -grad_R A (n, n_sites, 3)
        eV/angstrom (the model's closed form when it has one, else autograd)."""
        pos = np.asarray(positions, dtype=np.float64)
        direct = getattr(self.model, "energy_and_forces", None)
        if callable(direct):
            return direct(pos, self.temperature_K)
        out = thermo_derivatives(self.model, torch.as_tensor(pos),
                                 torch.full((len(pos),), self.temperature_K, dtype=DTYPE))
        return out["free_energy"].numpy(), out["forces"].numpy()


def make_cg_atoms(positions: np.ndarray, site_mask: np.ndarray, *,
                  calculator: Any = None, mass_amu: float = 1.0) -> Atoms:
    """CG sites as an ``ase.Atoms``: positions (n_sites, 3) angstrom, the
    inactive coordinates of ``site_mask`` (n_sites, 3) fixed, masses in amu."""
    pos = np.asarray(positions, dtype=np.float64)
    mask = np.asarray(site_mask, dtype=bool)
    if pos.ndim != 2 or pos.shape != mask.shape:
        raise ValueError(f"positions: expected shape {mask.shape} (as site_mask), got {pos.shape}")
    atoms = Atoms(f"X{len(pos)}", positions=pos, masses=np.full(len(pos), float(mass_amu)))
    fixed = [FixCartesian(i, mask=tuple(~mask[i])) for i in range(len(pos)) if (~mask[i]).any()]
    if fixed:
        atoms.set_constraint(fixed)
    if calculator is not None:
        atoms.calc = calculator
    return atoms


def run_cg_md(model: FreeEnergyModel, temperature_K: float, start: np.ndarray, n_steps: int,
              *, rng: np.random.Generator, timestep_fs: float = 2.0,
              friction_per_fs: float = 0.05, stride: int = 10, burn_in: int = 0,
              mass_amu: float = 1.0) -> np.ndarray:
    """Langevin CG MD of many walkers on A_theta(R, T) at ``temperature_K``.

    Parameters
    ----------
    model : the free-energy model (its ``site_mask`` marks the moving coordinates)
    temperature_K : K
    start : (n_walkers, n_sites, 3) angstrom starting positions
    n_steps : steps after ``burn_in``; every ``stride``-th is recorded
    rng : numpy Generator (velocities and noise)
    timestep_fs, friction_per_fs, mass_amu : integrator settings

    Returns
    -------
    (n_steps // stride, n_walkers, n_sites, 3) angstrom
    """
    calc = FreeEnergyCalculator(model, temperature_K=temperature_K)
    mask = model.site_mask.cpu().numpy().astype(bool)
    x = np.array(start, dtype=np.float64)
    if x.ndim != 3 or x.shape[1:] != mask.shape:
        raise ValueError(f"start: expected shape (n_walkers, {mask.shape[0]}, 3), "
                         f"got {x.shape}")
    masses = np.full(mask.shape[0], float(mass_amu))
    params = LangevinParams(temperature_K=float(temperature_K), timestep_fs=timestep_fs,
                            friction_per_fs=friction_per_fs)
    integ = BatchLangevin(calc.energy_and_forces, masses, params, rng, dof_mask=mask)
    v = maxwell_boltzmann(masses, temperature_K, rng, n=len(x), dof_mask=mask)
    if burn_in > 0:
        out = integ.run(x, v, burn_in, stride=burn_in)
        x, v = out["x"], out["v"]
    return integ.run(x, v, n_steps, stride=stride)["positions"]


__all__ = ["FreeEnergyCalculator", "make_cg_atoms", "run_cg_md"]
