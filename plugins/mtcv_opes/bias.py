"""History-dependent biases on a 1D or 2D CV: OPES-metaD and well-tempered
metadynamics, as plain state objects.

A bias is a pure function of the CV between updates: :meth:`HistoryBias.evaluate`
gives V(s) (eV) and dV/ds for any number of CV values, and only
:meth:`HistoryBias.update` (the step callback, every ``pace`` steps, with the
CV values of all walkers at once) changes it, incrementing :attr:`version`.
The engines and the ASE calculator (:mod:`mtcv_opes.calculator`) chain dV/ds
through the CV's autograd.

OPES-metaD (Invernizzi & Parrinello, J. Phys. Chem. Lett. 11, 2731 (2020);
PLUMED's ``OPES_METAD``)::

    P_n(s) = sum_k h_k G(s, c_k, sigma_k) / sum_k w_k,   w_k = exp(beta V_{k-1}(s_k))
    Z_n    = mean over the (compressed) kernels of P_n(c_k)
    V_n(s) = (1 - 1/gamma) kT ln(P_n(s) / Z_n + eps),    eps = exp(-beta dE / (1 - 1/gamma))

with gamma = beta dE (the barrier parameter dE) unless given, Gaussians
truncated at ``cutoff`` widths (default sqrt(2 beta dE / (1 - 1/gamma))),
widths shrinking as sigma_0 (N_eff (d + 2) / 4)^(-1 / (d + 4)) with the
effective sample size N_eff = (1 + sum w)^2 / (1 + sum w^2), heights
w prod(sigma_0 / sigma), and a new kernel merged into an existing one closer
than ``compression_threshold`` of its widths. Reweighting factor: exp(beta V_t(s_t)).

Well-tempered metadynamics (Barducci, Bussi & Parrinello, PRL 100, 020603
(2008)): Gaussians of height h exp(-V(s)/(kT (gamma - 1))) and fixed width;
reweighting factor exp(beta (V_t(s_t) - c(t))) with (Tiwary & Parrinello,
J. Phys. Chem. B 119, 736 (2015))::

    c(t) = kT ln( int ds exp(gamma/(gamma-1) beta V(s,t)) / int ds exp(1/(gamma-1) beta V(s,t)) )

integrated on a fixed grid (``grid_min``/``grid_max``, or one period of a
periodic CV).

Periodic CV dimensions (period > 0) use minimum-image differences.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def min_image(diff: np.ndarray, periods: np.ndarray) -> np.ndarray:
    """``diff`` (..., d) wrapped to [-P/2, P/2) where the period P > 0."""
    if not np.any(periods > 0):
        return diff
    safe = np.where(periods > 0, periods, 1.0)
    return np.where(periods > 0, diff - safe * np.round(diff / safe), diff)


def kernel_sum(s: np.ndarray, centers: np.ndarray, sigmas: np.ndarray, heights: np.ndarray,
               periods: np.ndarray, cutoff: float | None = None,
               chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Sum of Gaussian kernels and its gradient at ``s``.

    s: (n, d); centers, sigmas: (k, d); heights: (k,); periods: (d,); cutoff:
    truncation in widths (the kernel minus its value there, zero beyond; None:
    untruncated). Returns the sum (n,) and its gradient (n, d)."""
    n, d = s.shape
    value = np.zeros(n)
    grad = np.zeros((n, d))
    if len(centers) == 0:
        return value, grad
    shift = math.exp(-0.5 * cutoff**2) if cutoff is not None else 0.0
    for lo in range(0, n, chunk):
        z = min_image(s[lo:lo + chunk, None, :] - centers[None], periods) / sigmas[None]
        d2 = np.einsum("nkd,nkd->nk", z, z)
        g = np.exp(-0.5 * d2)
        if cutoff is not None:
            inside = d2 < cutoff**2
            val = np.where(inside, g - shift, 0.0)
            g = np.where(inside, g, 0.0)
        else:
            val = g
        value[lo:lo + chunk] = val @ heights
        grad[lo:lo + chunk] = -np.einsum("nk,nkd->nd", g * heights[None], z / sigmas[None])
    return value, grad


