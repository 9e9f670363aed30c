"""Vectorised 2D model potentials with analytic gradients, and their
numerically located critical points.

Units: energies in eV, coordinates in angstrom. The two coordinates are the
radial variables ``(x~, y~)`` of the 5D embedding (see
:mod:`mtcv_systems.embedded5d`). All functions broadcast over arrays of any
shape and compute in float64.

Nothing here is typed in from tables: minima, saddles, their connectivity and
the barriers between minima are found numerically by
:func:`find_critical_points` (and cached per potential).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from typing import Any

import numpy as np
from scipy import optimize

#: 1 kcal/mol in eV (the conversion used by the authors' NDSimulator)
KCAL_PER_MOL_IN_EV = 0.04337209302

Bounds = tuple[tuple[float, float], tuple[float, float]]


class Potential2D:
    """Base class of the 2D potentials ``V(x~, y~)``.

    Subclasses implement :meth:`energy` and :meth:`energy_and_gradient`;
    instances are immutable and hashable (so that their critical points can be
    cached), and carry :attr:`bounds`, the rectangle in which
    :meth:`critical_points` searches.
    """

    #: ((x_min, x_max), (y_min, y_max)) angstrom, the critical-point search region
    bounds: Bounds
    #: starts per axis of the critical-point search grid
    search_grid: int = 24

    def energy(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Energy, eV. x, y: broadcastable arrays, angstrom."""
        return self.energy_and_gradient(x, y)[0]

    def gradient(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Analytic gradient ``(dV/dx, dV/dy)``, eV/angstrom, broadcast shape."""
        _, gx, gy = self.energy_and_gradient(x, y)
        return gx, gy

    def energy_and_gradient(
        self, x: np.ndarray, y: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(V, dV/dx, dV/dy)`` in one pass; eV and eV/angstrom."""
        raise NotImplementedError

    def hessian(self, x: np.ndarray, y: np.ndarray, h: float = 1e-4) -> np.ndarray:
        """Hessian by central differences of the analytic gradient.

        x, y: broadcastable arrays, angstrom -> (..., 2, 2) eV/angstrom^2,
        symmetrised.
        """
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        gxp, gyp = self.gradient(x + h, y)
        gxm, gym = self.gradient(x - h, y)
        hxx, hyx = (gxp - gxm) / (2 * h), (gyp - gym) / (2 * h)
        gxp, gyp = self.gradient(x, y + h)
        gxm, gym = self.gradient(x, y - h)
        hxy, hyy = (gxp - gxm) / (2 * h), (gyp - gym) / (2 * h)
        off = 0.5 * (hxy + hyx)
        return np.stack([np.stack([hxx, off], -1), np.stack([off, hyy], -1)], -2)

    def parameters(self) -> dict[str, Any]:
        """JSON-serialisable coefficients of the potential."""
        return {}

    def critical_points(self) -> CriticalPoints:
        """The potential's critical points in :attr:`bounds` (computed once)."""
        return find_critical_points(self, self.bounds, grid=self.search_grid)


@dataclass(frozen=True, eq=True)
class MullerBrown2D(Potential2D):
    """Scaled Müller-Brown potential (the authors' NDSimulator version).

    ``V = sum_i A_i exp[a_i (x-x0_i)^2 + b_i (x-x0_i)(y-y0_i) + c_i (y-y0_i)^2]``
    with ``A = 0.2 * [-200, -100, -170, 15]`` kcal/mol (converted to eV with
    1 kcal/mol = 0.04337209302 eV), ``a, b, c`` the standard coefficients
    divided by 16^2 (1/angstrom^2), ``x0 = 16*[1, 0, -0.5, -1] + 32`` and
    ``y0 = 16*[0, 0.5, 1.5, 1] + 8`` angstrom: the standard surface stretched
    16x and shifted so that ``x~ = 16 x + 32``, ``y~ = 16 y + 8``.
    """

    A: tuple[float, ...] = tuple(0.2 * v * KCAL_PER_MOL_IN_EV for v in (-200, -100, -170, 15))
    a: tuple[float, ...] = tuple(v / 16**2 for v in (-1, -1, -6.5, 0.7))
    b: tuple[float, ...] = tuple(v / 16**2 for v in (0, 0, 11, 0.6))
    c: tuple[float, ...] = tuple(v / 16**2 for v in (-10, -10, -6.5, 0.7))
    x0: tuple[float, ...] = tuple(16 * v + 32 for v in (1, 0, -0.5, -1))
    y0: tuple[float, ...] = tuple(16 * v + 8 for v in (0, 0.5, 1.5, 1))
    bounds: Bounds = ((0.0, 60.0), (0.0, 44.0))
    search_grid: int = 24

    @cached_property
    def _arrays(self) -> tuple[np.ndarray, ...]:
        """(A, a, b, c, x0, y0) as arrays, made once: MD calls :meth:`_terms`
        every step on a few walkers, where converting the tuples cost as
        much as the arithmetic."""
        return tuple(np.array(v, float) for v in (self.A, self.a, self.b, self.c,
                                                  self.x0, self.y0))

    def _terms(self, x: np.ndarray, y: np.ndarray):
        x = np.asarray(x, float)[..., None]
        y = np.asarray(y, float)[..., None]
        big_a, a, b, c, x0, y0 = self._arrays
        dx, dy = x - x0, y - y0
        t = big_a * np.exp(a * dx * dx + b * dx * dy + c * dy * dy)
        return t, a, b, c, dx, dy

    def energy(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return self._terms(x, y)[0].sum(-1)

    def energy_and_gradient(self, x, y):
        t, a, b, c, dx, dy = self._terms(x, y)
        gx = (t * (2 * a * dx + b * dy)).sum(-1)
        gy = (t * (b * dx + 2 * c * dy)).sum(-1)
        return t.sum(-1), gx, gy

    def parameters(self) -> dict[str, Any]:
        return {"A_eV": list(self.A), "a_per_A2": list(self.a), "b_per_A2": list(self.b),
                "c_per_A2": list(self.c), "x0_A": list(self.x0), "y0_A": list(self.y0),
                "kcal_per_mol_in_eV": KCAL_PER_MOL_IN_EV}


def three_well_standard(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Three-well potential of Metzner, Schütte & Vanden-Eijnden (2006) in its
    standard (dimensionless) form, with its analytic gradient.

    ``V = 3 e^{-x^2-(y-1/3)^2} - 3 e^{-x^2-(y-5/3)^2} - 5 e^{-(x-1)^2-y^2}
    - 5 e^{-(x+1)^2-y^2} + 0.2 x^4 + 0.2 (y-1/3)^4``.

    Returns ``(V, dV/dx, dV/dy)`` in the broadcast shape of ``x, y``.
    """
    x = np.asarray(x, float)
    y = np.asarray(y, float)
    x2 = x * x
    e1 = 3 * np.exp(-x2 - (y - 1 / 3) ** 2)
    e2 = -3 * np.exp(-x2 - (y - 5 / 3) ** 2)
    e3 = -5 * np.exp(-((x - 1) ** 2) - y * y)
    e4 = -5 * np.exp(-((x + 1) ** 2) - y * y)
    ys = y - 1 / 3
    v = e1 + e2 + e3 + e4 + 0.2 * x2 * x2 + 0.2 * ys**4
    gx = -2 * x * (e1 + e2) - 2 * (x - 1) * e3 - 2 * (x + 1) * e4 + 0.8 * x2 * x
    gy = (-2 * ys * e1 - 2 * (y - 5 / 3) * e2 - 2 * y * (e3 + e4) + 0.8 * ys**3)
    return v, gx, gy


@dataclass(frozen=True, eq=True)
class ThreeWell2D(Potential2D):
    """Three-well potential in the authors' scaling.

    ``V(x~, y~) = V_std(x, y) * energy_scale + energy_shift`` with
    ``x = (x~ - center)/length_scale``, ``y = (y~ - center)/length_scale``;
    defaults ``energy_scale = 0.5`` eV, ``energy_shift = 2`` eV, ``center =
    7.5`` angstrom, ``length_scale = 4`` angstrom. ``V_std`` is
    :func:`three_well_standard`.
    """

    energy_scale: float = 0.5
    energy_shift: float = 2.0
    center: float = 7.5
    length_scale: float = 4.0
    bounds: Bounds = ((0.0, 17.5), (0.0, 17.5))
    search_grid: int = 24

    def to_standard(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(x~, y~) angstrom -> standard dimensionless (x, y)."""
        return ((np.asarray(x, float) - self.center) / self.length_scale,
                (np.asarray(y, float) - self.center) / self.length_scale)

    def to_standard_energy(self, e: np.ndarray) -> np.ndarray:
        """eV -> V_std units."""
        return (np.asarray(e, float) - self.energy_shift) / self.energy_scale

    def energy(self, x, y):
        return self.energy_and_gradient(x, y)[0]

    def energy_and_gradient(self, x, y):
        v, gx, gy = three_well_standard(*self.to_standard(x, y))
        k = self.energy_scale / self.length_scale
        return v * self.energy_scale + self.energy_shift, gx * k, gy * k

    def parameters(self) -> dict[str, Any]:
        return {"form": "V_std(x, y)*energy_scale + energy_shift, "
                        "x = (x~-center)/length_scale, y = (y~-center)/length_scale",
                "energy_scale_eV": self.energy_scale, "energy_shift_eV": self.energy_shift,
                "center_A": self.center, "length_scale_A": self.length_scale}


# --------------------------------------------------------------------------
# critical points


@dataclass(frozen=True)
class CriticalPoint:
    """A critical point: position (angstrom), energy (eV), Morse index (number
    of negative Hessian eigenvalues: 0 minimum, 1 saddle, 2 maximum) and the
    Hessian eigenvalues (eV/angstrom^2, ascending)."""

    x: float
    y: float
    energy: float
    index: int
    eigenvalues: tuple[float, float]

    def as_dict(self) -> dict[str, Any]:
        return {"x": self.x, "y": self.y, "energy_eV": self.energy, "index": self.index,
                "eigenvalues": list(self.eigenvalues)}


@dataclass(frozen=True)
class CriticalPoints:
    """Minima, index-1 saddles and maxima of a 2D potential and the graph
    connecting them.

    ``minima`` are sorted by energy (lowest first); ``saddles`` by energy.
    ``connections[k] = (i, j)`` are the minima that saddle ``k`` connects
    (steepest descent from either side of its unstable direction; ``-1``
    where a side leaves the search region without reaching a minimum).
    """

    minima: tuple[CriticalPoint, ...]
    saddles: tuple[CriticalPoint, ...]
    maxima: tuple[CriticalPoint, ...]
    connections: tuple[tuple[int, int], ...]
    _adj: dict[int, list[tuple[int, int]]] = field(default_factory=dict, repr=False,
                                                   compare=False)

    def __post_init__(self) -> None:
        for k, (i, j) in enumerate(self.connections):
            if i >= 0 and j >= 0 and i != j:
                self._adj.setdefault(i, []).append((j, k))
                self._adj.setdefault(j, []).append((i, k))

    @property
    def minima_xy(self) -> np.ndarray:
        """(n_minima, 2) angstrom."""
        return np.array([[m.x, m.y] for m in self.minima]).reshape(-1, 2)

    def adjacent_saddles(self, i: int) -> list[int]:
        """Indices of the saddles connecting minimum ``i`` to another minimum."""
        return [k for _, k in self._adj.get(i, [])]

    def lowest_adjacent_saddle_energy(self, i: int) -> float:
        """Energy (eV) of the lowest saddle connecting minimum ``i`` to another
        minimum; ``inf`` if there is none."""
        ks = self.adjacent_saddles(i)
        return min((self.saddles[k].energy for k in ks), default=math.inf)

    def path_saddle_energy(self, i: int, j: int) -> float:
        """Lowest, over paths of the saddle graph from minimum ``i`` to ``j``,
        of the highest saddle energy on the path (eV; minimax path, found with
        a Dijkstra-like search). ``inf`` if ``j`` cannot be reached."""
        if i == j:
            return self.minima[i].energy
        best = {i: -math.inf}
        heap = [(-math.inf, i)]
        while heap:
            level, u = heapq.heappop(heap)
            if u == j:
                return level
            if level > best.get(u, math.inf):
                continue
            for v, k in self._adj.get(u, []):
                new = max(level, self.saddles[k].energy)
                if new < best.get(v, math.inf):
                    best[v] = new
                    heapq.heappush(heap, (new, v))
        return math.inf

    def barrier(self, i: int, j: int) -> float:
        """Barrier (eV) from minimum ``i`` to minimum ``j``: the minimax saddle
        energy over all paths (:meth:`path_saddle_energy`) minus ``E_i``."""
        return self.path_saddle_energy(i, j) - self.minima[i].energy

    def direct_barrier(self, i: int, j: int) -> float:
        """Barrier (eV) over the lowest saddle that connects ``i`` and ``j``
        directly, minus ``E_i``; ``inf`` if no saddle connects them."""
        es = [self.saddles[k].energy for v, k in self._adj.get(i, []) if v == j]
        return min(es, default=math.inf) - self.minima[i].energy

    def nearest_minimum(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Index of the nearest minimum in the plane, broadcast shape of x, y."""
        m = self.minima_xy
        d2 = ((np.asarray(x, float)[..., None] - m[:, 0]) ** 2
              + (np.asarray(y, float)[..., None] - m[:, 1]) ** 2)
        return np.argmin(d2, axis=-1)

    def as_dict(self) -> dict[str, Any]:
        return {"minima": [m.as_dict() for m in self.minima],
                "saddles": [s.as_dict() for s in self.saddles],
                "maxima": [m.as_dict() for m in self.maxima],
                "connections": [list(c) for c in self.connections]}


def steepest_descent(
    potential: Potential2D,
    x: np.ndarray,
    y: np.ndarray,
    *,
    step: float | None = None,
    max_steps: int = 20000,
    gtol: float = 1e-7,
) -> tuple[np.ndarray, np.ndarray]:
    """Follow the steepest-descent path of ``potential`` from many points.

    Vectorised gradient descent with a per-point step that halves whenever
    the energy would rise and grows back (up to ``step``) otherwise, so the
    energy decreases monotonically and the path tracks the gradient flow.

    Parameters
    ----------
    x, y : array_like
        Start points, angstrom (broadcast together, flattened).
    step : float, optional
        Largest step, angstrom^2/eV; default ``0.5 / max |curvature|`` over
        the potential's minima and saddles.
    max_steps : int
        Iteration limit.
    gtol : float
        Stop once every point has ``|grad V| < gtol`` eV/angstrom.

    Returns
    -------
    (x, y) : arrays of the broadcast shape, the end points, angstrom.
    """
    x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
    shape = x.shape
    px, py = x.ravel().copy(), y.ravel().copy()
    if step is None:
        cp = potential.critical_points()
        step = 0.5 / max(abs(e) for c in cp.minima + cp.saddles for e in c.eigenvalues)
    h0 = step
    h = np.full(px.shape, h0)
    e, gx, gy = potential.energy_and_gradient(px, py)
    for _ in range(max_steps):
        if np.all(gx * gx + gy * gy < gtol * gtol):
            break
        tx, ty = px - h * gx, py - h * gy
        te, tgx, tgy = potential.energy_and_gradient(tx, ty)
        ok = te <= e
        px = np.where(ok, tx, px)
        py = np.where(ok, ty, py)
        e = np.where(ok, te, e)
        gx = np.where(ok, tgx, gx)
        gy = np.where(ok, tgy, gy)
        h = np.where(ok, np.minimum(h * 1.2, h0), h * 0.5)
    return px.reshape(shape), py.reshape(shape)


def _dedupe(points: Sequence[np.ndarray], tol: float) -> list[np.ndarray]:
    out: list[np.ndarray] = []
    for p in points:
        if all(np.hypot(*(p - q)) > tol for q in out):
            out.append(p)
    return out


@lru_cache(maxsize=32)
def find_critical_points(
    potential: Potential2D,
    bounds: Bounds,
    grid: int = 24,
    gtol: float = 1e-9,
) -> CriticalPoints:
    """Locate and classify the critical points of ``potential`` in ``bounds``.

    * minima: :func:`scipy.optimize.minimize` (L-BFGS-B, analytic gradient)
      from a ``grid x grid`` lattice of starts;
    * all critical points: :func:`scipy.optimize.root` on the analytic
      gradient (Jacobian: finite-difference Hessian) from the same starts;
    * each candidate is polished by Newton steps, kept if ``|grad V| <
      gtol`` eV/angstrom and inside ``bounds``, deduplicated (1e-4 of the
      region size) and classified by the signs of its Hessian eigenvalues;
    * connectivity: from each index-1 saddle, a step of 1e-3 of the region
      size along +- the negative-curvature eigenvector, then
      :func:`steepest_descent`, ends at a minimum (matched within 1e-3 of
      the region size) or leaves the region (-1).

    Results are cached per (potential, bounds, grid, gtol).
    """
    with np.errstate(over="ignore", invalid="ignore"):
        return _find_critical_points(potential, bounds, grid, gtol)


def _find_critical_points(potential: Potential2D, bounds: Bounds, grid: int,
                          gtol: float) -> CriticalPoints:
    (xlo, xhi), (ylo, yhi) = bounds
    size = max(xhi - xlo, yhi - ylo)

    def grad(p: np.ndarray) -> np.ndarray:
        gx, gy = potential.gradient(p[0], p[1])
        return np.array([float(gx), float(gy)])

    def hess(p: np.ndarray) -> np.ndarray:
        return potential.hessian(p[0], p[1], h=1e-5 * size)

    def fun(p: np.ndarray) -> tuple[float, np.ndarray]:
        e, gx, gy = potential.energy_and_gradient(p[0], p[1])
        return float(e), np.array([float(gx), float(gy)])

    def inside(p: np.ndarray) -> bool:
        return bool(xlo <= p[0] <= xhi and ylo <= p[1] <= yhi)

    # keep starts off the region's edge
    xs = np.linspace(xlo, xhi, grid + 2)[1:-1]
    ys = np.linspace(ylo, yhi, grid + 2)[1:-1]
    candidates: list[np.ndarray] = []
    for sx in xs:
        for sy in ys:
            start = np.array([sx, sy])
            res = optimize.minimize(fun, start, jac=True, method="L-BFGS-B",
                                    bounds=[(xlo, xhi), (ylo, yhi)],
                                    options={"gtol": 1e-12, "ftol": 1e-15})
            candidates.append(res.x)
            sol = optimize.root(grad, start, jac=hess, method="hybr")
            if sol.success:
                candidates.append(sol.x)

    found: list[np.ndarray] = []
    for p in candidates:
        if not np.all(np.isfinite(p)) or not inside(p):
            continue
        for _ in range(20):  # Newton polish
            g = grad(p)
            if np.hypot(*g) < 1e-13:
                break
            try:
                p = p - np.linalg.solve(hess(p), g)
            except np.linalg.LinAlgError:
                break
        if np.all(np.isfinite(p)) and inside(p) and np.hypot(*grad(p)) < gtol:
            found.append(p)
    found = _dedupe(found, 1e-4 * size)

    points: list[CriticalPoint] = []
    for p in found:
        ev = np.linalg.eigvalsh(hess(p))
        if np.min(np.abs(ev)) < 1e-10:  # degenerate: not a Morse critical point
            continue
        points.append(CriticalPoint(float(p[0]), float(p[1]),
                                    float(potential.energy(p[0], p[1])),
                                    int(np.sum(ev < 0)), (float(ev[0]), float(ev[1]))))
    points.sort(key=lambda c: c.energy)
    minima = tuple(c for c in points if c.index == 0)
    saddles = tuple(c for c in points if c.index == 1)
    maxima = tuple(c for c in points if c.index == 2)

    mins = np.array([[m.x, m.y] for m in minima]).reshape(-1, 2)
    curv = [abs(e) for c in minima + saddles for e in c.eigenvalues]
    step = 0.5 / max(curv) if curv else None
    connections: list[tuple[int, int]] = []
    for s in saddles:
        w, v = np.linalg.eigh(hess(np.array([s.x, s.y])))
        d = v[:, 0] * 1e-3 * size
        ex, ey = steepest_descent(potential, np.array([s.x + d[0], s.x - d[0]]),
                                  np.array([s.y + d[1], s.y - d[1]]),
                                  step=step, gtol=1e-8)
        ends = []
        for qx, qy in zip(ex, ey, strict=True):
            dist = np.hypot(mins[:, 0] - qx, mins[:, 1] - qy) if len(mins) else np.array([])
            k = int(np.argmin(dist)) if len(dist) else -1
            ends.append(k if k >= 0 and dist[k] < 1e-3 * size else -1)
        connections.append((ends[0], ends[1]))
    return CriticalPoints(minima, saddles, maxima, tuple(connections))


__all__ = ["KCAL_PER_MOL_IN_EV", "Potential2D", "MullerBrown2D", "ThreeWell2D",
           "three_well_standard", "CriticalPoint", "CriticalPoints", "find_critical_points",
           "steepest_descent"]
