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

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

#: elements of ``u_kn`` processed at once: the K x chunk temporaries of every
#: pass over the samples stay near 16 MB per thread, whatever N is
CHUNK_ELEMENTS = 2_000_000


def _column_chunks(u_kn: np.ndarray) -> list[slice]:
    k, n = u_kn.shape
    size = max(1, CHUNK_ELEMENTS // max(k, 1))
    return [slice(i, min(n, i + size)) for i in range(0, n, size)]


def _evaluate(u_kn: np.ndarray, log_n_k: np.ndarray, n_k: np.ndarray, f_k: np.ndarray,
              hessian: bool = False, weights: np.ndarray | None = None
              ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray | None]:
    """MBAR's convex objective and its derivatives in one chunked pass over
    the samples: ``(obj, log_den, expected, wwt)`` with ``log_den[n] = log
    sum_k N_k exp(f_k - u_kn)``, ``W[k, n] = N_k exp(f_k - u_kn - log_den[n])``
    (columns sum to 1), ``expected = sum_n c_n W[:, n]`` (K,) and, with
    ``hessian``, ``wwt = W diag(c) W^T`` (K, K) (else None). ``weights``
    (N,), default 1: ``c_n``, how many times sample n counts (a bootstrap
    replicate as multiplicities: the same as repeating the columns; ``N_k``
    must then be the weighted counts). The chunks run on :data:`THREADS`
    threads; their partial sums are added in chunk order, so the result does
    not depend on the threads."""
    shift = (f_k + log_n_k)[:, None]
    k = len(f_k)

    def chunk(sl: slice) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        a = shift - u_kn[:, sl]
        peak = a.max(axis=0)
        np.subtract(a, peak, out=a)
        np.exp(a, out=a)
        total = a.sum(axis=0)
        log_den = peak + np.log(total)
        np.divide(a, total, out=a)
        if weights is None:
            return log_den, a.sum(axis=1), (a @ a.T if hessian else None)
        c = weights[sl]
        expected = a @ c
        return log_den, expected, ((a * c) @ a.T if hessian else None)

    log_den = np.empty(u_kn.shape[1])
    expected = np.zeros(k)
    wwt = np.zeros((k, k)) if hessian else None
    for sl, (den, exp_part, wwt_part) in _map_chunks(chunk, _column_chunks(u_kn)):
        log_den[sl] = den
        expected += exp_part
        if wwt is not None:
            wwt += wwt_part
    obj = log_den.sum() if weights is None else float(weights @ log_den)
    return float(obj - n_k @ f_k), log_den, expected, wwt


#: threads that share the passes over the samples (numpy releases the GIL in
#: exp, sums and matrix products); 1 = no pool
THREADS = max(1, min(4, os.cpu_count() or 1))
_POOL: ThreadPoolExecutor | None = None


def _forget_pool() -> None:
    """In a forked child the pool's threads do not exist: make a new one."""
    global _POOL
    _POOL = None


os.register_at_fork(after_in_child=_forget_pool)


def _map_chunks(fn: Callable[[slice], Any], chunks: list[slice]) -> list[tuple[slice, Any]]:
    """``[(sl, fn(sl)) for sl in chunks]``, on :data:`THREADS` threads when
    there is more than one chunk."""
    global _POOL
    if THREADS <= 1 or len(chunks) < 2:
        return [(sl, fn(sl)) for sl in chunks]
    if _POOL is None:
        _POOL = ThreadPoolExecutor(THREADS, thread_name_prefix="mtcv-mbar")
    return list(zip(chunks, _POOL.map(fn, chunks), strict=True))


def log_sum_over_samples(u_kn: np.ndarray, log_w: np.ndarray) -> np.ndarray:
    """(K,) ``log sum_n exp(log_w[n] - u_kn[k, n])``, chunked over the samples
    (no K x N temporary; ``log_w`` may be ``-inf``)."""
    def chunk(sl: slice) -> np.ndarray:
        a = log_w[None, sl] - u_kn[:, sl]
        peak = a.max(axis=1)
        finite = np.isfinite(peak)
        if finite.all():  # in place: no second K x chunk temporary
            np.subtract(a, peak[:, None], out=a)
            np.exp(a, out=a)
            return peak + np.log(a.sum(axis=1))
        part = np.full(len(peak), -np.inf)
        part[finite] = peak[finite] + np.log(
            np.exp(a[finite] - peak[finite, None]).sum(axis=1))
        return part

    out = np.full(u_kn.shape[0], -np.inf)
    for _, part in _map_chunks(chunk, _column_chunks(u_kn)):
        out = np.logaddexp(out, part)
    return out


def mbar_hessian(u_kn: np.ndarray, N_k: np.ndarray, f_k: np.ndarray) -> np.ndarray:
    """(K, K) Hessian of MBAR's objective at ``f_k``:
    ``diag(sum_n W_kn) - W W^T``."""
    n_k = np.asarray(N_k, float)
    _, _, expected, wwt = _evaluate(np.asarray(u_kn, float), np.log(n_k), n_k,
                                    np.asarray(f_k, float), hessian=True)
    assert wwt is not None
    return np.diag(expected) - wwt


def coarse_start(u_kn: np.ndarray, N_k: np.ndarray, *, per_state: int = 20) -> np.ndarray:
    """Starting free energies for a large problem: MBAR solved on at most
    ``per_state`` evenly spaced samples of each state. The columns of
    ``u_kn`` must be grouped by state in the order of ``N_k`` (state 0's
    samples first). Returns (K,) f_k with f_k[0] = 0."""
    n_k = np.asarray(N_k, int)
    starts = np.concatenate([[0], np.cumsum(n_k)[:-1]])
    take = [s + np.unique(np.linspace(0, n - 1, min(n, per_state)).astype(int))
            for s, n in zip(starts, n_k, strict=True)]
    idx = np.concatenate(take)
    return solve_mbar(u_kn[:, idx], np.array([len(t) for t in take]), tol=1e-6)


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
           max_iter: int, hessian: np.ndarray | None, weights: np.ndarray | None = None
           ) -> tuple[np.ndarray, np.ndarray]:
    """(f_k, log_den) at the solution; see :func:`solve_mbar` (``weights``:
    sample multiplicities, :func:`_evaluate`)."""
    u_kn = np.asarray(u_kn, float)
    n_k = np.asarray(N_k, float)
    if np.any(n_k <= 0):
        raise ValueError("solve_mbar: every state needs at least one sample")
    log_n_k = np.log(n_k)
    f = np.zeros(len(n_k)) if f_init is None else np.array(f_init, float)
    f -= f[0]
    fixed = hessian
    obj, log_den, expected, wwt = _evaluate(u_kn, log_n_k, n_k, f, hessian=fixed is None,
                                            weights=weights)
    for _ in range(max_iter):
        grad = expected - n_k
        if np.max(np.abs(grad / n_k)) < tol:
            break
        use_fixed = fixed is not None
        if not use_fixed and wwt is None:
            wwt = _evaluate(u_kn, log_n_k, n_k, f, hessian=True, weights=weights)[3]
        hess = fixed if use_fixed else np.diag(expected) - wwt
        try:
            step = np.linalg.solve(hess[1:, 1:], -grad[1:])
        except np.linalg.LinAlgError:
            step = np.linalg.lstsq(hess[1:, 1:], -grad[1:], rcond=None)[0]
        accepted = False
        t = 1.0
        while t >= 1e-6:
            trial = f.copy()
            trial[1:] += t * step
            obj_t, den_t, exp_t, _ = _evaluate(u_kn, log_n_k, n_k, trial, weights=weights)
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
                trial = _self_consistent_step(u_kn, log_den, trial, weights)
                obj_t, den_t, exp_t, _ = _evaluate(u_kn, log_n_k, n_k, trial,
                                                   weights=weights)
                log_den = den_t
            if not obj_t < obj - 1e-12 * max(1.0, abs(obj)):
                break  # no further decrease at machine precision
        f, obj, log_den, expected, wwt = trial, obj_t, den_t, exp_t, None
    return f, log_den


