r"""Exact free energies of the 5D model systems by quadrature in (x~, y~).

Jacobian
--------
The 5D potential depends on two radii only, ``V(x1..x5) = V2d(x~, y~)`` with
``x~ = sqrt(x1^2 + x2^2 + 1e-7 x5^2)`` and ``y~ = sqrt(x3^2 + x4^2)``. The
Boltzmann density of the radii follows from the configurational integral

    Z = \int d^5x exp(-beta V2d(x~, y~)).

* ``(x3, x4)`` in polar coordinates: ``dx3 dx4 = y~ dy~ dphi34``; the angle
  integrates to ``2 pi``, leaving a factor ``y~``.
* ``(x1, x2)`` in polar coordinates, ``dx1 dx2 = r dr dphi12`` with
  ``r^2 = x1^2 + x2^2``. At fixed ``x5``, ``x~^2 = r^2 + 1e-7 x5^2`` gives
  ``r dr = x~ dx~``: a factor ``x~`` (and ``2 pi``), on ``x~ >=
  sqrt(1e-7) |x5|``.
* ``x5`` enters only through ``1e-7 x5^2``. Over the region the dynamics
  explores (``|x5|`` up to a few hundred angstrom, ``1e-7 x5^2 <~ 0.01
  angstrom^2`` against ``x~^2 ~ 10^2 .. 10^3 angstrom^2``) the constraint
  ``x~ >= sqrt(1e-7)|x5|`` is inactive and ``x5`` is a free coordinate
  whose integral is a constant.

Hence the marginal density of the radii and the 2D free-energy surface are

    p(x~, y~) \propto x~ y~ exp(-beta V2d(x~, y~)),
    F(x~, y~) = V2d(x~, y~) - kT ln(x~ y~) + const.

Why the full ``x5`` range is excluded: integrated over *all* ``x5`` allowed
at a given ``x~`` (``|x5| < x~ / sqrt(1e-7) ~ 3162 x~``) the ``x5``
integral contributes ``2 x~/sqrt(1e-7)``, i.e. another ``-kT ln x~`` in
``F``. That is the true equilibrium of the 5D potential, but it lives at
``|x5| ~ 10^4 .. 10^5`` angstrom, which the simulations never reach: with
the paper's Langevin parameters (1 amu, friction 0.01/fs, 300 K) ``x5``
diffuses with ``D = kT/(m gamma) ~ 0.025 angstrom^2/fs``, i.e. ~220
angstrom per nanosecond, while equilibrating over ``|x5| ~ 7 x 10^4``
angstrom would take ~0.1 s. Umbrella sampling along the true CVs samples
the ``x~ y~`` density above, so that is the reference.

Quadrature
----------
Everything here integrates ``p`` on a grid of ``n x n`` cells over the
potential's search rectangle (``system.potential.bounds``, clipped to
non-negative radii) with the midpoint rule. The integrand is smooth and the
basin regions (:meth:`~mtcv_systems.embedded5d.Embedded5DSystem.basin_index_2d`)
end where the density is ``e^{-10}`` or less of its peak, so the midpoint
rule converges fast; :func:`basin_free_energies` checks it against a grid of
half the resolution. Basin free energies are ``F_b = -kT ln P(b)`` with
``P`` normalised over the rectangle; differences do not depend on it.
Barriers are minimax levels on the 2D free-energy grid
(:func:`mtcv_core.fes_paths.basin_barriers`): the lowest path of
neighbouring cells between the basins' lowest cells, over its highest cell,
minus the starting basin's lowest cell.

Units: eV, angstrom, K.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import xarray as xr

from mtcv_core.fes_paths import basin_barriers
from mtcv_core.units import KB_EV_PER_K

#: Boltzmann constant, eV/K (ASE's, as in the thermostats)

CVFunction = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _temperature(system: Any, temperature_K: float | None) -> float:
    return float(system.temperature_K if temperature_K is None else temperature_K)


def cell_grid(system: Any, n: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Cell centres of an ``n x n`` midpoint grid over the system's search
    rectangle (radii >= 0).

    Returns
    -------
    x, y : (n,) angstrom
        Cell centres along x~ and y~.
    area : float
        Cell area, angstrom^2.
    """
    (xlo, xhi), (ylo, yhi) = system.potential.bounds
    xlo, ylo = max(0.0, xlo), max(0.0, ylo)
    hx, hy = (xhi - xlo) / n, (yhi - ylo) / n
    return xlo + hx * (np.arange(n) + 0.5), ylo + hy * (np.arange(n) + 0.5), hx * hy


