"""5D model systems: a 2D potential embedded in five dimensions (Sun et al.,
Eq. 7-9).

``V(x1, ..., x5) = V2d(x~, y~)`` with ``x~ = sqrt(x1^2 + x2^2 + 1e-7 x5^2)``
and ``y~ = sqrt(x3^2 + x4^2)``: ``x5`` barely changes the energy but, being
nearly free, dominates Euclidean distances.

ASE representation
------------------
A 5D point is stored as TWO pseudo-atoms of mass 1 amu, positions of shape
``(2, 3)`` angstrom, with ``(x1, ..., x5) = positions.ravel()[:5]``, i.e.
atom 0 holds ``(x1, x2, x3)`` and atom 1 holds ``(x4, x5, z)``. The sixth
Cartesian coordinate (atom 1, z) is inactive: its force is always zero and
:meth:`Embedded5DSystem.make_atoms` fixes it with
``FixCartesian(1, mask=(False, False, True))``. :data:`DOF_MASK` marks the
five active coordinates.

Units: eV, angstrom, amu, K; forces in eV/angstrom.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.constraints import FixCartesian

from mtcv_core.interfaces import System
from mtcv_systems.potentials2d import (
    CriticalPoints,
    MullerBrown2D,
    Potential2D,
    ThreeWell2D,
)

#: weight of x5 in x~
X5_WEIGHT = 1e-7
#: (2, 3) bool: the active Cartesian coordinates of the two pseudo-atoms
DOF_MASK = np.array([[1, 1, 1], [1, 1, 0]], bool)
#: Floor (angstrom) for x~ and y~ in the DENOMINATORS of d x~/d x_k = x_k/x~
#: and d y~/d x_k = x_k/y~ only; the energy uses the exact radii. At x~ = 0
#: (y~ = 0) the numerators vanish too, so the force there is the zero
#: subgradient instead of 0/0; for radii above 1e-12 angstrom nothing changes.
RADIUS_EPS = 1e-12


def to_5d(positions: np.ndarray) -> np.ndarray:
    """(..., 2, 3) angstrom -> (..., 5): the active coordinates x1..x5."""
    p = np.asarray(positions, float)
    if p.shape[-2:] != (2, 3):
        raise ValueError(f"5D positions must have shape (..., 2, 3), got {p.shape}")
    return p.reshape(*p.shape[:-2], 6)[..., :5]


def from_5d(x: np.ndarray) -> np.ndarray:
    """(..., 5) -> (..., 2, 3) angstrom, the inactive 6th coordinate zero."""
    x = np.asarray(x, float)
    if x.shape[-1] != 5:
        raise ValueError(f"5D points must have shape (..., 5), got {x.shape}")
    out = np.zeros((*x.shape[:-1], 6))
    out[..., :5] = x
    return out.reshape(*x.shape[:-1], 2, 3)


def radial_cvs(positions: np.ndarray) -> np.ndarray:
    """(..., 2, 3) angstrom -> (..., 2): ``(x~, y~)``, angstrom."""
    x = to_5d(positions)
    x1, x2, x3, x4, x5 = (x[..., k] for k in range(5))
    # the same operations, in the same order, as energy_and_forces: the same bits
    xt = np.sqrt(x1 * x1 + x2 * x2 + X5_WEIGHT * x5 * x5)
    yt = np.sqrt(x3 * x3 + x4 * x4)
    return np.stack([xt, yt], -1)


class Embedded5DSystem(System):
    """A 2D potential embedded in 5D (see the module docstring).

    Basins
    ------
    :attr:`basins` names some minima of the 2D potential (which ones is set
    by :meth:`_assign_basins` from the numerically found minima). A frame is
    in basin ``i`` if

    1. its nearest minimum in the ``(x~, y~)`` plane, among ALL minima of the
       2D potential (named or not), is basin ``i``'s minimum, and
    2. ``V2d(x~, y~) < E_i + basin_fraction * (E_s,i - E_i)``, where ``E_i``
       is the minimum's energy and ``E_s,i`` the energy of the lowest saddle
       connecting it to another minimum (``basin_fraction = 0.5``).

    Frames nearest an unnamed minimum, or too high in energy, get ``-1``.

    Parameters
    ----------
    potential : Potential2D
        The 2D potential ``V2d(x~, y~)``, eV.
    temperature_K : float
        Default temperature of the experiments, K.
    basin_fraction : float
        Fraction of the lowest adjacent barrier that bounds a basin.
    """

    name: ClassVar[str] = "embedded_5d"
    true_cv_names: tuple[str, ...] = ("x_tilde", "y_tilde")
    true_cv_units: str = "angstrom"
    #: mass of each pseudo-atom, amu
    mass_amu: float = 1.0

    def __init__(self, potential: Potential2D, *, temperature_K: float = 300.0,
                 basin_fraction: float = 0.5) -> None:
        self.potential = potential
        self.temperature_K = float(temperature_K)
        self.basin_fraction = float(basin_fraction)
        self._cache: dict[str, Any] = {}

    # ------------------------------------------------------------ pickling
    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_cache"] = {}
        return state

    # --------------------------------------------------------- coordinates
    @staticmethod
    def to_5d(positions: np.ndarray) -> np.ndarray:
        """(n, 2, 3) angstrom -> (n, 5) (any leading shape)."""
        return to_5d(positions)

    @staticmethod
    def from_5d(x: np.ndarray) -> np.ndarray:
        """(n, 5) -> (n, 2, 3) angstrom, inactive coordinate 0."""
        return from_5d(x)

    @property
    def dof_mask(self) -> np.ndarray:
        """(2, 3) bool: the five active coordinates (a copy of :data:`DOF_MASK`)."""
        return DOF_MASK.copy()

    def true_cv(self, positions: np.ndarray) -> np.ndarray:
        """(n, 2, 3) angstrom -> (n, 2) ``(x~, y~)`` angstrom."""
        return radial_cvs(positions)

    def start_positions(self, basin: str | int | None, n: int, *, rng: np.random.Generator,
                        split: str = "train") -> np.ndarray:
        """(n, 2, 3) starting configurations at ``basin``'s minimum in
        ``(x~, y~)``, disjoint in 5D between splits (as in the paper, which
        started train and test from different x1/x~ and x3/y~ ratios).

        The angles ``phi12`` (x1 = r cos phi12) and ``phi34`` are drawn from
        interleaved eighth-turn sectors: ``k pi/2 + [0, pi/4)`` for
        ``split="train"`` and ``k pi/2 + [pi/4, pi/2)`` for ``split="test"``
        (``k = 0..3`` at random, independently for the two planes). Both
        splits cover all four quadrants, so a CV of the Cartesian
        coordinates is tested on ratios it has not seen but never has to
        extrapolate half a turn (with train and test in opposite quadrants a
        plain MLP generalises by luck: measured 69.6 % test accuracy for one
        seed, 99.96 % for another); ``x5 = 0``.
        """
        if split == "train":
            lo = 0.0
        elif split == "test":
            lo = np.pi / 4
        else:
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        xt, yt, _ = self.minimum(basin)

        def angles() -> np.ndarray:
            return lo + rng.integers(0, 4, n) * (np.pi / 2) + rng.uniform(0.0, np.pi / 4, n)

        return self.embed(np.full(n, xt), yt, phi12=angles(), phi34=angles())

    def embed(self, x_tilde: Any, y_tilde: Any, phi12: Any = 0.0, phi34: Any = 0.0,
              x5: Any = 0.0) -> np.ndarray:
        """Positions with given true CVs.

        ``x1 = r cos(phi12)``, ``x2 = r sin(phi12)`` with ``r = sqrt(x~^2 -
        1e-7 x5^2)`` (so that x~ is exactly the target), ``x3 = y~
        cos(phi34)``, ``x4 = y~ sin(phi34)``. All arguments broadcast
        (angstrom, radians); returns ``(n, 2, 3)`` with ``n`` the broadcast
        size (at least 1).
        """
        xt, yt, p12, p34, x5 = (np.ravel(np.asarray(v, float)) for v in
                                np.broadcast_arrays(x_tilde, y_tilde, phi12, phi34, x5))
        r2 = xt**2 - X5_WEIGHT * x5**2
        # x5 at its cap x~ / sqrt(1e-7) (with_spectators clips there) gives r2
        # of a few ulps either side of 0: that is r = 0, not an error
        if np.any(r2 < -1e-12 * xt**2) or np.any(yt < 0):
            raise ValueError("need x~^2 >= 1e-7 x5^2 and y~ >= 0")
        r = np.sqrt(np.maximum(r2, 0.0))
        x = np.stack([r * np.cos(p12), r * np.sin(p12), yt * np.cos(p34),
                      yt * np.sin(p34), x5], -1)
        return from_5d(x)

    # ------------------------------------------------ spectator coordinates
    spectator_names: tuple[str, ...] = ("x5", "phi12", "phi34")
    spectator_periods: tuple[float, ...] = (0.0, 2 * math.pi, 2 * math.pi)
    spectator_units: tuple[str, ...] = ("angstrom", "radian", "radian")

    def spectators(self, positions: np.ndarray) -> np.ndarray:
        """(n, 2, 3) angstrom -> (n, 3): ``x5`` (angstrom) and the embedding
        angles ``phi12 = atan2(x2, x1)``, ``phi34 = atan2(x4, x3)`` in
        ``[0, 2 pi)``."""
        x = to_5d(positions).reshape(-1, 5)
        phi12 = np.mod(np.arctan2(x[:, 1], x[:, 0]), 2 * np.pi)
        phi34 = np.mod(np.arctan2(x[:, 3], x[:, 2]), 2 * np.pi)
        return np.stack([x[:, 4], phi12, phi34], axis=1)

    def with_spectators(self, positions: np.ndarray, values: np.ndarray) -> np.ndarray:
        """The same ``(x~, y~)`` (so the same energy and basin, exactly) with
        ``x5``, ``phi12``, ``phi34`` set to ``values`` (n, 3). ``|x5|`` is
        clipped to ``x~ / sqrt(1e-7)`` (beyond it no point has that x~)."""
        xy = radial_cvs(np.asarray(positions, float).reshape(-1, 2, 3))
        v = np.asarray(values, float).reshape(len(xy), 3)
        cap = xy[:, 0] / math.sqrt(X5_WEIGHT)
        x5 = np.clip(v[:, 0], -cap, cap)
        return self.embed(xy[:, 0], xy[:, 1], phi12=v[:, 1], phi34=v[:, 2], x5=x5)

    def landmarks(self) -> dict[str, tuple[np.ndarray, int]]:
        """Each named basin's minimum and every saddle of the 2D potential
        (``saddle <i>-<j>`` by the minima it connects, basins by name where
        they have one), at ``x5 = 0`` and zero angles."""
        cp = self.critical_points()
        bm = self._basin_minima()
        name_of = {i: name for name, i in bm.items()}
        out: dict[str, tuple[np.ndarray, int]] = {}
        for name, i in bm.items():
            m = cp.minima[i]
            out[name] = (self.embed(m.x, m.y)[0], self.basins.index(name))
        for k, (s, (i, j)) in enumerate(zip(cp.saddles, cp.connections, strict=True)):
            ends = "-".join(name_of.get(v, f"m{v}") for v in (i, j))
            out[f"saddle {ends}" if f"saddle {ends}" not in out else f"saddle {ends} ({k})"] = (
                self.embed(s.x, s.y)[0], -1)
        return out

    def equilibrium_nodes(self, temperature_K: float, *,
                          spectator_spread: Sequence[float] | None = None,
                          spectator_draws: int = 16, seed: int = 0, chunk: int = 65536,
                          n: int = 400, weight_cutoff: float = 1e-35) -> Any:
        """Quadrature of ``p(x~, y~) ∝ x~ y~ exp(-V2d/kT)`` (see
        :mod:`mtcv_systems.reference`) on ``n x n`` midpoint cells, cells
        below ``weight_cutoff`` of the peak dropped, each cell's weight shared
        by ``spectator_draws`` configurations: the angles stratified over
        ``[0, 2 pi)`` (equilibrium: uniform), ``x5 ~ N(0, spread^2)`` with
        ``spectator_spread[0]`` angstrom (0 or None: ``x5 = 0``; the x~ and
        y~ of every node are exact whatever x5). Yields ``(positions (m, 2,
        3), weights (m,))`` chunks, weights summing to one."""
        from mtcv_systems.reference import cell_grid, log_density_2d

        spread = 0.0 if spectator_spread is None else float(np.ravel(spectator_spread)[0])
        x, y, _ = cell_grid(self, n)
        xx, yy = np.meshgrid(x, y, indexing="ij")
        logp = log_density_2d(self, temperature_K, xx, yy).ravel()
        w = np.exp(logp - np.max(logp))
        keep = w > weight_cutoff
        xs, ys, w = xx.ravel()[keep], yy.ravel()[keep], w[keep] / w[keep].sum()
        m = int(spectator_draws)
        rng = np.random.default_rng(seed)
        per = max(1, int(chunk) // m)
        for start in range(0, len(w), per):
            sl = slice(start, start + per)
            c = len(w[sl])
            strata = (np.arange(m) + rng.uniform(size=(c, m))) / m
            phi12 = 2 * np.pi * strata
            phi34 = 2 * np.pi * rng.permuted((np.arange(m) + rng.uniform(size=(c, m))) / m,
                                             axis=1)
            x5 = spread * rng.standard_normal((c, m)) if spread > 0 else np.zeros((c, m))
            xt = np.repeat(xs[sl], m)
            cap = xt / math.sqrt(X5_WEIGHT)
            pos = self.embed(xt, np.repeat(ys[sl], m), phi12=phi12.ravel(),
                             phi34=phi34.ravel(), x5=np.clip(x5.ravel(), -cap, cap))
            yield pos, np.repeat(w[sl] / m, m)

    # ------------------------------------------------------------- energy
    def energy_and_forces(self, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Energy and forces, analytic and vectorised.

        positions: (n, 2, 3) angstrom (any leading shape) -> energy (n,) eV,
        forces (n, 2, 3) eV/angstrom; the inactive coordinate's force is 0.
        """
        x = to_5d(positions)
        x1, x2, x3, x4, x5 = (x[..., k] for k in range(5))
        xt = np.sqrt(x1 * x1 + x2 * x2 + X5_WEIGHT * x5 * x5)
        yt = np.sqrt(x3 * x3 + x4 * x4)
        e, gx, gy = self.potential.energy_and_gradient(xt, yt)
        # MD asks for the basin of the configurations it just evaluated: keep
        # (x~, y~, V) for basin_index (one tuple, replaced atomically)
        self._cache["last_evaluated"] = (np.array(positions, float), xt, yt, e)
        fx = -gx / np.maximum(xt, RADIUS_EPS)
        fy = -gy / np.maximum(yt, RADIUS_EPS)
        f = np.zeros((*x.shape[:-1], 6))
        f[..., 0] = fx * x1
        f[..., 1] = fx * x2
        f[..., 2] = fy * x3
        f[..., 3] = fy * x4
        f[..., 4] = fx * (X5_WEIGHT * x5)
        return e, f.reshape(*x.shape[:-1], 2, 3)

    def energy(self, positions: np.ndarray) -> np.ndarray:
        """(n, 2, 3) angstrom -> (n,) eV."""
        xy = radial_cvs(positions)
        return self.potential.energy(xy[..., 0], xy[..., 1])

    # ------------------------------------------------------ critical points
    def critical_points(self) -> CriticalPoints:
        """Minima, saddles, maxima and connectivity of the 2D potential
        (numerical, cached)."""
        return self.potential.critical_points()

    def _assign_basins(self, cp: CriticalPoints) -> dict[str, int]:
        """Map each basin name to the index of its minimum in ``cp.minima``."""
        return {name: i for i, name in enumerate(self.basins)}

    def _basin_minima(self) -> dict[str, int]:
        if "basin_minima" not in self._cache:
            self._cache["basin_minima"] = self._assign_basins(self.critical_points())
        return self._cache["basin_minima"]

    def minimum(self, basin: str | int | None = None) -> tuple[float, float, float]:
        """``(x~, y~, E)`` of the basin's minimum (angstrom, angstrom, eV)."""
        m = self.critical_points().minima[self._basin_minima()[self.basin_name(basin)]]
        return m.x, m.y, m.energy

    def barrier(self, from_basin: str | int, to_basin: str | int, *,
                direct: bool = False) -> float:
        """Barrier (eV) from one basin to another.

        Default: the lowest, over all paths through the saddle graph, of the
        highest saddle on the path, minus the starting minimum's energy (the
        barrier that governs the transition, possibly through other minima).
        ``direct=True``: over the lowest saddle directly connecting the two
        minima (``inf`` if none does).
        """
        bm = self._basin_minima()
        i, j = bm[self.basin_name(from_basin)], bm[self.basin_name(to_basin)]
        cp = self.critical_points()
        return cp.direct_barrier(i, j) if direct else cp.barrier(i, j)

    def _basin_tables(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(minima xy (m, 2), label of each minimum (m,), energy bound (m,))."""
        if "tables" not in self._cache:
            cp = self.critical_points()
            label = np.full(len(cp.minima), -1)
            for k, name in enumerate(self.basins):
                label[self._basin_minima()[name]] = k
            bound = np.array([
                m.energy + self.basin_fraction * (cp.lowest_adjacent_saddle_energy(i) - m.energy)
                for i, m in enumerate(cp.minima)])
            self._cache["tables"] = (cp.minima_xy, label, bound)
        return self._cache["tables"]

    def basin_index(self, positions: np.ndarray) -> np.ndarray:
        """Basin label of each frame (see the class docstring).

        positions: (n, 2, 3) angstrom -> (n,) int, index into
        :attr:`basins` or -1.
        """
        last = self._cache.get("last_evaluated")
        if last is not None and last[0].shape == np.shape(positions) \
                and np.array_equal(last[0], positions):
            # the configurations energy_and_forces just evaluated (the MD
            # loops' case): their x~, y~ and energy, the same numbers
            return self._basin_of(last[1], last[2], last[3])
        xy = radial_cvs(positions)
        return self.basin_index_2d(xy[..., 0], xy[..., 1])

    def basin_index_2d(self, x_tilde: np.ndarray, y_tilde: np.ndarray) -> np.ndarray:
        """Basin label of points of the ``(x~, y~)`` plane (broadcast shape)."""
        x, y = np.broadcast_arrays(np.asarray(x_tilde, float), np.asarray(y_tilde, float))
        return self._basin_of(x, y, self.potential.energy(x, y))

    def _basin_of(self, x: np.ndarray, y: np.ndarray, energy: np.ndarray) -> np.ndarray:
        """Basin label of plane points with their 2D energy (same shapes)."""
        mins, label, bound = self._basin_tables()
        d2 = (x[..., None] - mins[:, 0]) ** 2 + (y[..., None] - mins[:, 1]) ** 2
        near = np.argmin(d2, axis=-1)
        return np.where(energy < bound[near], label[near], -1).astype(int)

    def true_cv_module(self) -> torch.nn.Module:
        """(x~, y~) as a TorchScript module, positions (n, 2, 3) -> (n, 2) angstrom."""
        return true_cv_module()

    def basin_index_cv(self, cv: np.ndarray) -> np.ndarray:
        """Basin label from (x~, y~) values (n, 2) -> (n,)."""
        cv = np.asarray(cv, float)
        return self.basin_index_2d(cv[..., 0], cv[..., 1])

    def reference_transitions(self, temperature_K: float) -> list[dict[str, Any]]:
        """Barriers and free-energy differences by quadrature of the
        configurational integral (:mod:`mtcv_systems.reference`)."""
        from mtcv_systems.reference import reference_transitions

        return reference_transitions(self, temperature_K)

    # ---------------------------------------------------------------- ASE
    def make_atoms(self, basin: str | int | None = None, **embed_kwargs: Any) -> Atoms:
        """Two pseudo-atoms (masses 1 amu) at the minimum of ``basin`` (the
        first basin when ``None``), with an :class:`Embedded5DCalculator`
        and the inactive coordinate fixed. ``embed_kwargs`` (``phi12``,
        ``phi34``, ``x5``) go to :meth:`embed`."""
        xt, yt, _ = self.minimum(basin)
        pos = self.embed(xt, yt, **embed_kwargs)[0]
        atoms = Atoms("H2", positions=pos, masses=[self.mass_amu, self.mass_amu], pbc=False)
        atoms.set_constraint(FixCartesian(1, mask=(False, False, True)))
        atoms.calc = Embedded5DCalculator(self)
        return atoms

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        cp = self.critical_points()
        bm = self._basin_minima()
        d.update({
            "potential": type(self.potential).__name__,
            "coefficients": self.potential.parameters(),
            "embedding": "x~ = sqrt(x1^2 + x2^2 + 1e-7 x5^2), y~ = sqrt(x3^2 + x4^2); "
                         "positions (2, 3) with x1..x5 = positions.ravel()[:5]",
            "mass_amu": self.mass_amu,
            "basin_fraction": self.basin_fraction,
            "critical_points": cp.as_dict(),
            "basin_minima": {name: cp.minima[i].as_dict() for name, i in bm.items()},
            "barriers_eV": {f"{a}->{b}": self.barrier(a, b)
                            for a in self.basins for b in self.basins if a != b},
            "direct_barriers_eV": {f"{a}->{b}": _finite(self.barrier(a, b, direct=True))
                                   for a in self.basins for b in self.basins if a != b},
        })
        return d


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


class Embedded5DCalculator(Calculator):
    """ASE calculator of an :class:`Embedded5DSystem`: energy (eV) and forces
    (eV/angstrom, shape (2, 3)) of two pseudo-atoms in one vectorised pass; a
    pure function of the positions."""

    implemented_properties: ClassVar[list[str]] = ["energy", "forces"]  # type: ignore[misc]

    def __init__(self, system: Embedded5DSystem, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.system = system

    def calculate(self, atoms: Atoms | None = None,
                  properties: Sequence[str] = ("energy", "forces"),
                  system_changes: Sequence[str] = tuple(all_changes)) -> None:
        super().calculate(atoms, properties, system_changes)
        pos = self.atoms.positions
        if pos.shape != (2, 3):
            raise ValueError(f"{self.system.name} needs 2 pseudo-atoms, got {len(pos)}")
        e, f = self.system.energy_and_forces(pos)
        self.results = {"energy": float(e), "forces": f}


class MullerBrown5D(Embedded5DSystem):
    """5D Müller-Brown (:class:`~mtcv_systems.potentials2d.MullerBrown2D`).

    Basin A is the deepest minimum, B the second deepest (the paper's
    (41.98, 8.45) minimum); the third, intermediate minimum is unnamed, so
    frames near it are labelled -1.

    Parameters
    ----------
    energy_scale : float
        Factor on the potential's amplitudes (1: the paper's surface, A -> B
        energy barrier 0.92 eV; 0.2: the authors' reduced-barrier variant,
        A -> B free-energy barrier 7.9 kT at 300 K, where transitions are
        frequent enough to count in plain MD). The critical points do not
        move.
    """

    name: ClassVar[str] = "muller_brown_5d"
    basins: tuple[str, ...] = ("A", "B")

    def __init__(self, *, temperature_K: float = 300.0, basin_fraction: float = 0.5,
                 energy_scale: float = 1.0) -> None:
        scale = _energy_scale(energy_scale)
        super().__init__(MullerBrown2D(A=tuple(scale * a for a in MullerBrown2D().A)),
                         temperature_K=temperature_K, basin_fraction=basin_fraction)
        self.energy_scale = scale

    def _assign_basins(self, cp: CriticalPoints) -> dict[str, int]:
        if len(cp.minima) < 2:  # pragma: no cover - would be a search failure
            raise RuntimeError("Müller-Brown: fewer than two minima found")
        return {"A": 0, "B": 1}  # minima are sorted by energy


class ThreeWell5D(Embedded5DSystem):
    """5D three-well (:class:`~mtcv_systems.potentials2d.ThreeWell2D`,
    ``V = V_std/2 + 2 eV``).

    A and B are the two deepest minima (A at smaller x~, B at larger x~), C
    the third (the upper well, at large y~).

    Parameters
    ----------
    energy_scale : float
        Factor on ``V - 2 eV`` (1: the paper's surface; 0.2 divides every
        barrier by 5, so that transitions are frequent enough to count in
        plain MD). The critical points do not move.
    """

    name: ClassVar[str] = "three_well_5d"
    basins: tuple[str, ...] = ("A", "B", "C")

    def __init__(self, *, temperature_K: float = 300.0, basin_fraction: float = 0.5,
                 energy_scale: float = 1.0) -> None:
        scale = _energy_scale(energy_scale)
        super().__init__(ThreeWell2D(energy_scale=scale * ThreeWell2D().energy_scale),
                         temperature_K=temperature_K, basin_fraction=basin_fraction)
        self.energy_scale = scale

    def _assign_basins(self, cp: CriticalPoints) -> dict[str, int]:
        if len(cp.minima) < 3:  # pragma: no cover - would be a search failure
            raise RuntimeError("three-well: fewer than three minima found")
        a, b = sorted((0, 1), key=lambda i: cp.minima[i].x)
        return {"A": a, "B": b, "C": 2}


def _energy_scale(value: float) -> float:
    scale = float(value)
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"energy_scale must be a positive number, got {value!r}")
    return scale


__all__ = ["DOF_MASK", "X5_WEIGHT", "RADIUS_EPS", "to_5d", "from_5d", "radial_cvs",
           "Embedded5DSystem", "Embedded5DCalculator", "MullerBrown5D", "ThreeWell5D"]


def true_cv_module() -> torch.nn.Module:
    """The true CVs (x~, y~) as a TorchScript module: positions (n, 2, 3)
    angstrom -> (n, 2) angstrom, for umbrella sampling along them."""
    return torch.jit.script(_TrueCV5D())


class _TrueCV5D(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.x5_weight = float(X5_WEIGHT)

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        x = positions.reshape(positions.shape[0], 6)
        xt = torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2 + self.x5_weight * x[:, 4] ** 2)
        yt = torch.sqrt(x[:, 2] ** 2 + x[:, 3] ** 2)
        return torch.stack([xt, yt], dim=1)
