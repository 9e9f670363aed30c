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


def consistent_windows(samples: list[np.ndarray], walkers: int, tolerance: float = 4.0
                       ) -> np.ndarray:
    """(n_windows,) bool: windows whose walkers agree (:func:`walker_spread`
    at most ``tolerance``)."""
    return np.array([walker_spread(s, walkers) <= tolerance for s in samples], dtype=bool)
