r"""Coarse graining the 5D embedded model systems onto their true CVs.

The CG coordinates of a :class:`mtcv_systems.embedded5d.Embedded5DSystem`
(``muller_brown_5d``, ``three_well_5d``) are its radii

    R = (x~, y~),  x~ = sqrt(x1^2 + x2^2 + w x5^2),  y~ = sqrt(x3^2 + x4^2),

with w = 1e-7, stored as one CG site ``(x~, y~, 0)`` (z inactive). The map
is nonlinear: its mapped force is the instantaneous collective force of
:class:`mtcv_thermo.cgmap.NonlinearCGMap` (computed there by autograd;
:func:`radial_instantaneous_force` is its closed form here). The two
gradients have disjoint supports, hence are orthogonal, and with
``b_x = grad x~ / |grad x~|^2``, ``b_y = grad y~ / |grad y~|^2``
(``|grad y~| = 1``):

    b_x . F = -dV2d/dx~,   b_y . F = -dV2d/dy~        (exactly),
    div b_y = 1/y~,
    div b_x = 1/x~ + w x~/s + 2 w^2 (1 - w) x5^2 x~ / s^2,
              s = x1^2 + x2^2 + w^2 x5^2,

the polar-coordinate divergence 1/r plus terms of relative order w from
the x5 direction.

Free energy
-----------
The code does not confine x5: it is a free coordinate (its force, of order
w x5 dV2d/dx~ / x~, is negligible) that diffuses from its start (x5 = 0 in
``start_positions``) by ~20 angstrom in 10 ps at 300 K. At any x5 reached,
``w x5^2 <~ 1e-3 angstrom^2`` against ``x~^2 >~ 300 angstrom^2``, so the
constraint ``x~ >= sqrt(w) |x5|`` is inactive, and with ``dx1 dx2 = r dr
dphi``, ``r dr = x~ dx~`` at fixed x5 (and ``dx3 dx4 = y~ dy~ dphi``) the
sampled density of the radii is ``p ∝ x~ y~ exp(-V2d/kT)`` (the argument
of :mod:`mtcv_systems.reference`; the full-x5 equilibrium, which would add
another -kT ln x~, lives at |x5| ~ 1e4 angstrom, never reached). Hence

    A(x~, y~, T) = V2d(x~, y~) - kT ln(x~ y~) + c(T),

where c(T) collects the two angle integrals ((2 pi)^2) and the x5
integral (not in equilibrium: the spread of x5 grows with time), an
R-independent constant that no force and no label sees (set to 0 in
:func:`radial_free_energy`), and ``-grad_R A = (-dV2d/dx~ + kT/x~,
-dV2d/dy~ + kT/y~)`` (:func:`radial_mean_force`). The 5D instantaneous
force above averages to this up to a relative 1e-7 (its w x~/s term is
the x5 direction's share of the full-5D measure). Since V2d is a
function of R, ``<u | R> = V2d(R) = d(beta A)/d beta`` exactly, and both
labels are noiseless functions of R here (up to 1e-7): all the temperature
dependence of A is the Jacobian term -kT ln(x~ y~).

Units: angstrom, eV, K.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from mtcv_thermo.cgmap import NonlinearCGMap
from mtcv_thermo.constants import KB


def radial_cg_map(system: Any) -> NonlinearCGMap:
    """The map r -> (x~, y~) of a 5D embedded system (two pseudo-atoms, the
    sixth Cartesian coordinate fixed), from the system's TorchScript true-CV
    module; gradients checked to be orthogonal."""
    return NonlinearCGMap(system.true_cv_module(), n_atoms=2, n_cv=2,
                          dof_mask=system.dof_mask, require_orthogonal=True,
                          name=f"{system.name}: (x~, y~)")


def _kt(temperature_K: Any) -> np.ndarray:
    t = np.asarray(temperature_K, dtype=np.float64)
    if not np.isfinite(t).all() or (t <= 0).any():
        raise ValueError(f"temperature_K: must be finite and > 0 K, got {temperature_K!r}")
    return KB * t


def radial_free_energy(system: Any, x_tilde: Any, y_tilde: Any, temperature_K: Any
                       ) -> np.ndarray:
    """A(x~, y~, T) = V2d - kT ln(x~ y~), eV (broadcasts; c(T) = 0)."""
    x, y = np.asarray(x_tilde, float), np.asarray(y_tilde, float)
    return system.potential.energy(x, y) - _kt(temperature_K) * np.log(x * y)


def radial_mean_force(system: Any, x_tilde: Any, y_tilde: Any, temperature_K: Any
                      ) -> np.ndarray:
    """-grad_R A = (-dV2d/dx~ + kT/x~, -dV2d/dy~ + kT/y~), (..., 2) eV/angstrom."""
    x, y = np.broadcast_arrays(np.asarray(x_tilde, float), np.asarray(y_tilde, float))
    _, gx, gy = system.potential.energy_and_gradient(x, y)
    kt = _kt(temperature_K)
    return np.stack([-gx + kt / x, -gy + kt / y], -1)


def radial_instantaneous_force(positions: np.ndarray, potential_gradient: Any,
                               temperature_K: Any, x5_weight: float = 1e-7) -> np.ndarray:
    """Closed form of the instantaneous collective force of the radial map.

    positions (n, 2, 3) angstrom (x1..x5 = positions.ravel()[:5]);
    ``potential_gradient(x~, y~) -> (dV/dx~, dV/dy~)``; temperature (n,) K
    or one value; ``x5_weight`` = w. Returns (n, 2) eV/angstrom (module
    docstring, including the w terms).
    """
    p = np.asarray(positions, float)
    x = p.reshape(len(p), 6)[:, :5]
    w = float(x5_weight)
    r2 = x[:, 0] ** 2 + x[:, 1] ** 2
    xt = np.sqrt(r2 + w * x[:, 4] ** 2)
    yt = np.sqrt(x[:, 2] ** 2 + x[:, 3] ** 2)
    s = r2 + w**2 * x[:, 4] ** 2
    div_x = 1.0 / xt + w * xt / s + 2 * w**2 * (1 - w) * x[:, 4] ** 2 * xt / s**2
    gx, gy = potential_gradient(xt, yt)
    kt = _kt(temperature_K)
    return np.stack([-gx + kt * div_x, -gy + kt / yt], -1)


__all__ = ["radial_cg_map", "radial_free_energy", "radial_mean_force",
           "radial_instantaneous_force"]