class HistoryBias:
    """A bias V(s) on a ``dim``-dimensional CV that changes only at
    :meth:`update` (see the module docstring). Subclasses hold their kernels
    in :attr:`centers` (k, d), :attr:`sigmas` (k, d), :attr:`heights` (k,)."""

    #: name of the method (the ``method`` attribute of the samples)
    method = "history"

    def __init__(self, *, dim: int, kT: float, periods: Any = None) -> None:
        if dim not in (1, 2):
            raise ValueError(f"{self.method}: a bias on a {dim}D CV; expected 1 or 2 dimensions")
        self.dim = int(dim)
        self.kT = float(kT)
        self.periods = (np.zeros(dim) if periods is None else
                        np.broadcast_to(np.asarray(periods, float), (dim,)).copy())
        self.centers = np.zeros((0, dim))
        self.sigmas = np.zeros((0, dim))
        self.heights = np.zeros(0)
        #: number of updates so far (the ASE calculator recomputes when it moves)
        self.version = 0
        #: number of kernels deposited (before compression)
        self.n_deposited = 0

    # ----------------------------------------------------------------- use
    def evaluate(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """V (n,) eV and dV/ds (n, d) eV per CV unit at CV values s (n, d)."""
        raise NotImplementedError

    def update(self, s: np.ndarray) -> None:
        """Deposit at the CV values s (m, d) of m walkers (the step callback)."""
        raise NotImplementedError

    def log_weight(self, bias: np.ndarray) -> np.ndarray:
        """ln of the reweighting factor of samples on which the current bias is
        ``bias`` (eV)."""
        raise NotImplementedError

    def free_energy_estimate(self, s: np.ndarray) -> np.ndarray:
        """F(s) (eV, up to a constant) implied by the current bias alone."""
        raise NotImplementedError

    def _check(self, s: np.ndarray) -> np.ndarray:
        s = np.asarray(s, float)
        if s.ndim == 1:
            s = s[:, None] if self.dim == 1 else s[None]
        if s.ndim != 2 or s.shape[1] != self.dim:
            raise ValueError(f"{self.method}: CV values of shape {np.shape(s)}; expected "
                             f"(n, {self.dim})")
        return s

    # ------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        """Everything that defines the bias now: arrays and scalars (a
        checkpoint; :meth:`set_state` restores it exactly)."""
        return {"centers": self.centers.copy(), "sigmas": self.sigmas.copy(),
                "heights": self.heights.copy(), "version": self.version,
                "n_deposited": self.n_deposited}

    def set_state(self, state: dict[str, Any]) -> None:
        self.centers = np.asarray(state["centers"], float).reshape(-1, self.dim)
        self.sigmas = np.asarray(state["sigmas"], float).reshape(-1, self.dim)
        self.heights = np.asarray(state["heights"], float).reshape(-1)
        self.version = int(state["version"])
        self.n_deposited = int(state["n_deposited"])


class OpesBias(HistoryBias):
    """OPES-metaD (see the module docstring).

    barrier_eV: the barrier parameter dE, eV; sigma: (d,) initial kernel
    widths, CV units; biasfactor: gamma (None: beta dE); epsilon (None:
    exp(-beta dE / (1 - 1/gamma))); cutoff: truncation in widths (None: the
    default); compression_threshold: merge distance in widths (0: never);
    fixed_sigma: do not shrink the widths.

    explore: the OPES-explore variant (Invernizzi, Piaggi & Parrinello, PRX
    12, 041034 (2022); PLUMED's ``OPES_METAD_EXPLORE``): the kernels estimate
    the *sampled* distribution (every kernel weight 1, normalised by their
    number, widths shrinking with it) and V = (gamma - 1) kT ln(P/Z + eps),
    eps = exp(-beta dE / (gamma - 1)); the sampled distribution tends to the
    well-tempered p^(1/gamma). Early kernels then carry no weight from a bias
    that was still wrong, at the price of a slower convergence of the bias
    itself; reweighting is the same, exp(beta V_t(s_t))."""

    method = "opes"

    def __init__(self, *, dim: int, kT: float, barrier_eV: float, sigma: Any,
                 periods: Any = None, biasfactor: float | None = None,
                 epsilon: float | None = None, cutoff: float | None = None,
                 compression_threshold: float = 1.0, fixed_sigma: bool = False,
                 explore: bool = False) -> None:
        super().__init__(dim=dim, kT=kT, periods=periods)
        self.explore = bool(explore)
        if not barrier_eV > 0:
            raise ValueError(f"opes: barrier_eV must be > 0, got {barrier_eV!r}")
        self.barrier = float(barrier_eV)
        self.gamma = float(biasfactor) if biasfactor is not None else self.barrier / self.kT
        if not self.gamma > 1:
            raise ValueError(f"opes: the bias factor must be > 1, got {self.gamma!r} (a barrier "
                             f"parameter of {self.barrier} eV is {self.barrier / self.kT:.2f} kT; "
                             "raise it or give biasfactor)")
        self.prefactor = ((self.gamma - 1.0) if self.explore
                          else (1.0 - 1.0 / self.gamma)) * self.kT  # eV
        self.epsilon = (float(epsilon) if epsilon is not None
                        else math.exp(-self.barrier / self.prefactor))
        self.cutoff = (float(cutoff) if cutoff is not None
                       else math.sqrt(2.0 * self.barrier / self.prefactor))
        self.sigma0 = np.broadcast_to(np.asarray(sigma, float), (dim,)).copy()
        if not np.all(self.sigma0 > 0):
            raise ValueError(f"opes: sigma must be > 0, got {self.sigma0.tolist()}")
        self.threshold = float(compression_threshold)
        self.fixed_sigma = bool(fixed_sigma)
        self.sum_w = 0.0
        self.sum_w2 = 0.0
        self.zed = 1.0

    def _prob(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k, dk = kernel_sum(s, self.centers, self.sigmas, self.heights, self.periods, self.cutoff)
        return k / self.sum_w, dk / self.sum_w

    def evaluate(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self._check(s)
        if len(self.heights) == 0:
            return np.zeros(len(s)), np.zeros_like(s)
        p, dp = self._prob(s)
        arg = p / self.zed + self.epsilon
        return self.prefactor * np.log(arg), self.prefactor * (dp / self.zed) / arg[:, None]

    def log_weight(self, bias: np.ndarray) -> np.ndarray:
        return np.asarray(bias, float) / self.kT

    def free_energy_estimate(self, s: np.ndarray) -> np.ndarray:
        """F = -V / (1 - 1/gamma) (OPES converges to a bias with this F)."""
        v, _ = self.evaluate(s)
        return -v / (1.0 - 1.0 / self.gamma)

    def current_sigma(self) -> np.ndarray:
        """(d,) the width a kernel deposited now would get."""
        if self.fixed_sigma:
            return self.sigma0.copy()
        n_eff = (1.0 + self.sum_w) ** 2 / (1.0 + self.sum_w2)
        return self.sigma0 * (n_eff * (self.dim + 2) / 4.0) ** (-1.0 / (self.dim + 4))

    def update(self, s: np.ndarray) -> None:
        s = self._check(s)
        v, _ = self.evaluate(s)
        # explore: the kernels estimate the sampled distribution, every one weight 1
        w = np.ones(len(s)) if self.explore else np.exp(v / self.kT)
        self.sum_w += float(w.sum())
        self.sum_w2 += float((w**2).sum())
        sigma = self.current_sigma()
        height = w * float(np.prod(self.sigma0 / sigma))
        for c, h in zip(s, height, strict=True):
            self._add_kernel(c, sigma, float(h))
        self.n_deposited += len(s)
        # normalisation: the mean probability over the compressed kernels
        p, _ = self._prob(self.centers)
        self.zed = float(p.mean())
        self.version += 1

    def _add_kernel(self, center: np.ndarray, sigma: np.ndarray, height: float) -> None:
        if self.threshold > 0 and len(self.heights):
            z = min_image(center[None] - self.centers, self.periods) / self.sigmas
            d2 = (z**2).sum(axis=1)
            j = int(np.argmin(d2))
            if d2[j] < self.threshold**2:
                h1, c1, s1 = self.heights[j], self.centers[j], self.sigmas[j]
                h = h1 + height
                c2 = c1 + min_image(center - c1, self.periods)  # nearest image of the new one
                c = (h1 * c1 + height * c2) / h
                var = (h1 * (s1**2 + c1**2) + height * (sigma**2 + c2**2)) / h - c**2
                c = min_image(c, self.periods)  # back into [-P/2, P/2] on periodic axes
                self.heights[j], self.centers[j] = h, c
                self.sigmas[j] = np.sqrt(np.maximum(var, 1e-300))
                return
        self.centers = np.vstack([self.centers, center[None]])
        self.sigmas = np.vstack([self.sigmas, sigma[None]])
        self.heights = np.append(self.heights, height)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "sum_w": self.sum_w, "sum_w2": self.sum_w2,
                "zed": self.zed}

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.sum_w, self.sum_w2 = float(state["sum_w"]), float(state["sum_w2"])
        self.zed = float(state["zed"])


class KernelGrid:
    """A sum of kernels tabulated on a regular grid, for O(1) evaluation per
    point (metadynamics deposits thousands of kernels): the value and its
    analytic gradient at the nodes, multilinear interpolation between them;
    points outside the grid (non-periodic dimensions) are evaluated exactly
    by the caller. lo, hi: (d,) range; n: (d,) nodes; periods: (d,) (a
    periodic dimension spans its period, nodes at -P/2 + i P / n)."""

    def __init__(self, lo: np.ndarray, hi: np.ndarray, n: np.ndarray,
                 periods: np.ndarray) -> None:
        self.periods = np.asarray(periods, float)
        self.lo = np.where(self.periods > 0, -self.periods / 2, lo).astype(float)
        self.n = np.asarray(n, int)
        span = np.where(self.periods > 0, self.periods, np.asarray(hi, float) - self.lo)
        self.h = span / np.where(self.periods > 0, self.n, self.n - 1)
        axes = [self.lo[k] + self.h[k] * np.arange(self.n[k]) for k in range(len(self.n))]
        self.points = np.stack([g.ravel() for g in np.meshgrid(*axes, indexing="ij")], axis=1)
        self.value = np.zeros(len(self.points))
        self.grad = np.zeros_like(self.points)

    def add(self, centers: np.ndarray, sigmas: np.ndarray, heights: np.ndarray) -> None:
        v, g = kernel_sum(self.points, centers, sigmas, heights, self.periods)
        self.value += v
        self.grad += g

    def inside(self, s: np.ndarray) -> np.ndarray:
        """(n,) bool: points the grid covers."""
        hi = self.lo + self.h * (self.n - 1)
        ok = (s >= self.lo) & (s <= hi)
        return np.all(ok | (self.periods > 0), axis=1)

    def interpolate(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Value (n,) and gradient (n, d) at points the grid covers."""
        d = s.shape[1]
        u = (s - self.lo) / self.h
        if np.any(self.periods > 0):
            u = np.where(self.periods > 0, np.mod(u, self.n), u)
        i0 = np.floor(u).astype(int)
        t = u - i0
        periodic = self.periods > 0
        i0 = np.where(periodic, i0 % self.n, np.clip(i0, 0, self.n - 2))
        t = np.where(periodic, t, (u - i0))
        i1 = np.where(periodic, (i0 + 1) % self.n, i0 + 1)
        value = np.zeros(len(s))
        grad = np.zeros((len(s), d))
        strides = np.cumprod([1, *self.n[::-1][:-1]])[::-1]
        for corner in range(2**d):
            bits = [(corner >> k) & 1 for k in range(d)]
            idx = np.zeros(len(s), dtype=np.int64)
            w = np.ones(len(s))
            for k in range(d):
                idx += np.where(bits[k], i1[:, k], i0[:, k]) * strides[k]
                w *= np.where(bits[k], t[:, k], 1.0 - t[:, k])
            value += w * self.value[idx]
            grad += w[:, None] * self.grad[idx]
        return value, grad


class MetadBias(HistoryBias):
    """Well-tempered metadynamics (see the module docstring).

    height_eV: initial Gaussian height, eV; sigma: (d,) widths, CV units;
    biasfactor: gamma > 1; grid_min, grid_max: (d,) the range of the table
    (:attr:`table`) the bias is read from and c(t) is integrated over (a
    periodic dimension: its period, whatever these say); grid_points: grid
    nodes per dimension (at least; nodes are sigma / 5 apart)."""

    method = "metad"

    def __init__(self, *, dim: int, kT: float, height_eV: float, sigma: Any, biasfactor: float,
                 grid_min: Any, grid_max: Any, periods: Any = None,
                 grid_points: int = 300) -> None:
        super().__init__(dim=dim, kT=kT, periods=periods)
        if not height_eV > 0:
            raise ValueError(f"metad: height_eV must be > 0, got {height_eV!r}")
        if not biasfactor > 1:
            raise ValueError(f"metad: biasfactor must be > 1, got {biasfactor!r}")
        self.height = float(height_eV)
        self.gamma = float(biasfactor)
        self.sigma0 = np.broadcast_to(np.asarray(sigma, float), (dim,)).copy()
        if not np.all(self.sigma0 > 0):
            raise ValueError(f"metad: sigma must be > 0, got {self.sigma0.tolist()}")
        lo = np.broadcast_to(np.asarray(grid_min, float), (dim,)).copy()
        hi = np.broadcast_to(np.asarray(grid_max, float), (dim,)).copy()
        lo = np.where(self.periods > 0, -self.periods / 2, lo)
        hi = np.where(self.periods > 0, self.periods / 2, hi)
        if not np.all(hi > lo):
            raise ValueError(f"metad: grid_max {hi.tolist()} must exceed grid_min {lo.tolist()}")
        # nodes: sigma / 5 apart (PLUMED's default), at least grid_points per dimension
        span = np.where(self.periods > 0, self.periods, hi - lo)
        n = np.maximum(np.ceil(span / (self.sigma0 / 5.0)).astype(int) + 1, int(grid_points))
        self.table = KernelGrid(lo, hi, n, self.periods)
        self.c_t = 0.0

    def evaluate(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        s = self._check(s)
        inside = self.table.inside(s)
        if inside.all():
            return self.table.interpolate(s)
        v, g = np.zeros(len(s)), np.zeros_like(s)
        if inside.any():
            v[inside], g[inside] = self.table.interpolate(s[inside])
        v[~inside], g[~inside] = kernel_sum(s[~inside], self.centers, self.sigmas, self.heights,
                                            self.periods)
        return v, g

    def evaluate_exact(self, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """V and dV/ds by the sum over every kernel (the reference of the grid)."""
        return kernel_sum(self._check(s), self.centers, self.sigmas, self.heights, self.periods)

    def log_weight(self, bias: np.ndarray) -> np.ndarray:
        return (np.asarray(bias, float) - self.c_t) / self.kT

    def free_energy_estimate(self, s: np.ndarray) -> np.ndarray:
        """F = -gamma / (gamma - 1) V (the well-tempered limit)."""
        v, _ = self.evaluate(s)
        return -self.gamma / (self.gamma - 1.0) * v

    def update(self, s: np.ndarray) -> None:
        s = self._check(s)
        v, _ = self.evaluate(s)
        h = self.height * np.exp(-v / (self.kT * (self.gamma - 1.0)))
        sig = np.repeat(self.sigma0[None], len(s), axis=0)
        self.centers = np.vstack([self.centers, s])
        self.sigmas = np.vstack([self.sigmas, sig])
        self.heights = np.concatenate([self.heights, h])
        self.table.add(s, sig, h)
        self.n_deposited += len(s)
        b = self.table.value / self.kT
        self.c_t = self.kT * (_logsumexp(self.gamma / (self.gamma - 1.0) * b)
                              - _logsumexp(b / (self.gamma - 1.0)))
        self.version += 1

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.c_t = float(state["c_t"])
        self.table.value[:] = 0.0
        self.table.grad[:] = 0.0
        # the same kernels added in the same groups give the same table
        # (up to rounding): rebuild it in one pass
        self.table.add(self.centers, self.sigmas, self.heights)
        if "table_value" in state:  # bitwise the table of the run
            self.table.value[:] = np.asarray(state["table_value"], float)
            self.table.grad[:] = np.asarray(state["table_grad"], float).reshape(
                self.table.grad.shape)

    def state(self) -> dict[str, Any]:
        return {**super().state(), "c_t": self.c_t, "table_value": self.table.value.copy(),
                "table_grad": self.table.grad.copy()}


def _logsumexp(a: np.ndarray) -> float:
    m = float(np.max(a))
    return m + math.log(float(np.exp(a - m).sum()))


__all__ = ["HistoryBias", "OpesBias", "MetadBias", "kernel_sum", "min_image"]