def log_density_2d(system: Any, temperature_K: float | None, x: np.ndarray,
                   y: np.ndarray) -> np.ndarray:
    """Unnormalised log Boltzmann density of the radii, ``ln(x~ y~) - V2d/kT``.

    x, y : broadcastable arrays, angstrom -> broadcast shape, dimensionless
    (``-inf`` at ``x~ = 0`` or ``y~ = 0``).
    """
    kt = KB_EV_PER_K * _temperature(system, temperature_K)
    x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
    with np.errstate(divide="ignore"):
        return np.log(x * y) - system.potential.energy(x, y) / kt


def fes_2d(system: Any, temperature_K: float | None = None,
           grid: int | tuple[np.ndarray, np.ndarray] = 400) -> xr.DataArray:
    """The exact 2D free-energy surface ``F = V2d - kT ln(x~ y~)``.

    Parameters
    ----------
    system : Embedded5DSystem (anything with ``potential`` and ``temperature_K``)
    temperature_K : float, optional
        Temperature, K (default: the system's).
    grid : int or (x, y)
        ``n`` for the centres of an ``n x n`` cell grid over the potential's
        bounds (:func:`cell_grid`), or the grid points ``x`` (nx,) and ``y``
        (ny,) in angstrom.

    Returns
    -------
    xr.DataArray, dims (x_tilde, y_tilde), eV
        ``F`` minus its minimum over the grid (``inf`` where ``x~ y~ = 0``).
    """
    temp = _temperature(system, temperature_K)
    if isinstance(grid, int | np.integer):
        x, y, _ = cell_grid(system, int(grid))
    else:
        x, y = (np.asarray(g, float) for g in grid)
    kt = KB_EV_PER_K * temp
    f = -kt * log_density_2d(system, temp, x[:, None], y[None, :])
    f -= np.min(f)
    return xr.DataArray(
        f, dims=("x_tilde", "y_tilde"),
        coords={"x_tilde": ("x_tilde", x, {"units": "angstrom", "long_name": "x~"}),
                "y_tilde": ("y_tilde", y, {"units": "angstrom", "long_name": "y~"})},
        name="free_energy",
        attrs={"units": "eV", "long_name": "free energy F(x~, y~) = V2d - kT ln(x~ y~)",
               "temperature_K": temp, "reference": "minimum over the grid = 0"})


def _basin_probabilities(system: Any, temp: float, n: int) -> tuple[np.ndarray, np.ndarray,
                                                                     np.ndarray, np.ndarray]:
    """(P per basin, F grid in kT, labels grid, edge-touching flag per basin)."""
    x, y, _ = cell_grid(system, n)
    logp = log_density_2d(system, temp, x[:, None], y[None, :])
    w = np.exp(logp - np.max(logp))
    labels = np.asarray(system.basin_index_2d(x[:, None], y[None, :]))
    n_b = len(system.basins)
    p = np.array([w[labels == b].sum() for b in range(n_b)]) / w.sum()
    edge = np.zeros(n_b, bool)
    border = np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    for b in range(n_b):
        edge[b] = bool(np.any(border == b))
    return p, -logp, labels, edge


