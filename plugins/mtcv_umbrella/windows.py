"""Umbrella window planning along a CV.

Centres are spaced evenly along xi from inside the first basin to inside the
last, so that they span both basins and the transition region; each window
starts from the training frame whose xi is nearest its centre (no pulling
run). Spring constants follow the local spread of xi: a window's harmonic
width sqrt(kT/k) equals ``width_factor`` times the spacing, so neighbours
overlap by construction; windows are added between neighbours whose measured
overlap is too small (:func:`refine_centers`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WindowPlan:
    """Centres (n_windows, d) in CV units, spring constants (n_windows, d)
    in eV / CV unit^2, and starting frame indices (n_windows,)."""

    centers: np.ndarray
    spring_constants: np.ndarray
    start_frames: np.ndarray


def span(xi: np.ndarray, labels: np.ndarray, basin_from: int, basin_to: int,
         quantile: float = 0.05) -> tuple[float, float]:
    """The xi interval to cover: from well inside ``basin_from`` (its
    ``quantile``-th xi quantile, on the side away from ``basin_to``) to well
    inside ``basin_to``. xi: (n,), labels: (n,) basin indices."""
    a = xi[labels == basin_from]
    b = xi[labels == basin_to]
    if a.size == 0 or b.size == 0:
        raise ValueError(f"no labelled frames for basin {basin_from if a.size == 0 else basin_to}"
                         " to place umbrella windows")
    if np.median(a) <= np.median(b):
        return float(np.quantile(a, quantile)), float(np.quantile(b, 1 - quantile))
    return float(np.quantile(a, 1 - quantile)), float(np.quantile(b, quantile))


def spring_constant(spacing: float, kT: float, width_factor: float = 1.0) -> float:
    """k (eV / unit^2) such that the window's thermal width sqrt(kT/k) is
    ``width_factor * spacing``."""
    return kT / (width_factor * spacing) ** 2


def nearest_frames(xi: np.ndarray, centers: np.ndarray, rng: np.random.Generator,
                   k: int = 5) -> np.ndarray:
    """For each centre, one of the ``k`` frames whose xi is nearest it (drawn
    at random): xi (n,), centers (m,) -> indices (m,)."""
    order = np.argsort(np.abs(xi[None, :] - centers[:, None]), axis=1)[:, :k]
    return order[np.arange(len(centers)), rng.integers(0, order.shape[1], len(centers))]


def plan_windows(xi: np.ndarray, labels: np.ndarray, basin_from: int, basin_to: int, *,
                 n_windows: int, kT: float, rng: np.random.Generator,
                 width_factor: float = 1.0, margin: float = 0.05) -> WindowPlan:
    """Evenly spaced 1D windows spanning both basins (see module docstring)."""
    lo, hi = span(xi, labels, basin_from, basin_to, quantile=margin)
    centers = np.linspace(lo, hi, n_windows)
    spacing = abs(hi - lo) / (n_windows - 1)
    k = spring_constant(spacing, kT, width_factor)
    return WindowPlan(centers[:, None], np.full((n_windows, 1), k),
                      nearest_frames(xi, centers, rng))


def refine_centers(centers: np.ndarray, neighbour_overlap: np.ndarray, threshold: float
                   ) -> np.ndarray:
    """Centres with a new window midway between each sorted neighbour pair whose
    overlap is below ``threshold``. centers (m,), neighbour_overlap (m-1,)."""
    order = np.argsort(centers)
    c = centers[order]
    extra = [(c[i] + c[i + 1]) / 2 for i in range(len(c) - 1) if neighbour_overlap[i] < threshold]
    return np.sort(np.concatenate([c, extra]))


def neighbour_overlap(samples: list[np.ndarray], centers: np.ndarray, k: np.ndarray,
                      kT: float) -> np.ndarray:
    """Overlap of each sorted neighbour pair of 1D windows: the MBAR overlap
    matrix element O[i, i+1] from the samples of just those two windows.

    samples: list of (n_i,) xi series per window; centers, k: (m,)."""
    from pymbar import MBAR

    order = np.argsort(centers)
    out = np.zeros(len(centers) - 1)
    for j in range(len(order) - 1):
        a, b = order[j], order[j + 1]
        s = np.concatenate([samples[a], samples[b]])
        u = np.array([0.5 * k[w] * (s - centers[w]) ** 2 / kT for w in (a, b)])
        mbar = MBAR(u, np.array([len(samples[a]), len(samples[b])]))
        out[j] = mbar.compute_overlap()["matrix"][0, 1]
    return out


def plan_grid(points: np.ndarray, *, spacing: np.ndarray | float, kT: float,
              rng: np.random.Generator, width_factor: float = 1.0,
              min_points: int = 3) -> WindowPlan:
    """2D windows on a regular grid over the region the data cover.

    A grid node (spacing ``spacing`` per dimension, CV units) gets a window
    when at least ``min_points`` data points lie within half a spacing of it;
    each window starts from one of those points. points: (n, 2) CV values of
    the training frames (basins and transition paths) -> plan with
    start_frames indexing ``points``."""
    points = np.asarray(points, float)
    spacing = np.broadcast_to(np.asarray(spacing, float), (points.shape[1],))
    lo = points.min(axis=0)
    cell = np.floor((points - lo) / spacing).astype(int)
    keys, inverse, counts = np.unique(cell, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    centers, starts = [], []
    for j in np.flatnonzero(counts >= min_points):
        members = np.flatnonzero(inverse == j)
        centers.append(lo + (keys[j] + 0.5) * spacing)
        starts.append(int(rng.choice(members)))
    centers_arr = np.array(centers)
    k = kT / (width_factor * spacing) ** 2
    return WindowPlan(centers_arr, np.broadcast_to(k, centers_arr.shape).copy(),
                      np.array(starts, dtype=int))
