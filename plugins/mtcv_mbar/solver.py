"""Small numerical kernels of the MBAR estimator.

The main MBAR solution always comes from :class:`pymbar.MBAR`. Bootstrap
replicates only need the free energies of a resampled data set, started from
the full-data solution, where a few Newton steps converge to machine
precision; :func:`solve_mbar` does that with numpy alone, at a fraction of
the cost of building a new :class:`pymbar.MBAR` object per replicate (its
agreement with pymbar is tested).

Notation (pymbar's): ``u_kn[k, n]`` is the reduced potential (dimensionless)
of sample ``n`` in state ``k``; ``N_k[k]`` samples came from state ``k``;
``f_k`` are the dimensionless free energies with ``f_k[0] = 0``.
"""

from __future__ import annotations

import numpy as np


def _objective(u_kn: np.ndarray, log_n_k: np.ndarray, n_k: np.ndarray,
               f_k: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """MBAR's convex objective, ``(obj, W, log_den)``: ``log_den[n] = log
    sum_k N_k exp(f_k - u_kn)`` and ``W[k, n] = N_k exp(f_k - u_kn) /
    exp(log_den[n])`` (columns sum to 1)."""
    a = (f_k + log_n_k)[:, None] - u_kn
    peak = a.max(axis=0)
    np.subtract(a, peak, out=a)
    np.exp(a, out=a)
    total = a.sum(axis=0)
    log_den = peak + np.log(total)
    np.divide(a, total, out=a)
    return float(log_den.sum() - n_k @ f_k), a, log_den


def mbar_hessian(u_kn: np.ndarray, N_k: np.ndarray, f_k: np.ndarray) -> np.ndarray:
    """(K, K) Hessian of MBAR's objective at ``f_k``:
    ``diag(sum_n W_kn) - W W^T``."""
    n_k = np.asarray(N_k, float)
    _, w, _ = _objective(np.asarray(u_kn, float), np.log(n_k), n_k, np.asarray(f_k, float))
    return np.diag(w.sum(axis=1)) - w @ w.T


def solve_mbar(u_kn: np.ndarray, N_k: np.ndarray, f_init: np.ndarray | None = None, *,
               tol: float = 1e-10, max_iter: int = 100,
               hessian: np.ndarray | None = None) -> np.ndarray:
    """Solve the MBAR equations by damped Newton iteration.

    Parameters
    ----------
    u_kn : (K, N) float
        Reduced potentials of all N samples in all K states.
    N_k : (K,) int
        Samples drawn from each state (all > 0); only the counts matter.
    f_init : (K,) float, optional
        Starting free energies (e.g. the full-data solution); default 0.
    tol : float
        Stop when every ``|sum_n W_kn / N_k - 1| < tol``.
    max_iter : int
        Iteration limit.
    hessian : (K, K) float, optional
        A fixed Hessian to use for every step (e.g. :func:`mbar_hessian` of
        the full data set when solving bootstrap replicates from its
        solution): each step then costs one pass over ``u_kn`` instead of
        two. The exact Hessian is used whenever a fixed-Hessian step fails
        to lower the objective.

    Returns
    -------
    (K,) float
        Dimensionless free energies ``f_k``, ``f_k[0] = 0``.
    """
    return _solve(u_kn, N_k, f_init, tol, max_iter, hessian)[0]


def _solve(u_kn: np.ndarray, N_k: np.ndarray, f_init: np.ndarray | None, tol: float,
           max_iter: int, hessian: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """(f_k, log_den) at the solution; see :func:`solve_mbar`."""
    u_kn = np.asarray(u_kn, float)
    n_k = np.asarray(N_k, float)
    if np.any(n_k <= 0):
        raise ValueError("solve_mbar: every state needs at least one sample")
    log_n_k = np.log(n_k)
    f = np.zeros(len(n_k)) if f_init is None else np.array(f_init, float)
    f -= f[0]
    obj, w, log_den = _objective(u_kn, log_n_k, n_k, f)
    fixed = hessian
    for _ in range(max_iter):
        expected = w.sum(axis=1)
        grad = expected - n_k
        if np.max(np.abs(grad / n_k)) < tol:
            break
        use_fixed = fixed is not None
        hess = fixed if use_fixed else np.diag(expected) - w @ w.T
        try:
            step = np.linalg.solve(hess[1:, 1:], -grad[1:])
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(hess[1:, 1:], -grad[1:], rcond=None)[0]
        accepted = False
        t = 1.0
        while t >= 1e-6:
            trial = f.copy()
            trial[1:] += t * step
            obj_t, w_t, den_t = _objective(u_kn, log_n_k, n_k, trial)
            if obj_t <= obj + 1e-12 * max(1.0, abs(obj)):
                accepted = True
                break
            if use_fixed:
                break
            t *= 0.5
        if not accepted:
            if use_fixed:  # continue with exact Newton steps
                fixed = None
                continue
            # Newton cannot descend (a nearly singular Hessian far from the
            # solution, e.g. windows that barely overlap, from f = 0):
            # self-consistent iterations, which never raise the objective,
            # until Newton can take over again
            trial = f
            for _ in range(SELF_CONSISTENT_STEPS):
                trial = _self_consistent_step(u_kn, log_den, trial)
                obj_t, w_t, den_t = _objective(u_kn, log_n_k, n_k, trial)
                log_den = den_t
            if not obj_t < obj - 1e-12 * max(1.0, abs(obj)):
                break  # no further decrease at machine precision
        f, obj, w, log_den = trial, obj_t, w_t, den_t
    return f, log_den


#: self-consistent iterations taken when a Newton step fails to descend
SELF_CONSISTENT_STEPS = 10


def _self_consistent_step(u_kn: np.ndarray, log_den: np.ndarray, f_k: np.ndarray) -> np.ndarray:
    """One self-consistent MBAR update ``f_k' = -log sum_n exp(-u_kn -
    log_den_n)`` (``log_den`` at ``f_k``), shifted so that ``f'_0 = 0``."""
    from scipy.special import logsumexp

    f_new = -logsumexp(-u_kn - log_den[None, :], axis=1)
    return f_new - f_new[0]


def unbiased_log_weights(u_kn: np.ndarray, N_k: np.ndarray, f_k: np.ndarray) -> np.ndarray:
    """(N,) normalised log weights of the samples in the unbiased state
    (reduced potential 0): ``log w_n = -log sum_k N_k exp(f_k - u_kn)``,
    shifted so that ``sum_n w_n = 1``."""
    n_k = np.asarray(N_k, float)
    _, _, log_den = _objective(np.asarray(u_kn, float), np.log(n_k), n_k,
                               np.asarray(f_k, float))
    return _normalised(-log_den)


def solve_unbiased_log_weights(u_kn: np.ndarray, N_k: np.ndarray, f_init: np.ndarray, *,
                               tol: float = 1e-8, hessian: np.ndarray | None = None
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Solve MBAR (as :func:`solve_mbar`) and return ``(f_k, log_w)`` with
    the normalised unbiased-state log weights of :func:`unbiased_log_weights`."""
    f, log_den = _solve(u_kn, N_k, f_init, tol, 100, hessian)
    return f, _normalised(-log_den)


def _normalised(log_w: np.ndarray) -> np.ndarray:
    peak = float(np.max(log_w))
    return log_w - (peak + np.log(np.exp(log_w - peak).sum()))


def histogram_free_energy(cell: np.ndarray, log_w: np.ndarray, n_cells: int) -> np.ndarray:
    """Dimensionless free energy ``-ln P(cell)`` of each histogram cell.

    Parameters
    ----------
    cell : (N,) int
        Cell (flat bin index, 0 .. n_cells-1) of each sample.
    log_w : (N,) float
        Log weights of the samples in the target state.
    n_cells : int
        Number of cells.

    Returns
    -------
    (n_cells,) float
        ``-ln P`` with ``P`` the normalised weight in each cell; NaN for
        cells without samples.
    """
    shift = float(np.max(log_w))
    p = np.bincount(cell, weights=np.exp(log_w - shift), minlength=n_cells)
    with np.errstate(divide="ignore"):
        f = -np.log(p / p.sum())
    f[p <= 0] = np.nan
    return f


__all__ = ["solve_mbar", "mbar_hessian", "unbiased_log_weights", "solve_unbiased_log_weights",
           "histogram_free_energy"]
