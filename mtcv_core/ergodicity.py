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


def walker_excess(series: np.ndarray, walkers: int) -> tuple[float, float]:
    """How much more the walkers' mean CV values of one window disagree than
    their own statistics allow: ``(ratio, p)``. Walker j's mean has the
    variance ``v_j = s_j^2 g_j / n_j`` if the walkers sample one ensemble
    (``s_j`` its standard deviation, ``g_j`` its statistical inefficiency
    around its own mean, ``n_j`` its samples); ``chi2 = sum_j (m_j - m)^2 /
    v_j`` around the precision-weighted mean ``m`` then follows chi-squared
    with ``walkers - 1`` degrees of freedom. ``ratio = sqrt(chi2 / (walkers -
    1))`` is the spread of the walker means in units of what their own
    series predict (about 1 for a window that samples its ensemble; a mode
    slower than the run, e.g. an orthogonal barrier, leaves each walker near
    its start and ``ratio`` well above 1); ``p`` the chi-squared tail
    probability. The largest ratio (smallest p) over CV dimensions; ``(nan,
    nan)`` with fewer than two walkers of at least 3 samples.
    series: (n,) or (n, d), walker-major, equal parts."""
    from scipy.stats import chi2 as chi2_dist

    from mtcv_core.quiet import quiet_loggers

    series = np.asarray(series, float).reshape(len(series), -1)
    parts = [p for p in np.array_split(series, max(1, walkers)) if len(p) >= 3]
    if walkers < 2 or len(parts) < 2:
        return float("nan"), float("nan")
    ratio, p_min = 0.0, 1.0
    with quiet_loggers("pymbar"):
        for d in range(series.shape[1]):
            means = np.array([p[:, d].mean() for p in parts])
            var = np.array([p[:, d].var(ddof=1) * _statistical_inefficiency(p[:, d], 1)
                            / len(p) for p in parts])
            if np.all(var <= 0):
                continue
            var = np.maximum(var, max(1e-300, 1e-12 * float(var.max())))
            m = np.sum(means / var) / np.sum(1.0 / var)
            chi2 = float(np.sum((means - m) ** 2 / var))
            dof = len(parts) - 1
            ratio = max(ratio, float(np.sqrt(chi2 / dof)))
            p_min = min(p_min, float(chi2_dist.sf(chi2, dof)))
    return ratio, p_min


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
                       widths: float = SUPERSEDE_WIDTHS,
                       unstable: np.ndarray | None = None) -> np.ndarray:
    """(n_windows,) bool: windows that have a stiffer window (every spring
    at least as stiff, one stiffer) whose centre lies within ``widths``
    thermal widths ``sqrt(kT / k_stiff)`` of theirs in every CV dimension.
    The planner puts a stiffer window where a soft one was unstable (a soft
    window on a barrier top is bimodal and its two modes keep the populations
    of its starts); the estimator then leaves the soft one out.

    centers, springs: (n_windows, d) CV units, eV / unit^2; kT in eV;
    periods: (d,) periods of periodic dimensions (0: not periodic);
    unstable: (n_windows,) bool, the windows that may be superseded by a
    stiffer window near (not exactly at) their centre (default all;
    :func:`unstable_windows`)."""
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
    out = np.any(near & stiffer, axis=1)
    if unstable is None:
        return out
    # at exactly its centre: the sampler put the stiffer window there because it
    # found this one unstable; merely near it: only if this one looks unstable
    same = np.all(diff <= 1e-9 * np.maximum(1.0, np.abs(c))[:, None, :], axis=2)
    return np.any(same & stiffer, axis=1) | (out & np.asarray(unstable, bool))


#: a window this many times slower than the median window is unstable
SLOW_FACTOR = 3.0


def unstable_windows(samples: list[np.ndarray], springs: np.ndarray, walkers: int, kT: float,
                     *, max_width_ratio: float = 1.5, slow_factor: float = SLOW_FACTOR
                     ) -> np.ndarray:
    """(n_windows,) bool: windows that look unstable -- their samples spread
    more than ``max_width_ratio`` thermal widths sqrt(kT/k) (the free energy
    curves down nearly as fast as the spring curves up), or their series are
    more than ``slow_factor`` times as correlated as the median window's (a
    soft window on a barrier top hops between two modes). samples: (n_i,) or
    (n_i, d) series, walker-major; springs: (n_windows, d)."""
    k = np.asarray(springs, float).reshape(len(springs), -1)
    g = np.array([statistical_inefficiency(s, walkers) if len(s) >= 3 else 1.0
                  for s in samples])
    wide = np.array([bool(len(s)) and np.any(
        np.std(np.asarray(s, float).reshape(len(s), -1), axis=0)
        > max_width_ratio * np.sqrt(kT / k[i])) for i, s in enumerate(samples)])
    return wide | (g > slow_factor * float(np.median(g)))