#: self-consistent iterations taken when a Newton step fails to descend
SELF_CONSISTENT_STEPS = 10


def _self_consistent_step(u_kn: np.ndarray, log_den: np.ndarray, f_k: np.ndarray,
                          weights: np.ndarray | None = None) -> np.ndarray:
    """One self-consistent MBAR update ``f_k' = -log sum_n c_n exp(-u_kn -
    log_den_n)`` (``log_den`` at ``f_k``; ``c_n = weights``, default 1),
    shifted so that ``f'_0 = 0``."""
    f_new = -log_sum_over_samples(u_kn, -log_den + _log(weights))
    return f_new - f_new[0]


def _gram(u_kn: np.ndarray, log_n_k: np.ndarray, f_k: np.ndarray, log_den: np.ndarray,
          u_ln: np.ndarray | None = None, f_l: np.ndarray | None = None) -> np.ndarray:
    """W^T W (chunked) of pymbar's normalised weights ``W[n, k] = exp(f_k -
    u_kn - log_den[n])`` of the K sampled states and, with ``u_ln`` (L, N)
    and their free energies ``f_l``, of L more states: (K + L, K + L)."""
    f_all = f_k if u_ln is None else np.concatenate([f_k, f_l])
    out = np.zeros((len(f_all), len(f_all)))
    for sl in _column_chunks(u_kn):
        u = u_kn[:, sl] if u_ln is None else np.vstack([u_kn[:, sl], u_ln[:, sl]])
        with np.errstate(over="ignore"):
            w = np.exp(f_all[:, None] - u - log_den[None, sl])
        out += w @ w.T
    return out


def _theta(gram: np.ndarray, n_k: np.ndarray) -> np.ndarray:
    """pymbar's asymptotic covariance ``Theta`` of the free energies
    (``svd-ew``, Shirts & Chodera 2008, appendix D) from ``W^T W`` and the
    sample counts (0 for states that were not sampled)."""
    s2, v = np.linalg.eigh(gram)
    s2[s2 < 0.0] = 0.0
    sigma = np.diag(np.sqrt(s2))
    inner = np.identity(len(n_k)) - sigma @ v.T @ np.diag(n_k) @ v @ sigma
    return v @ sigma @ np.linalg.pinv(inner, rcond=1e-10) @ sigma @ v.T


