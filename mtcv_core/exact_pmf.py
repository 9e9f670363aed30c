"""The exact free-energy profile along any CV, for systems with quadrature.

A system that can enumerate its Boltzmann distribution as weighted nodes
(:meth:`mtcv_core.interfaces.System.equilibrium_nodes`; the 5D models do, by
quadrature over ``(x~, y~)`` with the embedding's Jacobian, the spectators
drawn from a stated distribution) gives the profile along ANY CV without
sampling: push every node through the CV and histogram the weights.

:func:`exact_pmf` does that on the bins of an estimator's ``fes.nc`` and
defines basins, free-energy differences and barriers exactly as the MBAR
estimator does (:mod:`mtcv_mbar.estimator`): basins by ``basin_of`` of the
CV value (samples) and of the bin centres (grid), ``delta_F = F_b - F_a``
from basin probabilities, barriers as minimax levels on the binned PMF. Only
nodes whose CV value lies inside the bins count, as only sampled values count
for MBAR. So ``MBAR - exact`` along the same CV is the sampling and estimator
error, and ``exact - 2D quadrature`` the price of the CV itself.

Units: eV; CV in its own units.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import xarray as xr

from mtcv_core.fes_paths import basin_barriers
from mtcv_core.schema import SCHEMA_ATTR, with_index_coords
from mtcv_core.units import KB_EV_PER_K

EXACT_FES_SCHEMA = "mtcv.fes_exact/1"


def fes_edges(fes: xr.Dataset) -> list[np.ndarray]:
    """The bin edges of an ``mtcv.fes/1`` dataset, one array per CV dimension."""
    if "bin_edges" in fes:
        return [np.asarray(fes["bin_edges"].values, float)]
    return [np.asarray(fes[f"bin_edges_{a}"].values, float) for a in "xy"
            if f"bin_edges_{a}" in fes]


def exact_pmf(system: Any, cv: Callable[[np.ndarray], np.ndarray], temperature_K: float,
              edges: Sequence[np.ndarray], *, basin_of: Callable[[np.ndarray], np.ndarray],
              basin_names: Sequence[str], spectator_spread: Sequence[float] | None = None,
              spectator_draws: int = 16, diagonal: bool = False, seed: int = 0,
              progress: bool = False) -> xr.Dataset:
    """The exact PMF along ``cv`` on the given bins, with basins and barriers.

    Parameters
    ----------
    system : System
        Implements ``equilibrium_nodes`` (else NotImplementedError).
    cv : callable
        positions (m, n_atoms, 3) angstrom -> xi (m, d) (d = len(edges)).
    temperature_K : float
        K.
    edges : sequence of (n_bins + 1,) arrays
        Bin edges per CV dimension (e.g. :func:`fes_edges` of ``fes.nc``).
    basin_of : callable
        xi (m, d) -> basin label (m,) int, -1 for none.
    basin_names : sequence of str
        Names of the labels.
    spectator_spread : sequence of float, optional
        Standard deviation of each non-periodic spectator (their units);
        None: held at 0 (see ``System.equilibrium_nodes``).
    spectator_draws : int
        Spectator configurations per quadrature cell.
    diagonal : bool
        Minimax paths on a 2D PMF may step diagonally (as the estimator's
        ``diagonal_moves``).

    Returns
    -------
    xr.Dataset
        ``pmf`` (bin dims) eV, zero at the lowest bin, NaN where no weight;
        ``probability``; ``basin_free_energy`` (basin) eV, ``delta_F`` and
        ``barrier`` (basin_from, basin_to) eV; attributes ``spectator_spread``,
        ``coverage`` (share of the total weight inside the bins).
    """
    from tqdm.auto import tqdm

    edges = [np.asarray(e, float) for e in edges]
    d = len(edges)
    shape = tuple(len(e) - 1 for e in edges)
    kt = KB_EV_PER_K * float(temperature_K)
    names = list(basin_names)
    n_b = len(names)
    prob = np.zeros(int(np.prod(shape)))
    basin_p = np.zeros(n_b)
    total = 0.0
    nodes = system.equilibrium_nodes(float(temperature_K), spectator_spread=spectator_spread,
                                     spectator_draws=spectator_draws, seed=seed)
    for positions, weights in tqdm(nodes, disable=not progress, desc="exact PMF",
                                   unit="chunk", leave=False):
        xi = np.asarray(cv(positions), float).reshape(len(weights), -1)
        if xi.shape[1] != d:
            raise ValueError(f"exact_pmf: the CV has {xi.shape[1]} dimensions, the bins {d}")
        total += float(weights.sum())
        idx = np.stack([np.searchsorted(edges[j], xi[:, j], side="right") - 1
                        for j in range(d)], axis=1)
        inside = np.all((idx >= 0) & (idx < np.array(shape)), axis=1) & np.all(
            np.isfinite(xi), axis=1)
        cell = np.ravel_multi_index(tuple(idx[inside].T), shape)
        prob += np.bincount(cell, weights=weights[inside], minlength=prob.size)
        labels = np.asarray(basin_of(xi[inside])).astype(int).reshape(-1)
        for b in range(n_b):
            basin_p[b] += float(weights[inside][labels == b].sum())
    inside_total = prob.sum()
    if inside_total <= 0:
        raise ValueError("exact_pmf: no weight falls inside the bins")
    prob = (prob / inside_total).reshape(shape)
    with np.errstate(divide="ignore"):
        pmf_kt = -np.log(prob)
        f_b = -np.log(basin_p / inside_total)
    pmf_kt[prob <= 0] = np.nan
    pmf_kt -= np.nanmin(pmf_kt)
    centers = [0.5 * (e[1:] + e[:-1]) for e in edges]
    grid = np.stack([g.ravel() for g in np.meshgrid(*centers, indexing="ij")], axis=1)
    labels_grid = np.asarray(basin_of(grid)).astype(int).reshape(shape)
    barrier = np.full((n_b, n_b), np.nan)
    if n_b:
        barrier, _ = basin_barriers(np.where(np.isfinite(pmf_kt), pmf_kt, np.nan),
                                    labels_grid, n_b, diagonal=diagonal)
    delta = f_b[None, :] - f_b[:, None]
    dims = ("bin",) if d == 1 else ("bin_x", "bin_y")
    coords: dict[str, Any] = ({"bin_center": ("bin", centers[0])} if d == 1 else
                              {"bin_center_x": ("bin_x", centers[0]),
                               "bin_center_y": ("bin_y", centers[1])})
    coords.update(basin=("basin", names), basin_from=("basin_from", names),
                  basin_to=("basin_to", names))
    spread = [] if spectator_spread is None else [float(v) for v in np.ravel(spectator_spread)]
    out = xr.Dataset(
        {"pmf": (dims, pmf_kt * kt, {"units": "eV", "long_name": "exact PMF along the CV",
                                     "description": "-kT ln P(bin), zero at the lowest bin"}),
         "probability": (dims, prob, {"units": "1", "long_name": "exact bin probability"}),
         "basin_free_energy": (("basin",), f_b * kt, {
             "units": "eV", "long_name": "-kT ln P(basin), within the bins"}),
         "delta_F": (("basin_from", "basin_to"), delta * kt, {
             "units": "eV", "long_name": "F(basin_to) - F(basin_from)"}),
         "barrier": (("basin_from", "basin_to"), barrier * kt, {
             "units": "eV", "long_name": "minimax barrier on the exact binned PMF"})},
        coords=coords,
        attrs={SCHEMA_ATTR: EXACT_FES_SCHEMA, "temperature_K": float(temperature_K),
               "kT_eV": kt,
               "method": "quadrature of the Boltzmann distribution pushed through the CV "
                         "(System.equilibrium_nodes)",
               "spectator_spread": " ".join(f"{v:g}" for v in spread) or "0",
               "spectator_draws": int(spectator_draws),
               "coverage": float(inside_total / total) if total > 0 else 0.0})
    for j, e in enumerate(edges):
        key = "bin_edges" if d == 1 else f"bin_edges_{'xy'[j]}"
        dim = "bin_edge" if d == 1 else f"bin_edge_{'xy'[j]}"
        out[key] = ((dim,), e)
    return with_index_coords(out)


def transition_values(ds: xr.Dataset, a: str, b: str) -> dict[str, float | None]:
    """``{"barrier_eV", "delta_F_eV"}`` from ``a`` to ``b`` of an
    :func:`exact_pmf` dataset (None where not finite)."""
    def get(var: str) -> float | None:
        v = float(ds[var].sel(basin_from=a, basin_to=b))
        return v if np.isfinite(v) else None

    return {"barrier_eV": get("barrier"), "delta_F_eV": get("delta_F")}


__all__ = ["EXACT_FES_SCHEMA", "exact_pmf", "fes_edges", "transition_values"]
