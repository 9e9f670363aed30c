"""Configurations on a dividing surface ``xi = xi*``, from restrained MD.

Walkers run Langevin MD (the batched engine) under a stiff harmonic
restraint ``k/2 (xi - xi*)^2`` on the 1D CV (non-periodic); after
``equilibration_steps`` their positions are recorded every ``stride``
steps. The configurations within ``slab`` thermal widths ``sqrt(kT/k)`` of
the surface are kept, each with the weight ``exp(+k/2 (xi - xi*)^2 / kT)``
that undoes the restraint: weighted, they sample the unbiased ensemble
restricted to the slab, which tends to the surface ensemble as the slab
narrows. From them: the flux factor ``<|grad xi|_M>`` of transition-state
theory and the starting points of the reactive-flux and committor shots
(:mod:`mtcv_rates.surface_shots`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import xarray as xr

from mtcv_ase.md import BatchLangevin, LangevinParams, maxwell_boltzmann
from mtcv_core.execution import task_rng
from mtcv_core.interfaces import System
from mtcv_core.rates import mass_weighted_gradient_norm
from mtcv_core.units import kT_eV
from mtcv_rates.surface_shots import _xi_and_gradient


@dataclass(frozen=True)
class SurfaceSampler:
    """Restrained MD at ``xi*`` (spring ``spring`` in eV/[xi]^2): ``walkers``
    walkers, ``equilibration_steps`` unrecorded then ``n_steps`` steps,
    positions every ``stride``; configurations within ``slab`` thermal widths
    of the surface kept."""

    temperature_K: float
    spring: float
    walkers: int = 16
    equilibration_steps: int = 1000
    n_steps: int = 5000
    stride: int = 50
    timestep_fs: float = 1.0
    friction_per_fs: float = 0.01
    slab: float = 0.5

    def run(self, system: System, cv: torch.nn.Module, xi_star: float, starts: np.ndarray,
            *, seed: int) -> xr.Dataset:
        """Surface configurations from ``starts`` ((n, n_atoms, 3) angstrom,
        used round-robin): ``positions`` (config, atom, xyz), ``xi``,
        ``weight`` (normalised) and ``grad_norm`` (``|grad xi|_M``) per
        configuration; attrs ``mean_grad_norm`` (weighted), ``xi_star``."""
        if not self.spring > 0:
            raise ValueError(f"surface sampler: spring must be > 0, got {self.spring}")
        starts = np.asarray(starts, float)
        if starts.ndim != 3 or len(starts) == 0:
            raise ValueError(f"surface sampler: starts must be (n, n_atoms, 3), got "
                             f"{starts.shape}")
        kt = kT_eV(self.temperature_K)
        rng = task_rng(seed, "surface", f"{float(xi_star):.12g}")
        x = starts[np.arange(self.walkers) % len(starts)].copy()
        masses = system.make_atoms(system.basins[0]).get_masses()
        v = maxwell_boltzmann(masses, self.temperature_K, rng, n=self.walkers,
                              dof_mask=system.dof_mask)
        bias = _Restrained(system, cv, float(xi_star), float(self.spring))
        params = LangevinParams(temperature_K=self.temperature_K,
                                timestep_fs=self.timestep_fs,
                                friction_per_fs=self.friction_per_fs)
        integ = BatchLangevin(bias, masses, params, rng, dof_mask=system.dof_mask)
        _, f = integ.evaluate(x)
        kept_x, kept_xi = [], []
        for step in range(1, self.equilibration_steps + self.n_steps + 1):
            x, v, f, e = integ.step(x, v, f)
            if integ.blown(x, e).any():
                raise RuntimeError(f"surface sampler: a walker blew up at step {step} "
                                   f"(xi* = {xi_star}); lower timestep_fs or the spring")
            if step > self.equilibration_steps and (step - self.equilibration_steps) % \
                    self.stride == 0:
                kept_x.append(x.copy())
                kept_xi.append(bias.last_cv.copy())
        pos = np.concatenate(kept_x)
        xi = np.concatenate(kept_xi)
        width = np.sqrt(kt / self.spring)
        inside = np.abs(xi - xi_star) <= self.slab * width
        if inside.sum() < 2:
            raise RuntimeError(f"surface sampler: only {int(inside.sum())} configurations "
                               f"within {self.slab} thermal widths of xi* = {xi_star}; "
                               "run longer or widen the slab")
        pos, xi = pos[inside], xi[inside]
        log_w = 0.5 * self.spring * (xi - xi_star) ** 2 / kt
        w = np.exp(log_w - log_w.max())
        w /= w.sum()
        grad = _xi_and_gradient(bias.cv, pos)[1]
        norm = mass_weighted_gradient_norm(grad, masses)
        out = xr.Dataset(
            {"positions": (("config", "atom", "xyz"), pos, {"units": "angstrom"}),
             "xi": (("config",), xi, {"long_name": "xi of the configuration"}),
             "weight": (("config",), w, {"units": "1", "long_name": "weight that undoes the "
                                                                     "restraint (sums to 1)"}),
             "grad_norm": (("config",), norm, {"units": "[xi]/(angstrom sqrt(amu))",
                                               "long_name": "|grad xi|_M"})})
        out.attrs.update(xi_star=float(xi_star), spring=float(self.spring),
                         temperature_K=float(self.temperature_K),
                         mean_grad_norm=float(w @ norm),
                         n_recorded=int(len(inside)), n_kept=int(inside.sum()))
        return out


class _Restrained:
    """The system's energy (n,) eV and forces (n, n_atoms, 3) eV/angstrom
    plus ``k/2 (xi - xi*)^2`` on a 1D CV, for a batch of walkers; the last
    xi (n,) in :attr:`last_cv`."""

    def __init__(self, system: System, cv: Any, xi_star: float, spring: float) -> None:
        self.system = system
        self.cv = cv.to(torch.float64) if hasattr(cv, "to") else cv
        self.xi_star = xi_star
        self.spring = spring
        self.last_cv = np.zeros(0)

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        e0, f0 = self.system.energy_and_forces(x)
        pos = torch.tensor(x, dtype=torch.float64, requires_grad=True)
        with torch.enable_grad():
            xi = self.cv(pos)[:, 0]
            e_bias = 0.5 * self.spring * (xi - self.xi_star) ** 2
            (grad,) = torch.autograd.grad(e_bias.sum(), pos)
        self.last_cv = xi.detach().numpy()
        return e0 + e_bias.detach().numpy(), f0 - grad.numpy()


__all__ = ["SurfaceSampler"]