def _error_of_differences(theta: np.ndarray) -> np.ndarray:
    d = np.diag(theta)
    return np.sqrt(np.maximum(d[:, None] + d[None, :] - 2.0 * theta, 0.0))


class ChunkedMBAR:
    """The parts of :class:`pymbar.MBAR` the estimator uses, for a solution
    ``f_k`` found already (:func:`solve_mbar`), in memory bounded by
    ``u_kn`` itself: every pass over the samples is chunked
    (:data:`CHUNK_ELEMENTS`), where pymbar holds several N x K arrays and
    iterates again. Uncertainties are pymbar's asymptotic ones (``svd-ew``
    from ``W^T W``, identical in exact arithmetic; tested against pymbar).

    u_kn: (K, N) reduced potentials; N_k: (K,) samples per state; f_k: (K,)
    the MBAR solution."""

    def __init__(self, u_kn: np.ndarray, N_k: np.ndarray, f_k: np.ndarray) -> None:
        self.u_kn = np.asarray(u_kn, float)
        self.N_k = np.asarray(N_k, float)
        self.f_k = np.asarray(f_k, float) - float(f_k[0])
        self._log_n_k = np.log(self.N_k)
        self._log_den = _evaluate(self.u_kn, self._log_n_k, self.N_k, self.f_k)[1]
        self._gram: np.ndarray | None = None

    def _gram_k(self) -> np.ndarray:
        if self._gram is None:
            self._gram = _gram(self.u_kn, self._log_n_k, self.f_k, self._log_den)
        return self._gram

    def compute_overlap(self) -> dict[str, np.ndarray]:
        """``{"matrix": O}``, ``O[i, j] = N_j sum_n W_ni W_nj`` (pymbar's)."""
        return {"matrix": self.N_k[None, :] * self._gram_k()}

    def compute_free_energy_differences(self) -> dict[str, np.ndarray]:
        """``Delta_f[i, j] = f_j - f_i`` and ``dDelta_f`` (kT)."""
        theta = _theta(self._gram_k(), self.N_k)
        return {"Delta_f": self.f_k[None, :] - self.f_k[:, None],
                "dDelta_f": _error_of_differences(theta)}

    def compute_perturbed_free_energies(self, u_ln: np.ndarray) -> dict[str, np.ndarray]:
        """Free energies of L unsampled states (reduced potentials u_ln (L,
        N), ``inf`` where a sample has no weight): ``Delta_f`` and
        ``dDelta_f`` (L, L), kT."""
        u_ln = np.asarray(u_ln, float)
        f_l = -log_sum_over_samples(u_ln, -self._log_den)
        gram = _gram(self.u_kn, self._log_n_k, self.f_k, self._log_den, u_ln, f_l)
        n_all = np.concatenate([self.N_k, np.zeros(len(f_l))])
        theta = _theta(gram, n_all)[len(self.f_k):, len(self.f_k):]
        return {"Delta_f": f_l[None, :] - f_l[:, None], "dDelta_f": _error_of_differences(theta)}


def unbiased_log_weights(u_kn: np.ndarray, N_k: np.ndarray, f_k: np.ndarray) -> np.ndarray:
    """(N,) normalised log weights of the samples in the unbiased state
    (reduced potential 0): ``log w_n = -log sum_k N_k exp(f_k - u_kn)``,
    shifted so that ``sum_n w_n = 1``."""
    n_k = np.asarray(N_k, float)
    log_den = _evaluate(np.asarray(u_kn, float), np.log(n_k), n_k, np.asarray(f_k, float))[1]
    return _normalised(-log_den)


def solve_unbiased_log_weights(u_kn: np.ndarray, N_k: np.ndarray, f_init: np.ndarray, *,
                               tol: float = 1e-8, hessian: np.ndarray | None = None,
                               weights: np.ndarray | None = None
                               ) -> tuple[np.ndarray, np.ndarray]:
    """Solve MBAR (as :func:`solve_mbar`) and return ``(f_k, log_w)`` with
    the normalised unbiased-state log weights of :func:`unbiased_log_weights`.

    ``weights`` (N,): how many times each sample counts (a bootstrap
    replicate as multiplicities, 0 = not drawn; ``N_k`` are then the drawn
    counts per state); the log weights include them (``-inf`` for samples
    not drawn). The same solution as ``u_kn`` with its columns repeated,
    without the copy."""
    f, log_den = _solve(u_kn, N_k, f_init, tol, 100, hessian, weights)
    return f, _normalised(-log_den + _log(weights))


def _log(weights: np.ndarray | None) -> np.ndarray | float:
    if weights is None:
        return 0.0
    with np.errstate(divide="ignore"):
        return np.log(np.asarray(weights, float))


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


__all__ = ["ChunkedMBAR", "solve_mbar", "mbar_hessian", "coarse_start", "unbiased_log_weights",
           "solve_unbiased_log_weights", "log_sum_over_samples", "histogram_free_energy"]
