"""Spectator coordinates: training a CV to ignore them, and measuring whether
it does.

A system may declare *spectator* coordinates
(:attr:`mtcv_core.interfaces.System.spectator_names`): coordinates that change
neither the potential energy nor the basin of a configuration -- on the 5D
models ``x5`` (which enters the energy only as ``1e-7 x5^2``) and the two
embedding angles. A CV that reads them has no stationary free-energy profile:
in a long run they keep diffusing and the "barrier along xi" drifts with them.

* :class:`SpectatorAugmenter` redraws the spectators of training frames
  (labels and energies unchanged by the system's contract), so that the
  network sees them decorrelated from everything it must predict, over a range
  ``scale`` times wider than the training data's.
* :func:`redraw_periodic` proposes the umbrella sampler's spectator Monte
  Carlo moves (``spectator_moves``): periodic spectators redrawn uniformly.
* :func:`spectator_sensitivity` moves only the spectators at the system's
  landmarks (basin minima, saddles) over ``k`` times their training range and
  reports the spread of xi and how often a basin minimum changes class.

Units: the spectators' own (``System.spectator_units``); xi in CV units.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def declares_spectators(system: Any) -> bool:
    """Whether ``system`` declares spectator coordinates (and so implements
    ``spectators`` / ``with_spectators``)."""
    return bool(getattr(system, "spectator_names", ()))


def _periods(system: Any) -> np.ndarray:
    n = len(system.spectator_names)
    periods = np.zeros(n)
    given = tuple(getattr(system, "spectator_periods", ()) or ())
    if given:
        if len(given) != n:
            raise ValueError(f"system {system.name!r}: {len(given)} spectator_periods for "
                             f"{n} spectator_names")
        periods[:] = np.asarray(given, float)
    return periods


def periodic_spectators(system: Any) -> np.ndarray:
    """Indices of the system's periodic spectators (empty when it declares
    none)."""
    if not declares_spectators(system):
        return np.zeros(0, dtype=int)
    return np.flatnonzero(_periods(system) > 0)


def redraw_periodic(system: Any, positions: np.ndarray, rng: np.random.Generator
                    ) -> np.ndarray:
    """``positions`` (n, n_atoms, 3) with every periodic spectator drawn anew,
    uniformly over its period (the other spectators kept): the proposal of an
    exact Monte Carlo move, as the potential energy and the basin do not
    depend on spectators and a periodic one is uniform in equilibrium (see
    :attr:`mtcv_core.interfaces.System.spectator_periods`). Draws ``n *
    n_periodic`` uniforms from ``rng``, walker-major."""
    cols = periodic_spectators(system)
    if not len(cols):
        raise ValueError(f"system {getattr(system, 'name', system)!r} declares no periodic "
                         "spectator coordinates to redraw")
    positions = np.asarray(positions, float)
    values = np.array(system.spectators(positions), float)
    periods = _periods(system)[cols]
    values[:, cols] = rng.uniform(0.0, 1.0, (len(positions), len(cols))) * periods
    return np.asarray(system.with_spectators(positions, values), float)


def training_ranges(system: Any, positions: np.ndarray) -> dict[str, dict[str, float]]:
    """Per spectator: ``median`` and ``range`` (max |s - median|) of the values
    in ``positions`` (n, n_atoms, 3), and ``std``; periodic spectators get
    their period as range."""
    values = np.asarray(system.spectators(positions), float)
    periods = _periods(system)
    out = {}
    for j, name in enumerate(system.spectator_names):
        s = values[:, j]
        med = float(np.median(s)) if periods[j] == 0 else 0.0
        rng = float(np.max(np.abs(s - med))) if periods[j] == 0 else float(periods[j])
        out[name] = {"median": med, "range": rng, "std": float(np.std(s)),
                     "period": float(periods[j])}
    return out


class SpectatorAugmenter:
    """Redraw the spectator coordinates of training frames.

    Non-periodic spectators are drawn uniformly over ``median +- scale *
    range`` of the training data (``range`` = largest deviation from the
    median); periodic ones are taken from the training frames themselves at
    random (their empirical distribution: a train/test split that separates
    the splits by these angles stays separated).

    Parameters
    ----------
    system : System
        Declares ``spectator_names`` and implements ``spectators`` and
        ``with_spectators``.
    positions : (n, n_atoms, 3) array
        Training frames, angstrom (sets the ranges).
    scale : float
        Width of the non-periodic draws in units of the training range (> 0).
    """

    def __init__(self, system: Any, positions: np.ndarray, scale: float) -> None:
        if scale <= 0:
            raise ValueError(f"spectator augmentation: scale must be > 0, got {scale}")
        self.system = system
        self.scale = float(scale)
        self.periods = _periods(system)
        self.values = np.asarray(system.spectators(positions), float)
        self.ranges = training_ranges(system, positions)

    def __call__(self, positions: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """(n, n_atoms, 3) -> (n, n_atoms, 3): the frames with new spectators."""
        n = len(positions)
        new = np.empty((n, len(self.periods)))
        for j, name in enumerate(self.system.spectator_names):
            if self.periods[j] > 0:
                new[:, j] = self.values[rng.integers(0, len(self.values), n), j]
            else:
                r = self.ranges[name]
                half = self.scale * max(r["range"], 1e-12)
                new[:, j] = r["median"] + rng.uniform(-half, half, n)
        return np.asarray(self.system.with_spectators(positions, new), float)

    def describe(self) -> dict[str, Any]:
        """JSON-able description for training.nc / summary.json."""
        return {"scale": self.scale, "training_ranges": self.ranges,
                "periodic": "drawn from the training frames' own values",
                "non_periodic": "uniform over median +- scale * range"}


def spectator_sensitivity(system: Any, cv: Callable[[np.ndarray], np.ndarray],
                          basin_of: Callable[[np.ndarray], np.ndarray],
                          train_positions: np.ndarray, *, k: float = 5.0, draws: int = 256,
                          seed: int = 0) -> dict[str, Any]:
    """How much a CV moves when only the spectators do.

    At each landmark of ``system`` (basin minima, saddles), the spectators are
    drawn ``draws`` times -- non-periodic ones uniformly over ``median +- k *
    range`` of the training frames, periodic ones uniformly over their
    period -- first one at a time, then all together. For each landmark:
    ``spread`` (max - min of xi, per latent dimension, over the joint draws),
    ``spread_<name>`` (only that spectator moved), ``xi`` at the landmark
    itself, and, at basin minima, ``misclassified_fraction``: the share of
    joint draws that ``basin_of`` assigns to another basin. ``separation``
    is the distance in xi between the first two basin minima, the scale a
    spread should be compared with.

    Parameters
    ----------
    cv : callable
        positions (n, n_atoms, 3) -> xi (n, d).
    basin_of : callable
        xi (n, d) -> basin label (n,).
    train_positions : (n, n_atoms, 3) array
        The CV's training frames (their spectator ranges).
    k : float
        Range multiplier.
    """
    rng = np.random.default_rng(seed)
    ranges = training_ranges(system, train_positions)
    names = list(system.spectator_names)
    periods = _periods(system)
    marks = system.landmarks()
    out: dict[str, Any] = {"k": float(k), "draws": int(draws), "training_ranges": ranges,
                           "landmarks": {}}
    xi_at: dict[str, np.ndarray] = {}
    wrong_total, basin_draws = 0, 0
    for mark, (pos, label) in marks.items():
        base = np.asarray(system.spectators(pos[None]), float)[0]

        def draw(cols: list[int], base: np.ndarray = base) -> np.ndarray:
            vals = np.repeat(base[None], draws, axis=0)
            for j in cols:
                if periods[j] > 0:
                    vals[:, j] = rng.uniform(0.0, periods[j], draws)
                else:
                    r = ranges[names[j]]
                    vals[:, j] = r["median"] + rng.uniform(-k * r["range"], k * r["range"],
                                                           draws)
            return vals

        xi0 = np.asarray(cv(pos[None]), float).reshape(1, -1)[0]
        xi_at[mark] = xi0
        row: dict[str, Any] = {"xi": xi0.tolist(), "basin": int(label)}
        for j, name in enumerate(names):
            xs = np.asarray(cv(system.with_spectators(np.repeat(pos[None], draws, 0),
                                                      draw([j]))), float).reshape(draws, -1)
            row[f"spread_{name}"] = float(np.max(np.ptp(xs, axis=0)))
        xs = np.asarray(cv(system.with_spectators(np.repeat(pos[None], draws, 0),
                                                  draw(list(range(len(names)))))),
                        float).reshape(draws, -1)
        row["spread"] = float(np.max(np.ptp(xs, axis=0)))
        if label >= 0:
            wrong = int(np.sum(np.asarray(basin_of(xs)).reshape(-1) != label))
            row["misclassified_fraction"] = wrong / draws
            wrong_total += wrong
            basin_draws += draws
        out["landmarks"][mark] = row
    basin_marks = [m for m, (_, lab) in marks.items() if lab >= 0]
    if len(basin_marks) >= 2:
        out["separation"] = float(np.linalg.norm(xi_at[basin_marks[0]] - xi_at[basin_marks[1]]))
    out["max_spread"] = max((r["spread"] for r in out["landmarks"].values()), default=None)
    out["misclassified_fraction"] = wrong_total / basin_draws if basin_draws else None
    return out


__all__ = ["declares_spectators", "periodic_spectators", "redraw_periodic", "training_ranges",
           "SpectatorAugmenter", "spectator_sensitivity"]
