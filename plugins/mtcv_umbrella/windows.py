"""Umbrella window planning along a CV.

Centres are spaced evenly along xi from inside the first basin to inside the
last, so that they span both basins and the transition region; the walkers
of a window start from training frames whose CV lies nearest its centre
(:func:`walker_starts`, no pulling run). Spring constants follow the
spacing: a window's harmonic width sqrt(kT/k) equals ``width_factor`` times
the spacing, so neighbours overlap by construction. After a pass,
:func:`refine_line_centers` adds stiffer windows where the CV went unvisited
or a window's walkers disagree, and windows between neighbours whose
measured overlap is too small.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mtcv_core.ergodicity import (
    consistent_windows,
    statistical_inefficiency,
)


@dataclass(frozen=True)
class WindowPlan:
    """Centres (n_windows, d) in CV units and spring constants (n_windows, d)
    in eV / CV unit^2."""

    centers: np.ndarray
    spring_constants: np.ndarray


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


def walker_starts(values: np.ndarray, centers: np.ndarray, walkers: int, seed: int,
                  pool: int = 4, first_id: int = 0) -> np.ndarray:
    """(n_windows, walkers) frame indices: for window ``w``, ``walkers`` of
    the ``pool * walkers`` frames whose CV values (n, d) are nearest its
    centre (Euclidean in CV units), drawn without replacement with the
    window's own random stream (``seed``, window id ``first_id + w``), so
    that a window's starts do not depend on the other windows and its walkers
    begin spread over the configurations the data hold there."""
    from scipy.spatial import cKDTree

    from mtcv_core.execution import task_rng

    values = np.asarray(values, float).reshape(len(values), -1)
    n_near = min(len(values), pool * walkers)
    _, near = cKDTree(values).query(np.asarray(centers, float), k=n_near)
    near = np.asarray(near).reshape(len(centers), n_near)
    out = np.empty((len(centers), walkers), dtype=int)
    for w in range(len(centers)):
        rng = task_rng(seed, "umbrella-starts", first_id + w)
        out[w] = near[w, rng.choice(n_near, size=walkers, replace=n_near < walkers)]
    return out


def plan_windows(xi: np.ndarray, labels: np.ndarray, basin_from: int, basin_to: int, *,
                 n_windows: int, kT: float, width_factor: float = 1.0,
                 margin: float = 0.05) -> WindowPlan:
    """Evenly spaced 1D windows spanning both basins (see module docstring).
    xi: (n,) CV values of the labelled frames, labels: (n,) basin indices."""
    lo, hi = span(xi, labels, basin_from, basin_to, quantile=margin)
    centers = np.linspace(lo, hi, n_windows)
    spacing = abs(hi - lo) / (n_windows - 1)
    k = spring_constant(spacing, kT, width_factor)
    return WindowPlan(centers[:, None], np.full((n_windows, 1), k))


def coverage_gaps(samples: list[np.ndarray], lo: float, hi: float, width: float,
                  min_fraction: float = 0.02, weights: list[float] | None = None,
                  min_effective: float = 2.0) -> list[tuple[float, float]]:
    """Stretches of [lo, hi] that the windows barely visit: runs of histogram
    bins (``width`` wide) holding fewer than ``min_fraction`` of the median
    bin count (and fewer than 10 samples) or, with ``weights`` (one per
    window: 1 / its statistical inefficiency), fewer than ``min_effective``
    independent samples. A window pushed far from its centre by a steep
    free-energy slope may reach a stretch only in the tail of a slowly
    decorrelating series: many raw samples, too few independent ones for
    MBAR's histogram to see."""
    pooled = np.concatenate(samples) if samples else np.zeros(0)
    n_bins = max(1, int(np.ceil((hi - lo) / width)))
    counts, edges = np.histogram(pooled, bins=n_bins, range=(lo, hi))
    low = (counts < max(10.0, min_fraction * np.median(counts))) if counts.size else counts
    if weights is not None and samples:
        w = np.concatenate([np.full(len(s), float(wi)) for s, wi in zip(samples, weights,
                                                                        strict=True)])
        effective, _ = np.histogram(pooled, bins=n_bins, range=(lo, hi), weights=w)
        low = low | (effective < min_effective)
    gaps, start = [], None
    for i, is_low in enumerate(low):
        if is_low and start is None:
            start = i
        if start is not None and (not is_low or i == len(low) - 1):
            stop = i + 1 if is_low else i
            gaps.append((float(edges[start]), float(edges[stop])))
            start = None
    return gaps


