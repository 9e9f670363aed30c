"""Rate constants along a CV: transition-state theory, the reactive-flux
transmission coefficient, the committor and brute-force first passages.

Units are mtcv's (eV, angstrom, amu, fs); rates come out in 1/s. ``xi`` is
any CV, in its own units (written ``[xi]`` below); its gradient is per
angstrom.

Transition-state theory along xi (the dividing surface ``xi = xi*``)::

    k_TST(A -> B) = sqrt(kT / (2 pi)) <|grad xi|_M>_{xi*} exp(-F(xi*)/kT)
                    / integral_A exp(-F(xi)/kT) dxi

with ``|grad xi|_M^2 = sum_i |d xi / d r_i|^2 / m_i`` averaged over the
configurations on the surface (:func:`mass_weighted_gradient_norm`): the
mean of ``|d xi/dt|`` over Maxwell-Boltzmann velocities is ``sqrt(2 kT /
pi) |grad xi|_M``, and half of them cross towards B. ``F`` is the PMF along
xi (any additive constant).

The Bennett-Chandler transmission coefficient from shots started on the
surface with Maxwell-Boltzmann velocities (configuration weights ``w``)::

    kappa(t) = sum_n w_n xidot_n(0) theta(xi_n(t) - xi*) / sum_n w_n xidot_n(0) theta(xidot_n(0))

(:func:`transmission_coefficient`; for B -> A flip the sign of ``xi -
xi*``), ``k = kappa k_TST``.
"""

from __future__ import annotations

import math

import numpy as np

#: velocity unit of sqrt(eV / amu) in angstrom/fs (= ase.units.fs)
SQRT_EV_PER_AMU_IN_A_PER_FS: float = 0.09822694788464063
#: fs per s
FS_PER_S: float = 1e15


