"""Do the independent walkers of an umbrella window agree?

A window on an unstable barrier top (its spring softer than the negative
curvature of the free energy there), or one whose walkers are trapped on
either side of a barrier orthogonal to the CV, does not sample its biased
ensemble within the run: its walkers end up in different places. The
window planner refines such windows and the estimator leaves them out.
"""

from __future__ import annotations

import numpy as np


def walker_spread(series: np.ndarray, walkers: int) -> float:
    """How far the independent walkers of one window disagree: the range of
    their mean CV values in units of the typical within-walker standard
    deviation (largest over CV dimensions). A window whose walkers settled in
    different free-energy minima (it sits on an unstable barrier top, or a
    barrier orthogonal to the CV traps them) has a spread far above the few
    units that statistical noise gives. With one walker its series is cut
    into four blocks instead. series: (n,) or (n, d), walker-major."""
    series = np.asarray(series, float).reshape(len(series), -1)
    parts = np.array_split(series, walkers if walkers > 1 else 4)
    parts = [p for p in parts if len(p) >= 2]
    if len(parts) < 2:
        return 0.0
    means = np.array([p.mean(axis=0) for p in parts])
    sd = np.median(np.array([p.std(axis=0) for p in parts]), axis=0)
    spread = np.ptp(means, axis=0) / np.maximum(sd, 1e-12)
    return float(np.max(spread))


def statistical_inefficiency(series: np.ndarray, walkers: int) -> float:
    """Statistical inefficiency g >= 1 of a window's series (``n / g``
    samples are independent): :func:`pymbar.timeseries.statistical_inefficiency`
    of one walker, ``statistical_inefficiency_multiple`` over several (the
    series is ``walkers`` equal parts, walker-major), the largest over the CV
    dimensions. series: (n,) or (n, d)."""
    from mtcv_core.quiet import quiet_loggers

    with quiet_loggers("pymbar"):  # its import banner and per-call caveat
        return _statistical_inefficiency(series, walkers)


def _statistical_inefficiency(series: np.ndarray, walkers: int) -> float:
    from pymbar import timeseries
    from pymbar.utils import ParameterError

    series = np.asarray(series, float).reshape(len(series), -1)
    n = len(series)
    parts = np.array_split(np.arange(n), max(1, min(walkers, n)))
    g = 1.0
    for d in range(series.shape[1]):
        segs = [series[p, d] for p in parts if len(p) >= 3]
        if not segs or all(np.ptp(s) == 0 for s in segs):
            continue
        try:
            if len(segs) == 1:
                g_d = timeseries.statistical_inefficiency(segs[0])
            else:
                g_d = timeseries.statistical_inefficiency_multiple(segs)
        except ParameterError:
            g_d = 1.0
        g = max(g, float(g_d))
    return g


def consistent_windows(samples: list[np.ndarray], walkers: int, tolerance: float = 4.0
                       ) -> np.ndarray:
    """(n_windows,) bool: windows whose walkers agree (:func:`walker_spread`
    at most ``tolerance``)."""
    return np.array([walker_spread(s, walkers) <= tolerance for s in samples], dtype=bool)


#: a stiffer window closer than this many of its thermal widths sqrt(kT/k)
#: to a softer one's centre stands in for it (the refiner does not place
#: windows closer than that, :func:`superseded_windows`)
SUPERSEDE_WIDTHS = 0.25


def superseded_windows(centers: np.ndarray, springs: np.ndarray, kT: float, *,
                       periods: np.ndarray | None = None,
                       widths: float = SUPERSEDE_WIDTHS) -> np.ndarray:
    """(n_windows,) bool: windows that have a stiffer window (every spring
    at least as stiff, one stiffer) whose centre lies within ``widths``
    thermal widths ``sqrt(kT / k_stiff)`` of theirs in every CV dimension.
    The planner puts a stiffer window where a soft one was unstable (a soft
    window on a barrier top is bimodal and its two modes keep the populations
    of its starts); the estimator then leaves the soft one out.

    centers, springs: (n_windows, d) CV units, eV / unit^2; kT in eV;
    periods: (d,) periods of periodic dimensions (0: not periodic)."""
    c = np.asarray(centers, float).reshape(len(centers), -1)
    k = np.asarray(springs, float).reshape(len(springs), -1)
    diff = np.abs(c[:, None, :] - c[None, :, :])  # [i, j, d]
    if periods is not None:
        p = np.asarray(periods, float)
        wrap = p > 0
        diff[..., wrap] = np.minimum(diff[..., wrap], p[wrap] - diff[..., wrap])
    near = np.all(diff <= widths * np.sqrt(kT / k[None, :, :]) + 1e-12, axis=2)
    stiffer = np.all(k[None, :, :] >= k[:, None, :], axis=2) & np.any(
        k[None, :, :] > k[:, None, :], axis=2)
    return np.any(near & stiffer, axis=1)