def refine_line_centers(centers: np.ndarray, k: np.ndarray, samples: list[np.ndarray], *,
                        walkers: int, kT: float, overlap_threshold: float, k_max: float,
                        tolerance: float = 4.0, max_width_ratio: float = 1.5,
                        max_new: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """New 1D windows where a finished pass fell short; ``(centers, k)`` of
    the windows to add, both (m,) (empty when nothing is left to do).

    A harmonic window is stable only where its spring is stiffer than the
    negative curvature of the free energy: on a barrier top a soft window
    slides off to either side, so a stretch of the CV goes unvisited (a
    *gap*) and the window's walkers disagree. Three rules, applied to the
    windows whose walkers agree (:func:`consistent_windows`):

    Windows that the estimator leaves out (superseded by a stiffer window,
    :func:`mtcv_core.ergodicity.superseded_windows`) count as covering
    nothing.

    1. every gap (:func:`coverage_gaps`: too few samples, or fewer than two
       independent ones, per half a typical window width) is filled with
       windows four times stiffer than the stiffest window around it, spaced
       two thermal widths ``2 sqrt(kT/k)`` apart;
    2. a window whose walkers disagree, or whose samples spread more than
       ``max_width_ratio`` times its thermal width sqrt(kT/k) (the free
       energy there curves down almost as fast as the spring curves up),
       gets a four times stiffer window at its centre (outside gaps);
    3. a window goes midway between neighbours (in the order of their mean
       CV) whose MBAR overlap is below ``overlap_threshold``, as stiff as the
       stiffer of the two.

    Springs never exceed ``k_max`` (the integrator's stability limit); a
    place that already has a window at ``k_max`` gets no second one (a gap
    wider than one k_max window still gets k_max windows two thermal widths
    apart across it).
    centers, k: (n,) CV units and eV / unit^2; samples: (n_i,) series,
    walker-major.
    """
    from mtcv_core.ergodicity import superseded_windows, unstable_windows

    centers = np.asarray(centers, float)
    k = np.asarray(k, float)
    ok = consistent_windows(samples, walkers, tolerance)
    # a window the estimator leaves out (a stiffer one stands in for it) covers
    # nothing: its samples must not hide a gap or a missing overlap
    ok &= ~superseded_windows(centers[:, None], k[:, None], kT,
                              unstable=unstable_windows(samples, k[:, None], walkers, kT))
    widths = [float(np.std(s)) for s, good in zip(samples, ok, strict=True) if good and s.size]
    width = 0.5 * float(np.median(widths)) if widths else float(np.sqrt(kT / k.max()))
    good_samples = [s for s, good in zip(samples, ok, strict=True) if good]
    inv_g = [1.0 / statistical_inefficiency(s, walkers) if s.size >= 3 else 1.0
             for s in good_samples]
    new_c: list[float] = []
    new_k: list[float] = []

    def add(c: float, kk: float) -> None:
        kk = min(kk, k_max)
        sigma = np.sqrt(kT / kk)
        if np.any((np.abs(centers - c) < 0.25 * sigma) & (k >= 0.999 * kk)):
            return  # as stiff a window is there already
        if any(abs(c - c2) < 0.25 * sigma for c2 in new_c):
            return
        new_c.append(float(c))
        new_k.append(float(kk))

    gaps = coverage_gaps(good_samples, float(centers.min()), float(centers.max()), width,
                         weights=inv_g)
    for g0, g1 in gaps:
        near = np.abs(centers - np.clip(centers, g0, g1)) <= 2 * width
        k_here = float(k[near].max()) if near.any() else float(k.max())
        # at the spring cap the gap still gets windows, spaced two thermal
        # widths: one k_max window inside a gap wider than it (a steep flank
        # that pushed the softer windows' samples away) leaves the rest
        # unvisited; windows already there at k_max are not added twice
        k_new = min(4.0 * k_here, k_max)
        m = int(np.clip(np.ceil((g1 - g0) / (2 * np.sqrt(kT / k_new))), 1, max_new))
        for c in g0 + (g1 - g0) * (np.arange(m) + 0.5) / m:
            add(c, k_new)
    # a window much wider than its spring allows sits where the free energy
    # curves down nearly as fast as the spring curves up: close to unstable
    sd = np.array([float(np.std(s)) if s.size else 0.0 for s in samples])
    wide = sd > max_width_ratio * np.sqrt(kT / k)
    for i in np.flatnonzero(~ok | wide):
        if any(g0 <= centers[i] <= g1 for g0, g1 in gaps):
            continue
        same = np.abs(centers - centers[i]) < 1e-9 * max(1.0, abs(centers[i]))
        if k[i] < k[same].max():
            continue  # a stiffer window at this centre is there already
        if k[i] >= k[same].max():
            add(centers[i], 4.0 * k[i])
    idx = np.flatnonzero(ok)
    if len(idx) >= 2:
        idx = idx[np.argsort([np.mean(samples[i]) for i in idx])]
        ov = neighbour_overlap([samples[i] for i in idx], np.arange(len(idx), dtype=float),
                               k[idx], kT, centers=centers[idx])
        for j in np.flatnonzero(ov < overlap_threshold):
            a, b = idx[j], idx[j + 1]
            add(0.5 * (centers[a] + centers[b]), max(k[a], k[b]))
    order = np.argsort(new_c)
    return np.asarray(new_c, float)[order], np.asarray(new_k, float)[order]


def neighbour_overlap(samples: list[np.ndarray], order_by: np.ndarray, k: np.ndarray,
                      kT: float, centers: np.ndarray | None = None) -> np.ndarray:
    """Overlap of each neighbour pair of 1D windows (neighbours in the order
    of ``order_by``): the MBAR overlap matrix element O[i, i+1] from the
    samples of just those two windows.

    samples: list of (n_i,) xi series per window; order_by, k: (m,);
    centers: (m,) window centres (default: ``order_by``)."""
    from pymbar import MBAR

    from mtcv_core.quiet import quiet_loggers

    centers = np.asarray(order_by if centers is None else centers, float)
    order = np.argsort(order_by, kind="stable")
    out = np.zeros(max(0, len(order) - 1))
    for j in range(len(order) - 1):
        a, b = order[j], order[j + 1]
        s = np.concatenate([samples[a], samples[b]])
        u = np.array([0.5 * k[w] * (s - centers[w]) ** 2 / kT for w in (a, b)])
        with quiet_loggers("pymbar"):
            mbar = MBAR(u, np.array([len(samples[a]), len(samples[b])]))
            out[j] = mbar.compute_overlap()["matrix"][0, 1]
    return out


def plan_grid(points: np.ndarray, *, spacing: np.ndarray | float, kT: float,
              width_factor: float = 1.0, min_points: int = 3) -> WindowPlan:
    """2D windows on a regular grid over the region the data cover.

    A grid node (spacing ``spacing`` per dimension, CV units) gets a window
    when at least ``min_points`` data points lie in its cell; disconnected
    islands of such cells (a sparsely sampled transition region) are joined by
    windows along the straight line between their closest cells, so that MBAR
    connects all windows. points: (n, 2) CV values of the training frames."""
    points = np.asarray(points, float)
    spacing = np.broadcast_to(np.asarray(spacing, float), (points.shape[1],))
    lo = points.min(axis=0)
    cell = np.floor((points - lo) / spacing).astype(int)
    keys, counts = np.unique(cell, axis=0, return_counts=True)
    cells = {tuple(k) for k in keys[counts >= min_points]}
    cells = _connect(cells)
    cells_arr = np.array(sorted(cells))
    centers = lo + (cells_arr + 0.5) * spacing
    k = kT / (width_factor * spacing) ** 2
    return WindowPlan(centers, np.broadcast_to(k, centers.shape).copy())


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