def mass_weighted_gradient_norm(gradient: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """``|grad xi|_M = sqrt(sum_i |d xi / d r_i|^2 / m_i)`` per configuration.

    gradient: (n, n_atoms, 3), [xi]/angstrom; masses: (n_atoms,) amu.
    Returns (n,), [xi] / (angstrom sqrt(amu))."""
    g = np.asarray(gradient, float)
    m = np.asarray(masses, float)
    if g.ndim != 3 or g.shape[2] != 3 or g.shape[1] != m.shape[0]:
        raise ValueError(f"mass_weighted_gradient_norm: gradient {g.shape} and masses "
                         f"{m.shape} do not match (n, n_atoms, 3) and (n_atoms,)")
    if np.any(m <= 0):
        raise ValueError("mass_weighted_gradient_norm: masses must be positive")
    return np.sqrt(np.einsum("nij,nij,i->n", g, g, 1.0 / m))


def tst_rate(pmf_eV: np.ndarray, centers: np.ndarray, reactant: np.ndarray, xi_star: float,
             mean_gradient_norm: float, kT_eV: float) -> float:
    """Transition-state-theory rate (1/s) out of the reactant basin across
    ``xi = xi*`` (see the module docstring).

    pmf_eV, centers: (n_bins,) the PMF (eV, NaN where unknown) on equal bins
    with these centres ([xi]); reactant: (n_bins,) bool, the reactant
    basin's bins; xi_star: the dividing surface ([xi]), the PMF is
    interpolated there; mean_gradient_norm: ``<|grad xi|_M>`` on the
    surface ([xi] / (angstrom sqrt(amu))); kT_eV: kT (eV)."""
    f = np.asarray(pmf_eV, float)
    c = np.asarray(centers, float)
    mask = np.asarray(reactant, bool) & np.isfinite(f)
    if not mask.any():
        raise ValueError("tst_rate: the reactant basin has no bin with a finite PMF")
    if len(c) < 2:
        raise ValueError("tst_rate: need at least two bins")
    width = float(np.mean(np.diff(c)))
    ok = np.isfinite(f)
    f_star = float(np.interp(xi_star, c[ok], f[ok]))
    shift = float(np.min(f[mask]))
    basin = float(np.sum(np.exp(-(f[mask] - shift) / kT_eV)) * width)  # [xi]
    surface = math.exp(-(f_star - shift) / kT_eV)  # 1/[xi] after dividing by basin
    flux = (math.sqrt(kT_eV / (2 * math.pi)) * float(mean_gradient_norm)
            * SQRT_EV_PER_AMU_IN_A_PER_FS)  # [xi]/fs
    return flux * surface / basin * FS_PER_S


def dividing_surface(pmf_eV: np.ndarray, centers: np.ndarray, xi_from: float, xi_to: float
                     ) -> tuple[float, np.ndarray]:
    """The top of a 1D PMF between two basin minima and the reactant side.

    pmf_eV, centers: (n_bins,) (NaN: no data); xi_from, xi_to: the basins'
    minima ([xi]). Returns ``xi*`` (the centre of the highest finite bin
    between them) and the (n_bins,) bool mask of the bins on ``xi_from``'s
    side of it (the reactant region of :func:`tst_rate`)."""
    f = np.asarray(pmf_eV, float)
    c = np.asarray(centers, float)
    lo, hi = sorted((float(xi_from), float(xi_to)))
    between = (c >= lo) & (c <= hi) & np.isfinite(f)
    if not between.any():
        raise ValueError(f"dividing_surface: no finite PMF bin between {lo:g} and {hi:g}")
    top = int(np.flatnonzero(between)[np.argmax(f[between])])
    xi_star = float(c[top])
    side = (c < xi_star) if xi_from < xi_star else (c > xi_star)
    return xi_star, side


def tst_rates(pmf_eV: np.ndarray, centers: np.ndarray, xi_a: float, xi_b: float,
              mean_gradient_norm: float, kT_eV: float) -> tuple[float, float, float]:
    """``(xi*, k_TST(A -> B), k_TST(B -> A))`` (1/s) across the top of the
    PMF between the minima ``xi_a`` and ``xi_b`` (:func:`dividing_surface`,
    :func:`tst_rate`). They obey detailed balance, ``k_AB P_A = k_BA P_B``
    with ``P`` the populations of the two sides."""
    xi_star, side_a = dividing_surface(pmf_eV, centers, xi_a, xi_b)
    _, side_b = dividing_surface(pmf_eV, centers, xi_b, xi_a)
    k_ab = tst_rate(pmf_eV, centers, side_a, xi_star, mean_gradient_norm, kT_eV)
    k_ba = tst_rate(pmf_eV, centers, side_b, xi_star, mean_gradient_norm, kT_eV)
    return xi_star, k_ab, k_ba


def transmission_coefficient(xi_dot0: np.ndarray, xi_t: np.ndarray, xi_star: float, *,
                             weights: np.ndarray | None = None,
                             towards: int = 1) -> np.ndarray:
    """Bennett-Chandler ``kappa(t)`` (module docstring) from shots.

    xi_dot0: (n_shots,) d xi/dt at t = 0 ([xi]/fs, any unit: only ratios
    enter); xi_t: (n_shots, n_times) xi along each shot; weights: (n_shots,)
    configuration weights (default 1); towards: +1 when the product side is
    ``xi > xi*``, -1 when it is ``xi < xi*``. Returns (n_times,)."""
    v = np.asarray(xi_dot0, float) * towards
    x = (np.asarray(xi_t, float) - xi_star) * towards
    if x.ndim != 2 or x.shape[0] != v.shape[0]:
        raise ValueError(f"transmission_coefficient: xi_t {x.shape} must be (n_shots, "
                         f"n_times) for {v.shape[0]} shots")
    w = np.ones_like(v) if weights is None else np.asarray(weights, float)
    norm = float(np.sum(w * v * (v > 0)))
    if norm <= 0:
        raise ValueError("transmission_coefficient: no shot starts towards the product")
    return (w * v) @ (x > 0) / norm


def plateau(values: np.ndarray, errors: np.ndarray, *, n_sigma: float = 2.0
            ) -> tuple[int, float, float]:
    """The plateau of a curve that settles (kappa(t)): the first index from
    which every later value lies within ``n_sigma`` combined errors of the
    last one; returns (index, mean of the values from there, the largest
    error there). values, errors: (n_times,)."""
    y = np.asarray(values, float)
    e = np.asarray(errors, float)
    last = y[-1]
    tol = n_sigma * np.sqrt(e**2 + e[-1] ** 2)
    inside = np.abs(y - last) <= np.maximum(tol, 1e-12)
    start = len(y) - 1
    while start > 0 and inside[start - 1]:
        start -= 1
    return start, float(np.mean(y[start:])), float(np.max(e[start:]))


def first_passages(labels: np.ndarray, n_states: int) -> tuple[np.ndarray, np.ndarray]:
    """Transitions between states along a trajectory, counted by the state
    last visited (frames between states, label -1, keep the previous one).

    labels: (n_frames,) int, state of each frame (-1: none). Returns
    ``counts`` (n_states, n_states): transitions i -> j, and ``frames``
    (n_states,): frames spent with i as the last state visited (before the
    first visit: none). The rate i -> j is ``counts[i, j] / (frames[i] *
    dt)``."""
    lab = np.asarray(labels, int)
    counts = np.zeros((n_states, n_states), dtype=np.int64)
    frames = np.zeros(n_states, dtype=np.int64)
    if np.any(lab >= n_states) or np.any(lab < -1):
        raise ValueError(f"first_passages: labels must lie in -1 .. {n_states - 1}")
    visited = lab >= 0
    if not visited.any():
        return counts, frames
    # the last state visited at each frame, from the first visit on
    idx = np.where(visited, np.arange(len(lab)), -1)
    np.maximum.accumulate(idx, out=idx)
    start = int(np.argmax(visited))
    last = lab[idx[start:]]
    frames += np.bincount(last, minlength=n_states)
    change = np.flatnonzero(last[1:] != last[:-1])
    np.add.at(counts, (last[change], last[change + 1]), 1)
    return counts, frames


def committor(reached_product: np.ndarray) -> np.ndarray:
    """p_B per configuration from its shots: reached_product (n_configs,
    n_shots) bool -> (n_configs,) fraction."""
    r = np.asarray(reached_product, bool)
    if r.ndim != 2 or r.shape[1] < 1:
        raise ValueError("committor: reached_product must be (n_configs, n_shots)")
    return r.mean(axis=1)


__all__ = ["mass_weighted_gradient_norm", "tst_rate", "dividing_surface", "tst_rates",
           "transmission_coefficient", "plateau", "first_passages", "committor",
           "SQRT_EV_PER_AMU_IN_A_PER_FS", "FS_PER_S"]
