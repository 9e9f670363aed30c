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


def coverage_gaps(samples: list[np.ndarray], lo: float, hi: float, width: float,
                  min_fraction: float = 0.02) -> list[tuple[float, float]]:
    """Stretches of [lo, hi] that the windows barely visit: runs of histogram
    bins (``width`` wide) holding fewer than ``min_fraction`` of the median
    bin count (and fewer than 10 samples)."""
    pooled = np.concatenate(samples)
    n_bins = max(1, int(np.ceil((hi - lo) / width)))
    counts, edges = np.histogram(pooled, bins=n_bins, range=(lo, hi))
    low = (counts < max(10.0, min_fraction * np.median(counts))) if counts.size else counts
    gaps, start = [], None
    for i, is_low in enumerate(low):
        if is_low and start is None:
            start = i
        if start is not None and (not is_low or i == len(low) - 1):
            stop = i + 1 if is_low else i
            gaps.append((float(edges[start]), float(edges[stop])))
            start = None
    return gaps


def stiffer_spring(centers: np.ndarray, k: np.ndarray, samples: list[np.ndarray],
                   spacing: float, kT: float) -> float:
    """A spring constant (eV / unit^2) that holds a window within a quarter
    spacing of its centre against the steepest mean force seen in the first
    pass (umbrella integration: dF/dxi ~ k (c - <xi>)), and no wider than half
    a spacing thermally."""
    force = np.array([kw * (c - np.mean(s)) for c, kw, s in zip(centers, k, samples,
                                                                 strict=True) if s.size])
    f_max = float(np.max(np.abs(force))) if force.size else 0.0
    return float(max(np.max(k), 4 * f_max / spacing, kT / (spacing / 2) ** 2))


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
    when at least ``min_points`` data points lie in its cell; disconnected
    islands of such cells (a sparsely sampled transition region) are joined by
    windows along the straight line between their closest cells, so that MBAR
    connects all windows. Each window starts from a data point in (or nearest
    to) its cell. points: (n, 2) CV values of the training frames -> plan with
    start_frames indexing ``points``."""
    from scipy.spatial import cKDTree

    points = np.asarray(points, float)
    spacing = np.broadcast_to(np.asarray(spacing, float), (points.shape[1],))
    lo = points.min(axis=0)
    cell = np.floor((points - lo) / spacing).astype(int)
    keys, counts = np.unique(cell, axis=0, return_counts=True)
    cells = {tuple(k) for k in keys[counts >= min_points]}
    cells = _connect(cells)
    cells_arr = np.array(sorted(cells))
    centers = lo + (cells_arr + 0.5) * spacing
    tree = cKDTree(points)
    starts = []
    for c in centers:  # a random point of the cell, else the nearest point
        inside = tree.query_ball_point(c, r=float(np.max(spacing)) / 2, p=np.inf)
        starts.append(int(rng.choice(inside)) if inside else int(tree.query(c)[1]))
    k = kT / (width_factor * spacing) ** 2
    return WindowPlan(centers, np.broadcast_to(k, centers.shape).copy(),
                      np.array(starts, dtype=int))


def _components(cells: set[tuple[int, ...]]) -> list[set[tuple[int, ...]]]:
    """Connected components of grid cells (edge neighbours)."""
    left, out = set(cells), []
    while left:
        stack = [left.pop()]
        comp = set(stack)
        while stack:
            c = stack.pop()
            for d in range(len(c)):
                for step in (-1, 1):
                    n = c[:d] + (c[d] + step,) + c[d + 1:]
                    if n in left:
                        left.remove(n)
                        comp.add(n)
                        stack.append(n)
        out.append(comp)
    return out


def _connect(cells: set[tuple[int, ...]]) -> set[tuple[int, ...]]:
    """Add cells along straight lines until all cells form one component."""
    cells = set(cells)
    while True:
        comps = sorted(_components(cells), key=len, reverse=True)
        if len(comps) <= 1:
            return cells
        main = np.array(sorted(comps[0]))
        best = None
        for comp in comps[1:]:
            other = np.array(sorted(comp))
            d = np.abs(main[:, None, :] - other[None, :, :]).sum(axis=2)
            i, j = np.unravel_index(int(np.argmin(d)), d.shape)
            if best is None or d[i, j] < best[0]:
                best = (d[i, j], main[i], other[j])
        _, a, b = best
        n = int(np.abs(b - a).sum()) * 2 + 1
        for t in np.linspace(0.0, 1.0, n):
            p = np.round(a + t * (b - a)).astype(int)
            cells.add(tuple(int(v) for v in p))
        # make the line edge-connected (diagonal steps share only a corner)
        line = sorted({tuple(int(v) for v in np.round(a + t * (b - a))) for t in
                       np.linspace(0.0, 1.0, n)})
        for c in line:
            for d in range(len(c)):
                cells.add(c[:d] + (c[d] + int(np.sign(b[d] - a[d])),) + c[d + 1:])