def basin_free_energies(system: Any, temperature_K: float | None = None, n: int = 800, *,
                        check: bool = True, tol_eV: float = 1e-3) -> dict[str, float]:
    """Exact basin free energies ``F_b = -kT ln P(b)`` (eV).

    ``P(b)`` is the probability, under ``p ∝ x~ y~ exp(-V2d/kT)`` normalised
    over the potential's bounds, of the region labelled ``b`` by
    ``system.basin_index_2d``; midpoint rule on ``n x n`` cells.

    Parameters
    ----------
    system : Embedded5DSystem
    temperature_K : float, optional
        K (default: the system's).
    n : int
        Cells per axis.
    check : bool
        Also integrate on ``n // 2`` cells and warn if any ``F_b`` changes by
        more than ``tol_eV``.
    tol_eV : float
        Convergence tolerance, eV.

    Returns
    -------
    dict
        Basin name -> ``F_b`` in eV (``inf`` for a basin without cells).
    """
    temp = _temperature(system, temperature_K)
    kt = KB_EV_PER_K * temp
    p, _, _, edge = _basin_probabilities(system, temp, n)
    with np.errstate(divide="ignore"):
        f = -kt * np.log(p)
    if np.any(edge):
        warnings.warn(f"basin(s) {[system.basins[b] for b in np.flatnonzero(edge)]} touch "
                      "the edge of the integration rectangle", RuntimeWarning, stacklevel=2)
    if check:
        p2, *_ = _basin_probabilities(system, temp, max(2, n // 2))
        with np.errstate(divide="ignore"):
            f2 = -kt * np.log(p2)
        change = np.max(np.abs(f - f2), initial=0.0)
        if not change <= tol_eV:
            warnings.warn(f"basin free energies changed by {change:.2g} eV between {n // 2} "
                          f"and {n} cells per axis (tolerance {tol_eV} eV)", RuntimeWarning,
                          stacklevel=2)
    return {name: float(v) for name, v in zip(system.basins, f, strict=True)}


def _transitions_at(system: Any, temp: float, n: int, diagonal: bool
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(basin free energies (n_b,) eV, barriers (n_b, n_b) eV) on n x n cells."""
    kt = KB_EV_PER_K * temp
    p, f_kt, labels, _ = _basin_probabilities(system, temp, n)
    with np.errstate(divide="ignore"):
        f_b = -kt * np.log(p)
    f_kt = np.where(np.isfinite(f_kt), f_kt, np.nan)  # x~ y~ = 0: impassable
    bars, _ = basin_barriers(f_kt, labels, len(system.basins), diagonal=diagonal)
    return f_b, bars * kt


def reference_transitions(system: Any, temperature_K: float | None = None, *, n: int = 400,
                          diagonal: bool = False) -> list[dict[str, Any]]:
    """Exact free-energy differences and 2D-FES barriers between all ordered
    basin pairs.

    Parameters
    ----------
    system : Embedded5DSystem
    temperature_K : float, optional
        K (default: the system's).
    n : int
        Cells per axis of the grid (barriers and basin integrals).
    diagonal : bool
        Let minimax paths step diagonally between cells.

    Returns
    -------
    list of dict
        ``{"from", "to", "delta_F_eV", "delta_F_err_eV", "barrier_eV",
        "barrier_err_eV", "method"}`` per ordered pair, as
        :func:`mtcv_core.schema_umbrella.transitions_table`: ``delta_F = F_to - F_from``,
        ``barrier`` the minimax level on ``F(x~, y~)`` between the basins'
        lowest cells minus that of ``from``. The ``*_err_eV`` entries are the
        change from a grid of half the resolution (discretisation error
        estimate, not statistics).
    """
    temp = _temperature(system, temperature_K)
    f_b, bars = _transitions_at(system, temp, n, diagonal)
    f_b2, bars2 = _transitions_at(system, temp, max(2, n // 2), diagonal)
    rows = []
    for i, a in enumerate(system.basins):
        for j, b in enumerate(system.basins):
            if i == j:
                continue
            rows.append({
                "from": a, "to": b,
                "delta_F_eV": float(f_b[j] - f_b[i]),
                "delta_F_err_eV": float(abs((f_b[j] - f_b[i]) - (f_b2[j] - f_b2[i]))),
                "barrier_eV": float(bars[i, j]),
                "barrier_err_eV": float(abs(bars[i, j] - bars2[i, j])),
                "method": f"quadrature of the 5D configurational integral, {n}x{n} cells",
            })
    return rows


def pmf_along(system: Any, temperature_K: float | None, cv_fn: CVFunction,
              bins: int | np.ndarray = 50, *, n: int = 800,
              weight_cutoff: float = 1e-12) -> xr.Dataset:
    """Exact 1D PMF along any function of the radii, by quadrature.

    The 2D density ``p ∝ x~ y~ exp(-V2d/kT)`` on ``n x n`` cells is
    histogrammed by ``s = cv_fn(x~, y~)``: ``F_i = -kT ln P(s in bin i)``,
    zero at the lowest bin -- the quantity the MBAR estimator's histogram
    PMF estimates.

    Parameters
    ----------
    system : Embedded5DSystem
    temperature_K : float or None
        K (None: the system's).
    cv_fn : callable
        ``cv_fn(x~, y~)`` on (m,) arrays (angstrom) -> (m,) CV values. A CV
        of the 5D positions can be passed as ``lambda x, y:
        cv(system.embed(x, y))``; that is exact only if the CV does not
        depend on the angles and ``x5`` (see the module docstring).
    bins : int or (n_bins + 1,) array
        Bin edges, or a number of equal bins over the range of ``s`` on the
        cells whose density exceeds ``weight_cutoff`` times the peak.
    n : int
        Cells per axis.
    weight_cutoff : float
        Relative density below which cells do not set the automatic range.

    Returns
    -------
    xr.Dataset
        ``pmf`` (bin) eV, ``probability`` (bin), coordinate ``bin_center``
        and ``bin_edges`` (bin_edge), in the CV's units; NaN for empty bins.
    """
    temp = _temperature(system, temperature_K)
    kt = KB_EV_PER_K * temp
    x, y, _ = cell_grid(system, n)
    xx, yy = np.meshgrid(x, y, indexing="ij")
    logp = log_density_2d(system, temp, xx, yy).ravel()
    w = np.exp(logp - np.max(logp))
    s = np.asarray(cv_fn(xx.ravel(), yy.ravel()), float).reshape(-1)
    if s.shape != w.shape:
        raise ValueError(f"pmf_along: cv_fn returned shape {s.shape}, expected {w.shape}")
    if np.ndim(bins) == 0:
        live = (w > weight_cutoff) & np.isfinite(s)
        edges = np.linspace(s[live].min(), s[live].max(), int(bins) + 1)
    else:
        edges = np.asarray(bins, float)
    ok = np.isfinite(s)
    # bincount, not np.histogram: its weighted sums difference a cumulative
    # sum and lose the far tails to cancellation
    idx = np.searchsorted(edges, s[ok], side="right") - 1
    idx[s[ok] == edges[-1]] = len(edges) - 2  # the last bin is closed
    inside = (idx >= 0) & (idx < len(edges) - 1)
    prob = np.bincount(idx[inside], weights=w[ok][inside], minlength=len(edges) - 1)
    prob = prob / w[ok].sum()
    with np.errstate(divide="ignore"):
        pmf = -kt * np.log(prob)
    pmf[prob <= 0] = np.nan
    pmf -= np.nanmin(pmf)
    return xr.Dataset(
        {"pmf": (("bin",), pmf, {"units": "eV", "long_name": "exact potential of mean force",
                                 "description": "-kT ln P(bin), zero at the lowest bin"}),
         "probability": (("bin",), prob, {"units": "1", "long_name": "bin probability"}),
         "bin_edges": (("bin_edge",), edges, {"long_name": "bin edges"})},
        coords={"bin_center": (("bin",), 0.5 * (edges[1:] + edges[:-1]),
                               {"long_name": "bin centre"})},
        attrs={"temperature_K": temp, "method": f"midpoint quadrature, {n}x{n} cells"})


__all__ = ["KB_EV_PER_K", "cell_grid", "log_density_2d", "fes_2d", "basin_free_energies",
           "reference_transitions", "pmf_along"]
