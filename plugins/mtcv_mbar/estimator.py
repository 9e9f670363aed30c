"""MBAR free energies from umbrella sampling (``mtcv.umbrella/1`` ->
``mtcv.fes/1``).

Method
------
1. **Decorrelation.** For each window the statistical inefficiency ``g`` of
   the CV series is estimated with
   :func:`pymbar.timeseries.statistical_inefficiency` (the largest over the
   CV dimensions; over the independent walkers together with
   ``statistical_inefficiency_multiple`` when the dataset says how many
   walkers each window holds), and, with ``decorrelate=True``, the series is
   subsampled with :func:`pymbar.timeseries.subsample_correlated_data`.
   A window whose walkers' mean CV values disagree beyond what their own
   series allow (:func:`mtcv_core.ergodicity.walker_excess`, ``p <
   walker_excess_p``: a mode slower than the run, orthogonal to the CV,
   keeps each walker near its start) has an *inflation*: the variance of
   the mean of its kept samples from the scatter of its walkers' means,
   against what resampling them one by one says (at least 1): its samples
   are worth that many times fewer. Every sample still enters the
   estimate; the bootstrap (5.) draws that many times fewer from it.
2. **MBAR.** Windows that have a stiffer window at the same centre (the
   sampler's refinement replaced them: ``drop_superseded``) and windows
   whose walkers disagree (:mod:`mtcv_core.ergodicity`) are left out; of
   each other window at most ``max_samples_per_window``
   evenly spaced uncorrelated samples are kept. The reduced potentials
   ``u_kn = beta bias_k(s_n)`` of every kept sample in every window
   (``bias_k = sum_d 0.5 k_kd (s_d - c_kd)^2``, minimum image on periodic
   dimensions) are solved with :class:`pymbar.MBAR`, started from a
   damped-Newton solution. The unbiased state has ``u = 0``: the unbiased
   potential is common to all windows and cancels.
3. **PMF.** Histogram free energies ``F_i = -kT ln P(s in bin i)`` on
   ``n_bins`` equal bins spanning the sample range (per dimension), zero at
   the lowest bin. 1D: :class:`pymbar.FES` (``fes_type="histogram"``,
   ``reference_point="from-lowest"``, analytical uncertainties). 2D: the
   same estimator computed directly (pymbar's analytical histogram
   uncertainties need an ``N x (K + n_bins^2)`` decomposition), with
   bootstrap uncertainties. Empty bins are NaN.
4. **Basins.** ``F_b = -kT ln P(s in basin b)`` from MBAR by perturbing the
   unbiased state to "unbiased, restricted to basin b" (``u = 0`` inside,
   ``+inf`` outside; :meth:`pymbar.MBAR.compute_perturbed_free_energies`),
   which gives ``delta_F[a, b] = F_b - F_a`` with its analytical uncertainty,
   covariances included.
5. **Barriers.** On the PMF grid, the bins whose centres lie in a basin form
   its region; ``barrier[a, b]`` is the minimax level between the lowest
   bins of regions a and b (the lowest path, over neighbouring bins, of
   its highest bin; :mod:`mtcv_core.fes_paths`) minus the lowest bin of a.
   In 1D this is the maximum of the PMF between the two minima. Empty bins
   are impassable. Uncertainty: standard deviation over ``n_bootstraps``
   replicates (samples resampled with replacement within each window, MBAR
   re-solved, PMF and barrier recomputed); a window with inflation ``r``
   contributes ``n_k / r`` draws to each replicate (an m-out-of-n
   bootstrap: its variance comes out ``r`` times larger), and when any
   window is inflated the basin free-energy errors are the larger of
   MBAR's analytical ones (which take every sample as independent) and
   the bootstrap's (which sees the walkers, but from few draws).
   With ``barrier_bias_correction`` the barrier is bias-corrected by the
   same replicates, ``B - (mean(B*) - B)``: its basin bottom is the lowest
   of several noisy bins, so the plain estimate sits high by a fraction of
   its error (recorded as ``barrier_bias``).

Units: energies in eV (``kT`` times the dimensionless MBAR values), CV in
the dataset's ``cv_units``.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

import numpy as np
import xarray as xr

from mtcv_core.config import doc, nonneg, positive
from mtcv_core.ergodicity import statistical_inefficiency, walker_excess, walker_spread
from mtcv_core.fes_paths import basin_barriers
from mtcv_core.interfaces import Estimator
from mtcv_core.schema import SCHEMA_ATTR
from mtcv_core.schema_umbrella import FES_SCHEMA, cv_periods, validate_umbrella
from mtcv_core.units import KB_EV_PER_K
from mtcv_mbar.solver import (
    ChunkedMBAR,
    coarse_start,
    histogram_free_energy,
    log_sum_over_samples,
    mbar_hessian,
    solve_mbar,
    solve_unbiased_log_weights,
    unbiased_log_weights,
)

#: Boltzmann constant, eV/K (ASE's value, as used by mtcv's thermostats)

BasinOf = Callable[[np.ndarray], np.ndarray]


@dataclass(kw_only=True)
class MBAREstimator(Estimator):
    """MBAR on umbrella windows: PMF, window overlap, basin free energies,
    free-energy differences and barriers with uncertainties (see the module
    docstring for the method)."""

    name: ClassVar[str] = "mbar"
    n_bins: int = positive(50, "PMF histogram bins per CV dimension")
    decorrelate: bool = doc(True, "subsample each window by its statistical inefficiency")
    n_bootstraps: int = nonneg(50, "bootstrap replicates for barrier (and 2D PMF) errors; "
                                   "0 = none (errors NaN)")
    seed: int = doc(0, "seed of the bootstrap resampling")
    max_samples_per_window: int = nonneg(1000, "after decorrelation, keep at most this "
                                              "many samples per window (evenly spaced; "
                                              "0 = all): bounds the MBAR cost of many "
                                              "windows")
    max_walker_spread: float = nonneg(4.0, "drop windows whose walkers' mean CV values "
                                           "differ by more than this many within-walker "
                                           "standard deviations (0 = keep every window)")
    drop_superseded: bool = doc(True, "drop an unstable window (samples wider than 1.5 "
                                      "thermal widths, or 3x as correlated as the median "
                                      "window) when a stiffer window sits at its centre "
                                      "(within a quarter of that one's thermal width): "
                                      "the sampler put it "
                                      "there because the softer one was unstable (a "
                                      "soft window on a barrier top is bimodal, and its "
                                      "two modes keep the populations of its starts)")
    walker_excess_p: float = field(default=0.01, metadata={
        "min": 0.0, "max": 1.0,
        "doc": "a window whose walkers' mean CV values disagree beyond their own "
               "statistics (mtcv_core.ergodicity.walker_excess p below this) counts "
               "fewer samples in the bootstrap errors, as many fewer as the variance of "
               "its walker means is larger than its g says, so the errors see the "
               "spread of its walkers (0 = off; unused with bootstrap_blocks, which "
               "resamples whole walkers)"})
    barrier_bias_correction: bool = doc(False, "subtract the bootstrap's estimate of the "
                                               "barrier's bias (mean of the replicates "
                                               "minus the estimate): the lowest of many "
                                               "noisy bins sits below the true basin "
                                               "bottom, so a barrier read off a noisy PMF "
                                               "comes out high by a fraction of its error")
    diagonal_moves: bool = doc(False, "minimax paths on a 2D PMF may step diagonally "
                                      "(8-neighbourhood) instead of 4-neighbourhood")
    bootstrap_blocks: int = field(default=0, metadata={
        "min": 0, "doc": "> 0: resample whole blocks of each window: its walkers, or (with "
                         "fewer walkers than this) each walker's series cut into contiguous "
                         "blocks, at least this many per window; the bootstrap then also "
                         "gives the basin free-energy errors. 0 (default, until "
                         "benchmarks/uncertainty_calibration.py has compared the two): "
                         "resample single uncorrelated samples, dF errors analytical"})

    def estimate(
        self,
        samples: xr.Dataset,
        *,
        temperature_K: float | None = None,
        basins: Mapping[str, Sequence[float] | Sequence[Sequence[float]]] | None = None,
        basin_of: BasinOf | None = None,
        basin_names: Sequence[str] | None = None,
    ) -> xr.Dataset:
        """Free energies from an umbrella dataset.

        Parameters
        ----------
        samples : xr.Dataset
            An ``mtcv.umbrella/1`` dataset (validated here).
        temperature_K : float, optional
            Must equal the dataset's ``temperature_K`` if given (reweighting
            to another temperature is not supported).
        basins : mapping name -> (lo, hi), optional
            Basins as intervals ``lo <= s < hi`` of a 1D CV (cv units); for
            an n-D CV, a box ``((lo_1, hi_1), ..., (lo_d, hi_d))``.
        basin_of : callable, optional
            Instead of ``basins``: maps CV values ``(n, n_cv)`` to ``(n,)``
            int basin labels (-1: no basin); used on the samples and on the
            bin centres.
        basin_names : sequence of str, optional
            Names of the labels of ``basin_of`` (default: the dataset's
            ``basins`` attribute, else ``"0", "1", ...``).

        Returns
        -------
        xr.Dataset
            ``mtcv.fes/1``: ``pmf``/``pmf_err`` (eV) on ``bin`` (1D, with
            ``bin_center``) or ``(bin_x, bin_y)`` (2D, with
            ``bin_center_x``/``bin_center_y``), ``bin_count``, ``overlap``
            (window, window_), ``statistical_inefficiency`` and ``n_used``
            (window), ``window_free_energy`` (eV); with basins also
            ``basin_free_energy``/``_err`` (basin), ``basin_minimum`` (basin,
            cv), ``delta_F``/``_err`` and ``barrier``/``_err`` (basin_from,
            basin_to; eV, NaN where undefined). Attributes: ``temperature_K``,
            ``kT_eV``, ``min_neighbour_overlap``, ``overlap_bottleneck``, ...
        """
        from mtcv_core.quiet import quiet_loggers
        from mtcv_core.schema import with_index_coords

        with quiet_loggers("pymbar"):
            out = self._estimate(samples, temperature_K=temperature_K, basins=basins,
                                 basin_of=basin_of, basin_names=basin_names)
        return with_index_coords(out, {"cv": str(out.attrs.get("cv_names", "")).split()})

    def _estimate(self, samples: xr.Dataset, *, temperature_K: float | None,
                  basins: Mapping[str, Any] | None, basin_of: BasinOf | None,
                  basin_names: Sequence[str] | None) -> xr.Dataset:
        import pymbar

        ds = validate_umbrella(samples, where="mbar: samples")
        temp = float(ds.attrs["temperature_K"])
        if temperature_K is not None and not math.isclose(float(temperature_K), temp,
                                                          rel_tol=1e-9):
            raise ValueError(f"mbar: the windows were sampled at {temp} K; reweighting to "
                             f"temperature_K={temperature_K} is not supported")
        if basins is not None and basin_of is not None:
            raise ValueError("mbar: give either basins (intervals) or basin_of, not both")
        kt = KB_EV_PER_K * temp
        n_cv = ds.sizes["cv"]
        if n_cv not in (1, 2):
            raise ValueError(f"mbar: the PMF is computed for 1 or 2 CV dimensions, got {n_cv}")
        walkers = int(ds.attrs.get("walkers", 1))
        ds, superseded = self._drop_superseded(ds)
        ds, dropped = self._drop_inconsistent(ds, walkers)
        periods = cv_periods(ds)
        isolated: list[int] = []
        while True:
            centers = ds["center"].values.astype(float)
            springs = ds["spring_constant"].values.astype(float)
            # 1. decorrelation
            g_k, n_k, s_n, blocks, inflation = self._uncorrelated_samples(ds, walkers)
            # 2. MBAR
            u_kn = _reduced_bias(s_n, centers, springs, periods, scale=1.0 / kt)
            mbar = _solve(u_kn, n_k)
            overlap = np.asarray(mbar.compute_overlap()["matrix"], float)
            # a window (or a few) MBAR cannot tie to the rest has no defined
            # free energy: its samples would weigh arbitrarily (a stiff window
            # the refiner put where a soft one was unstable, which that one's
            # grid neighbours bridge without it)
            drop = _isolated_windows(overlap)
            if not drop.any():
                break
            ids = ds["window"].values if "window" in ds.coords else np.arange(len(drop))
            isolated += [int(i) for i in ids[drop]]
            warnings.warn(f"mbar: dropped windows {[int(i) for i in ids[drop]]}: they overlap "
                          f"the other windows by less than {ISOLATED_OVERLAP:g} (their free "
                          "energy is not determined)", RuntimeWarning, stacklevel=3)
            ds = ds.isel(window=np.flatnonzero(~drop))
        f_k = np.asarray(mbar.f_k, float)
        dfk = mbar.compute_free_energy_differences()
        log_w = unbiased_log_weights(u_kn, n_k, f_k)
        residual = _self_consistency(u_kn, log_w, f_k)

        # 3. PMF grid
        edges, shape, cell, counts, centers_1d = self._bins(s_n)
        grid_points = np.stack([g.ravel() for g in np.meshgrid(*centers_1d, indexing="ij")],
                               axis=1)
        pmf_kt = histogram_free_energy(cell, log_w, counts.size).reshape(shape)
        pmf_kt -= np.nanmin(pmf_kt)
        pmf_err_kt = np.full(shape, np.nan)
        if n_cv == 1:
            pmf_kt, pmf_err_kt = _pymbar_fes_1d(pymbar, u_kn, n_k, f_k, s_n[:, 0], edges[0],
                                                centers_1d[0], counts)

        # 4. basins
        names, labels_n, labels_grid = _basin_labels(basins, basin_of, basin_names, ds,
                                                     s_n, grid_points, n_cv)
        periodic = tuple(bool(p > 0) and _spans_period(e, p) for e, p in zip(edges, periods,
                                                                              strict=True))
        n_b = len(names)
        basin_f = basin_df = delta = delta_err = barrier = None
        if n_b:
            basin_f, basin_df, delta, delta_err = _basin_free_energies(mbar, labels_n, n_b)
            labels_grid = labels_grid.reshape(shape)
            barrier, minima = basin_barriers(pmf_kt, labels_grid, n_b,
                                             diagonal=self.diagonal_moves, periodic=periodic)

        # 5. bootstrap
        barrier_err = np.full((n_b, n_b), np.nan)
        barrier_bias = np.full((n_b, n_b), np.nan)
        if self.n_bootstraps >= 2 and (n_b or n_cv == 2):
            boot_pmf, boot_bar, boot_delta = self._bootstrap(
                u_kn, n_k, f_k, cell, counts.size, shape, labels_grid if n_b else None, n_b,
                periodic, blocks=blocks, labels_n=labels_n if n_b else None,
                inflation=inflation)
            if n_b:
                barrier_err = _nanstd(boot_bar, barrier)
                barrier_bias = _bootstrap_bias(boot_bar, barrier)
                if self.barrier_bias_correction:
                    barrier = barrier - np.nan_to_num(barrier_bias)
                # blocks and inflated windows see what MBAR's covariance cannot
                if self.bootstrap_blocks > 0:
                    delta_err = _nanstd(boot_delta, delta)
                elif np.any(inflation > 1.0):
                    # the larger of the two: the analytical error weighs every
                    # sample, the bootstrap (few draws of an inflated window,
                    # itself noisy) sees its walkers
                    delta_err = np.fmax(delta_err, _nanstd(boot_delta, delta))
            if n_cv == 2:
                ref = np.unravel_index(int(np.nanargmin(pmf_kt)), shape)
                rel = boot_pmf - boot_pmf[(slice(None), *ref)][:, None, None]
                pmf_err_kt = _nanstd(rel, pmf_kt)

        out = self._assemble(ds, kt, temp, edges, centers_1d, pmf_kt, pmf_err_kt, counts,
                             overlap, g_k, n_k, f_k, dfk, centers, names, inflation)
        out.attrs["windows_dropped"] = json.dumps(dropped)
        out.attrs["windows_superseded"] = json.dumps(superseded)
        out.attrs["windows_isolated"] = json.dumps(isolated)
        out.attrs["solver_residual_kT"] = residual
        out.attrs["solver_converged"] = int(residual < SOLVER_TOLERANCE_KT)
        if n_b:
            basin_min = np.full((n_b, n_cv), np.nan)
            for b, m in enumerate(minima):
                if m is not None:
                    basin_min[b] = [centers_1d[d][m[d]] for d in range(n_cv)]
            _add_basins(out, names, kt, basin_f, basin_df, delta, delta_err, barrier,
                        barrier_err, basin_min, str(ds.attrs["cv_units"]))
            out["barrier_bias"] = (("basin_from", "basin_to"), barrier_bias * kt, {
                "units": "eV", "long_name": "bootstrap estimate of the bias of barrier",
                "description": "mean of the bootstrap barriers minus the uncorrected "
                               "estimate; subtracted from barrier when "
                               "barrier_bias_correction is on"})
        return out

    # ------------------------------------------------------------------
    def _uncorrelated_samples(self, ds: xr.Dataset, walkers: int
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray],
                                         np.ndarray]:
        """Per window the statistical inefficiency g_k and its uncorrelated
        samples (thinned to ``max_samples_per_window``): returns g_k
        (n_windows,), n_k (n_windows,), the samples concatenated (N, d), per
        window the resampling block of each kept sample (:func:`_block_ids`)
        and its walker inflation (n_windows,; 1 where the walkers agree)."""
        cv = ds["cv_values"].values
        n_samples = ds["n_samples"].values.astype(int)
        g_k = np.ones(ds.sizes["window"])
        inflation = np.ones(ds.sizes["window"])
        kept: list[np.ndarray] = []
        blocks: list[np.ndarray] = []
        for k in range(ds.sizes["window"]):
            series = cv[k, : n_samples[k]]
            g_k[k], idx = _decorrelate(series, walkers, self.decorrelate)
            if 0 < self.max_samples_per_window < len(idx):
                idx = idx[np.linspace(0, len(idx) - 1, self.max_samples_per_window).astype(int)]
            # after thinning: the inflation is relative to the samples MBAR
            # keeps; resampling whole walkers (bootstrap_blocks) sees them already
            if self.walker_excess_p > 0 and walkers >= 2 and self.bootstrap_blocks == 0:
                inflation[k] = _walker_inflation(series, idx, walkers, self.walker_excess_p)
            kept.append(series[idx])
            blocks.append(_block_ids(idx, len(series), walkers, self.bootstrap_blocks))
        n_k = np.array([len(s) for s in kept], dtype=np.int64)
        if np.any(n_k < 10):
            warnings.warn(f"mbar: windows {np.flatnonzero(n_k < 10).tolist()} keep fewer than "
                          "10 uncorrelated samples", RuntimeWarning, stacklevel=4)
        return g_k, n_k, np.concatenate(kept, axis=0), blocks, inflation

    def _bins(self, s_n: np.ndarray) -> tuple[list[np.ndarray], tuple[int, ...], np.ndarray,
                                              np.ndarray, list[np.ndarray]]:
        """The PMF grid for samples (N, d): bin edges per dimension, the grid
        shape, each sample's flat cell index, the counts per cell and the bin
        centres per dimension."""
        n_cv = s_n.shape[1]
        edges = [_edges(s_n[:, d], self.n_bins) for d in range(n_cv)]
        bin_idx = np.stack([np.clip(np.digitize(s_n[:, d], edges[d]) - 1, 0, self.n_bins - 1)
                            for d in range(n_cv)], axis=1)
        shape = (self.n_bins,) * n_cv
        cell = np.ravel_multi_index(tuple(bin_idx.T), shape)
        counts = np.bincount(cell, minlength=int(np.prod(shape))).reshape(shape)
        return edges, shape, cell, counts, [0.5 * (e[1:] + e[:-1]) for e in edges]

    def _drop_superseded(self, ds: xr.Dataset) -> tuple[xr.Dataset, list[int]]:
        """The dataset without the windows a stiffer window supersedes
        (:func:`mtcv_core.ergodicity.superseded_windows`: one exactly at
        their centre, or one near it when they look unstable,
        :func:`~mtcv_core.ergodicity.unstable_windows`), and the ids of those
        dropped."""
        from mtcv_core.ergodicity import superseded_windows, unstable_windows

        if not self.drop_superseded:
            return ds, []
        kt = KB_EV_PER_K * float(ds.attrs["temperature_K"])
        centers, springs = ds["center"].values, ds["spring_constant"].values
        periods = cv_periods(ds)
        if not superseded_windows(centers, springs, kt, periods=periods).any():
            return ds, []  # no stiffer window near any centre: no window statistics needed
        walkers = int(ds.attrs.get("walkers", 1))
        n = ds["n_samples"].values.astype(int)
        samples = [ds["cv_values"].values[w, : n[w]] for w in range(ds.sizes["window"])]
        unstable = unstable_windows(samples, springs, walkers, kt)
        keep = ~superseded_windows(centers, springs, kt, periods=periods, unstable=unstable)
        if keep.all():
            return ds, []
        ids = ds["window"].values if "window" in ds.coords else np.arange(len(keep))
        return ds.isel(window=np.flatnonzero(keep)), [int(i) for i in ids[~keep]]

    def _drop_inconsistent(self, ds: xr.Dataset, walkers: int) -> tuple[xr.Dataset, list[int]]:
        """The dataset without the windows whose walkers disagree (a window
        on an unstable barrier top whose walkers slid into different minima
        does not sample its biased ensemble; MBAR would weight it as if it
        did), and the ids of the dropped windows."""
        if self.max_walker_spread <= 0 or walkers < 2:
            return ds, []
        n = ds["n_samples"].values.astype(int)
        spread = np.array([walker_spread(ds["cv_values"].values[w, : n[w]], walkers)
                           for w in range(ds.sizes["window"])])
        keep = spread <= self.max_walker_spread
        ids = ds["window"].values if "window" in ds.coords else np.arange(len(keep))
        dropped = [int(i) for i in ids[~keep]]
        if keep.sum() < 2:
            raise ValueError(f"mbar: the walkers disagree in all but {int(keep.sum())} of "
                             f"{len(keep)} windows (max_walker_spread="
                             f"{self.max_walker_spread}); the windows are too soft")
        if dropped:
            warnings.warn(f"mbar: dropped windows {dropped}: their walkers disagree (spread > "
                          f"{self.max_walker_spread} standard deviations)", RuntimeWarning,
                          stacklevel=4)
        return (ds.isel(window=np.flatnonzero(keep)) if dropped else ds), dropped

    def _bootstrap(self, u_kn: np.ndarray, n_k: np.ndarray, f_k: np.ndarray, cell: np.ndarray,
                   n_cells: int, shape: tuple[int, ...], labels_grid: np.ndarray | None,
                   n_b: int, periodic: tuple[bool, ...], *, blocks: list[np.ndarray],
                   labels_n: np.ndarray | None = None, inflation: np.ndarray | None = None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Replicates of the PMF (kT, (B, *shape)), barriers and basin
        free-energy differences (kT, (B, n_b, n_b)). Each replicate draws,
        window by window, as many blocks as the window has (``blocks``: the
        block of each kept sample, :func:`_block_ids`), with replacement --
        ``1 / inflation`` as many where the window is inflated -- and solves
        MBAR anew on them."""
        rng = np.random.default_rng(self.seed)
        starts = np.concatenate([[0], np.cumsum(n_k)[:-1]])
        members = [[s + np.flatnonzero(b == u) for u in np.unique(b)]
                   for s, b in zip(starts, blocks, strict=True)]
        hessian = mbar_hessian(u_kn, n_k, f_k)  # reused: replicates lie close to f_k
        inflation = np.ones(len(n_k)) if inflation is None else inflation
        draws = [max(2, math.ceil(len(g) / r)) for g, r in zip(members, inflation, strict=True)]
        pmfs = np.full((self.n_bootstraps, *shape), np.nan)
        bars = np.full((self.n_bootstraps, n_b, n_b), np.nan)
        deltas = np.full((self.n_bootstraps, n_b, n_b), np.nan)
        for b in range(self.n_bootstraps):
            parts = [[groups[i] for i in rng.integers(0, len(groups), n)]
                     for groups, n in zip(members, draws, strict=True)]
            n_b_k = np.array([sum(len(p) for p in ps) for ps in parts], dtype=np.int64)
            idx = np.concatenate([np.concatenate(ps) for ps in parts])
            # the draws as multiplicities: no copy of u_kn's drawn columns
            counts = np.bincount(idx, minlength=u_kn.shape[1]).astype(float)
            _, log_w = solve_unbiased_log_weights(u_kn, n_b_k, f_k, hessian=hessian,
                                                  tol=BOOTSTRAP_TOLERANCE, weights=counts)
            pmf = histogram_free_energy(cell, log_w, n_cells).reshape(shape)
            pmfs[b] = pmf
            if labels_grid is not None:
                bars[b] = basin_barriers(pmf, labels_grid, n_b, diagonal=self.diagonal_moves,
                                         periodic=periodic)[0]
            if labels_n is not None:
                f_basin = histogram_free_energy(np.where(labels_n >= 0, labels_n, n_b),
                                                log_w, n_b + 1)[:n_b]
                deltas[b] = f_basin[None, :] - f_basin[:, None]
        return pmfs, bars, deltas

    def _assemble(self, ds: xr.Dataset, kt: float, temp: float, edges: list[np.ndarray],
                  centers_1d: list[np.ndarray], pmf_kt: np.ndarray, pmf_err_kt: np.ndarray,
                  counts: np.ndarray, overlap: np.ndarray, g_k: np.ndarray, n_k: np.ndarray,
                  f_k: np.ndarray, dfk: Mapping[str, np.ndarray], centers: np.ndarray,
                  names: list[str], inflation: np.ndarray) -> xr.Dataset:
        cv_units = str(ds.attrs["cv_units"])
        n_cv = len(edges)
        cv_names = str(ds.attrs["cv_names"]).split()
        windows = ds["window"].values if "window" in ds.coords else np.arange(len(n_k))
        if n_cv == 1:
            bin_dims: tuple[str, ...] = ("bin",)
            coords: dict[str, Any] = {
                "bin_center": (("bin",), centers_1d[0],
                               {"units": cv_units, "long_name": f"bin centre ({cv_names[0]})"})}
            edge_vars = {"bin_edges": (("bin_edge",), edges[0],
                                       {"units": cv_units, "long_name": "bin edges"})}
        else:
            bin_dims = ("bin_x", "bin_y")
            coords = {f"bin_center_{a}": ((f"bin_{a}",), c, {
                "units": cv_units, "long_name": f"bin centre ({n})"})
                for a, c, n in zip("xy", centers_1d, cv_names, strict=True)}
            edge_vars = {f"bin_edges_{a}": ((f"bin_edge_{a}",), e, {
                "units": cv_units, "long_name": f"bin edges ({n})"})
                for a, e, n in zip("xy", edges, cv_names, strict=True)}
        coords["window"] = ("window", windows)
        coords["window_"] = ("window_", windows)
        data: dict[str, Any] = {
            "pmf": (bin_dims, pmf_kt * kt, {
                "units": "eV", "long_name": "potential of mean force",
                "description": "-kT ln P(bin), zero at the lowest bin; NaN: no samples"}),
            "pmf_err": (bin_dims, pmf_err_kt * kt, {
                "units": "eV", "long_name": "uncertainty of the PMF",
                "description": "one standard error of pmf relative to the lowest bin"}),
            "bin_count": (bin_dims, counts.astype(np.int64), {
                "units": "1", "long_name": "samples per bin (after decorrelation)"}),
            **edge_vars,
            "overlap": (("window", "window_"), overlap, {
                "units": "1", "long_name": "MBAR overlap matrix (rows sum to 1)"}),
            "statistical_inefficiency": (("window",), g_k, {
                "units": "1", "long_name": "statistical inefficiency g of the CV series"}),
            "walker_inflation": (("window",), inflation, {
                "units": "1", "long_name": "variance inflation from walkers that disagree",
                "description": "variance of the mean of the kept samples from the "
                               "scatter of the walkers' means against var / n_used, where "
                               "mtcv_core.ergodicity.walker_excess "
                               "p < walker_excess_p, else 1; the bootstrap draws "
                               "n_used / walker_inflation samples of the window"}),
            "n_used": (("window",), n_k, {
                "units": "1", "long_name": "samples used per window"}),
            "window_free_energy": (("window",), f_k * kt, {
                "units": "eV", "long_name": "free energy of the biased window state",
                "description": "relative to the first window"}),
            "window_free_energy_err": (("window",), np.asarray(dfk["dDelta_f"])[0] * kt, {
                "units": "eV", "long_name": "uncertainty of window_free_energy"}),
            "center": (("window", "cv"), centers, {"units": cv_units,
                                                   "long_name": "window centre"}),
        }
        out = xr.Dataset(data, coords=coords)
        min_nb, bottleneck = _neighbour_overlap(overlap, centers)
        options = {k: v for k, v in asdict(self).items()}
        out.attrs.update({
            SCHEMA_ATTR: FES_SCHEMA,
            "temperature_K": temp,
            "kT_eV": kt,
            "estimator": self.name,
            "estimator_label": "MBAR",
            "estimator_options": json.dumps(options, sort_keys=True),
            "cv_names": " ".join(cv_names),
            "cv_units": cv_units,
            "pmf_method": "histogram (pymbar.FES)" if n_cv == 1 else "histogram",
            "pmf_uncertainty": "analytical" if n_cv == 1 else
                               ("bootstrap" if self.n_bootstraps >= 2 else "none"),
            "barrier_uncertainty": "bootstrap" if self.n_bootstraps >= 2 else "none",
            "barrier_definition": "minimax level between the basins' lowest PMF bins minus the "
                                  "lowest bin of the starting basin",
            "minimax_moves": "diagonal" if self.diagonal_moves else "face",
            "n_bootstraps": int(self.n_bootstraps),
            "min_neighbour_overlap": min_nb,
            "overlap_bottleneck": bottleneck,
            "n_samples_used": int(n_k.sum()),
            "pymbar_version": _pymbar_version(),
        })
        if min_nb < 0.03:
            warnings.warn(f"mbar: poor overlap between neighbouring windows (smallest "
                          f"{min_nb:.3g} < 0.03); free energies may be unreliable",
                          RuntimeWarning, stacklevel=4)
        return out


# ----------------------------------------------------------------------
# helpers


#: from this many windows on, MBAR starts from its solution on a few samples
#: per window (:func:`mtcv_mbar.solver.coarse_start`)
COARSE_START_WINDOWS = 100
#: convergence of each bootstrap replicate's MBAR solve (largest relative
#: gradient, ~ the error of its f_k in kT): replicates differ from each other
#: by the statistical error (~0.1 kT), so 1e-5 kT costs nothing in accuracy
#: and saves most of the fixed-Hessian iterations a 1e-8 solve takes
BOOTSTRAP_TOLERANCE = 1e-5

#: for the solution to count as converged (``solver_converged``)
SOLVER_TOLERANCE_KT = 1e-6
#: pair overlap below which a window is not tied to another
ISOLATED_OVERLAP = 1e-5
#: at most this fraction of the windows (or one) is dropped as isolated
ISOLATED_MAX_FRACTION = 0.05


def _solve(u_kn: np.ndarray, n_k: np.ndarray) -> Any:
    """MBAR solved for reduced bias energies u_kn (K, N) and samples per
    window n_k (K,): an object with pymbar.MBAR's ``f_k``,
    ``compute_overlap``, ``compute_free_energy_differences`` and
    ``compute_perturbed_free_energies``."""
    import pymbar

    # damped Newton (numpy) from zero, then pymbar's adaptive solver from
    # there: pymbar alone spends most of its time in a dense hybr root
    # search when there are hundreds of windows; from a self-consistent
    # start one adaptive iteration is enough (its own relative criterion
    # on f_k can keep it iterating, a full Hessian each time, for minutes)
    # many windows: a start from a few samples of each (u_kn's columns are
    # grouped by window), where Newton from zero would crawl
    start = coarse_start(u_kn, n_k) if len(n_k) >= COARSE_START_WINDOWS else None
    f_init = solve_mbar(u_kn, n_k, start)
    settled = _self_consistency(u_kn, unbiased_log_weights(u_kn, n_k, f_init),
                                f_init) < SOLVER_TOLERANCE_KT
    iterations = 1 if settled else 10000
    if settled and len(n_k) >= COARSE_START_WINDOWS:
        # pymbar would hold several N x K arrays (GBs for a 2D reference
        # of hundreds of windows) to redo what is solved: the same
        # quantities, chunked (tested against pymbar)
        return ChunkedMBAR(u_kn, n_k, f_init)
    return pymbar.MBAR(u_kn, n_k, initial_f_k=f_init, maximum_iterations=iterations,
                       solver_protocol=({"method": "adaptive",
                                         "options": {"min_sc_iter": 0,
                                                     "maxiter": iterations}},))


def _isolated_windows(overlap: np.ndarray) -> np.ndarray:
    """(K,) bool: windows tied to no other window (every pair overlap
    ``min(O_ij, O_ji)`` below ``ISOLATED_OVERLAP``), when there are at most
    ``max(1, ISOLATED_MAX_FRACTION * K)`` of them. Groups of windows cut off
    from the rest are a real gap: left to the overlap check to report."""
    pair = np.minimum(overlap, overlap.T)
    np.fill_diagonal(pair, 0.0)
    alone = pair.max(axis=1) < ISOLATED_OVERLAP
    if len(pair) < 3 or alone.sum() > max(1, ISOLATED_MAX_FRACTION * len(pair)):
        return np.zeros(len(pair), bool)
    return alone


def _self_consistency(u_kn: np.ndarray, log_w: np.ndarray, f_k: np.ndarray) -> float:
    """max_k |f_k' - f_k| (kT, both relative to window 0) where f_k' =
    -ln sum_n w_n exp(-u_kn) is one self-consistent MBAR iteration from the
    solution's unbiased weights w_n: 0 at the exact solution."""
    f_next = -log_sum_over_samples(u_kn, log_w)
    return float(np.max(np.abs((f_next - f_next[0]) - (f_k - f_k[0]))))


def _pymbar_version() -> str:
    import pymbar

    return str(getattr(pymbar, "__version__", "unknown"))


def _decorrelate(series: np.ndarray, walkers: int, subsample: bool) -> tuple[float, np.ndarray]:
    """Statistical inefficiency of a window's (n, d) series and the indices
    to keep. The series is ``walkers`` independent parts, walker-major."""
    from pymbar import timeseries

    n = len(series)
    parts = np.array_split(np.arange(n), max(1, min(walkers, n)))
    g = statistical_inefficiency(series, walkers)
    if not subsample or g <= 1.0:
        return g, np.arange(n)
    keep = [p[np.asarray(timeseries.subsample_correlated_data(series[p, 0], g=g), int)]
            for p in parts if len(p)]
    return g, np.concatenate(keep)


def _walker_inflation(series: np.ndarray, idx: np.ndarray, walkers: int, p_max: float
                      ) -> float:
    """How many times larger the variance of the mean of a window's kept
    samples ``series[idx]`` is than resampling them one by one says, when
    its walkers disagree (:func:`mtcv_core.ergodicity.walker_excess` on the
    whole series, p below ``p_max``; else 1): the variance of the walkers'
    means of their kept samples over ``walkers`` against ``var / n_kept``,
    the largest over CV dimensions, at least 1. No model of the slow mode
    is needed: the walkers are independent, their means scatter by what
    the window's mean is uncertain by. series: (n, d), walker-major, equal
    parts; idx: kept indices (ascending)."""
    ratio, p = walker_excess(series, walkers)
    if not (np.isfinite(p) and p < p_max):
        return 1.0
    series = np.asarray(series, float).reshape(len(series), -1)
    n = len(series)
    edges = np.array([q[0] for q in np.array_split(np.arange(n), walkers) if len(q)] + [n])
    walker = np.searchsorted(edges, idx, side="right") - 1
    kept = series[idx]
    groups = [kept[walker == w] for w in range(len(edges) - 1)]
    means = np.array([g.mean(axis=0) for g in groups if len(g)])
    if len(means) < 2:
        return 1.0
    sizes = np.array([len(g) for g in groups if len(g)], float)
    # unequal groups: the variance of the pooled mean from the scatter of
    # size-weighted walker means (equal sizes: var(means) / walkers)
    w = sizes / sizes.sum()
    centre = (w[:, None] * means).sum(axis=0)
    v_walkers = (w[:, None] ** 2 * (means - centre) ** 2).sum(axis=0) * len(means) / (
        len(means) - 1)
    v_single = kept.var(axis=0, ddof=1) / len(kept)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.where(v_single > 0, v_walkers / v_single, 1.0)
    return float(max(1.0, np.nanmax(r)))


def _block_ids(idx: np.ndarray, n: int, walkers: int, min_blocks: int) -> np.ndarray:
    """The resampling block of each kept sample ``idx`` of a window's series
    of ``n`` samples made of ``walkers`` walker-major parts: its walker, or
    with fewer walkers than ``min_blocks`` a contiguous piece of its walker's
    series (each walker cut into ``ceil(min_blocks / walkers)`` pieces).
    ``min_blocks = 0``: every sample is its own block."""
    if min_blocks <= 0:
        return np.arange(len(idx))
    parts = max(1, min(walkers, n))
    edges = np.array([p[0] for p in np.array_split(np.arange(n), parts)] + [n])
    walker = np.searchsorted(edges, idx, side="right") - 1
    pieces = max(1, -(-min_blocks // parts))
    start, length = edges[walker], np.maximum(edges[walker + 1] - edges[walker], 1)
    piece = np.minimum((idx - start) * pieces // length, pieces - 1)
    return walker * pieces + piece


def _reduced_bias(s_n: np.ndarray, centers: np.ndarray, springs: np.ndarray,
                  periods: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(K, N) bias energies (eV, times ``scale``) of all samples (N, d) in
    all windows (K): the result and temporaries of a few windows' rows."""
    k = len(centers)
    out = np.zeros((k, len(s_n)))
    rows = max(1, REDUCED_BIAS_CHUNK // max(1, len(s_n)))
    for lo in range(0, k, rows):
        block = out[lo:lo + rows]
        for d in range(s_n.shape[1]):
            diff = s_n[None, :, d] - centers[lo:lo + rows, d, None]
            p = periods[d] if d < len(periods) else 0.0
            if p > 0:
                diff -= p * np.round(diff / p)
            np.multiply(diff, diff, out=diff)
            diff *= 0.5 * scale * springs[lo:lo + rows, d, None]
            block += diff
    return out


#: elements of the temporaries of :func:`_reduced_bias` (~32 MB)
REDUCED_BIAS_CHUNK = 4_000_000


def _edges(values: np.ndarray, n_bins: int) -> np.ndarray:
    """n_bins equal bins over the sample range (the last edge nudged up so
    that the largest sample lies inside)."""
    lo, hi = float(np.min(values)), float(np.max(values))
    if hi <= lo:
        hi = lo + 1e-12 * max(1.0, abs(lo))
    edges = np.linspace(lo, hi, n_bins + 1)
    edges[-1] = np.nextafter(hi, np.inf)
    return edges


def _spans_period(edges: np.ndarray, period: float) -> bool:
    """Whether the bins cover (nearly) a whole period, so that the grid wraps."""
    width = edges[-1] - edges[0]
    return width >= period * (1.0 - 2.0 / (len(edges) - 1))


def _pymbar_fes_1d(pymbar: Any, u_kn: np.ndarray, n_k: np.ndarray, f_k: np.ndarray,
                   x_n: np.ndarray, edges: np.ndarray, centers: np.ndarray,
                   counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """1D histogram PMF (kT) and its analytical uncertainty with pymbar.FES."""
    fes = pymbar.FES(u_kn, n_k, mbar_options={"initial_f_k": f_k})
    fes.generate_fes(np.zeros(len(x_n)), x_n, fes_type="histogram",
                     histogram_parameters={"bin_edges": [edges]})
    occupied = counts > 0
    res = fes.get_fes(centers[occupied], reference_point="from-lowest",
                      uncertainty_method="analytical")
    pmf = np.full(len(centers), np.nan)
    err = np.full(len(centers), np.nan)
    pmf[occupied] = res["f_i"]
    err[occupied] = res["df_i"]
    return pmf - np.nanmin(pmf), err


def _basin_labels(basins: Mapping[str, Any] | None, basin_of: BasinOf | None,
                  basin_names: Sequence[str] | None, ds: xr.Dataset, s_n: np.ndarray,
                  grid_points: np.ndarray, n_cv: int
                  ) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Basin names, labels of the samples (N,) and of the bin centres."""
    if basins is not None:
        names = list(basins)
        boxes = []
        for name in names:
            box = np.asarray(basins[name], float).reshape(-1, 2)
            if box.shape != (n_cv, 2):
                raise ValueError(f"mbar: basin {name!r}: expected {n_cv} (lo, hi) interval(s), "
                                 f"got {basins[name]!r}")
            boxes.append(box)

        def label(points: np.ndarray) -> np.ndarray:
            out = np.full(len(points), -1)
            for b, box in reversed(list(enumerate(boxes))):
                inside = np.all((points >= box[:, 0]) & (points < box[:, 1]), axis=1)
                out[inside] = b
            return out

        return names, label(s_n), label(grid_points)
    if basin_of is None:
        return [], np.full(len(s_n), -1), np.full(len(grid_points), -1)
    lab_n = np.asarray(basin_of(s_n)).astype(int).reshape(-1)
    lab_g = np.asarray(basin_of(grid_points)).astype(int).reshape(-1)
    if lab_n.shape != (len(s_n),) or lab_g.shape != (len(grid_points),):
        raise ValueError("mbar: basin_of must map (n, n_cv) CV values to (n,) labels")
    if basin_names is not None:
        names = list(basin_names)
    elif str(ds.attrs.get("basins", "")).split():
        names = str(ds.attrs["basins"]).split()
    else:
        names = [str(i) for i in range(int(max(lab_n.max(), lab_g.max(), -1)) + 1)]
    if lab_n.max(initial=-1) >= len(names) or lab_g.max(initial=-1) >= len(names):
        raise ValueError(f"mbar: basin_of returned labels beyond the {len(names)} basin names "
                         f"{names}")
    return names, lab_n, lab_g


def _basin_free_energies(mbar: Any, labels: np.ndarray, n_b: int
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """F_b = -ln P(basin b) (kT) and differences, analytical errors (kT)."""
    present = [b for b in range(n_b) if np.any(labels == b)]
    f = np.full(n_b, np.nan)
    df = np.full(n_b, np.nan)
    delta = np.full((n_b, n_b), np.nan)
    delta_err = np.full((n_b, n_b), np.nan)
    missing = sorted(set(range(n_b)) - set(present))
    if missing:
        warnings.warn(f"mbar: basins {missing} hold no samples; their free energies are NaN",
                      RuntimeWarning, stacklevel=4)
    if not present:
        return f, df, delta, delta_err
    u_ln = np.zeros((1 + len(present), len(labels)))
    for row, b in enumerate(present, start=1):
        u_ln[row, labels != b] = np.inf
    res = mbar.compute_perturbed_free_energies(u_ln)
    d_f, dd_f = np.asarray(res["Delta_f"]), np.asarray(res["dDelta_f"])
    for i, a in enumerate(present, start=1):
        f[a], df[a] = d_f[0, i], dd_f[0, i]
        for j, b in enumerate(present, start=1):
            delta[a, b], delta_err[a, b] = d_f[i, j], dd_f[i, j]
    return f, df, delta, delta_err


def _nanstd(replicates: np.ndarray, central: np.ndarray) -> np.ndarray:
    """Standard deviation over axis 0 ignoring NaN replicates; NaN where the
    central value is NaN or fewer than 2 replicates are finite."""
    finite = np.isfinite(replicates)
    n_ok = finite.sum(axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sd = np.nanstd(np.where(finite, replicates, np.nan), axis=0, ddof=1)
    sd = np.where((n_ok >= 2) & np.isfinite(central), sd, np.nan)
    frac_bad = 1.0 - n_ok / max(1, replicates.shape[0])
    if np.any(np.isfinite(central) & (frac_bad > 0.1)):
        warnings.warn("mbar: more than 10% of the bootstrap replicates are undefined for some "
                      "values (empty bins); their errors use the defined replicates only",
                      RuntimeWarning, stacklevel=4)
    return sd


def _bootstrap_bias(replicates: np.ndarray, central: np.ndarray) -> np.ndarray:
    """Bootstrap estimate of the bias of ``central``: the mean of the finite
    replicates (axis 0) minus it; NaN where fewer than 2 are finite."""
    finite = np.isfinite(replicates)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(np.where(finite, replicates, np.nan), axis=0)
    return np.where(finite.sum(axis=0) >= 2, mean - central, np.nan)


def _neighbour_overlap(overlap: np.ndarray, centers: np.ndarray) -> tuple[float, float]:
    """(smallest neighbour overlap, spanning-tree bottleneck overlap).

    Pair overlaps are ``min(O_ij, O_ji)``. The bottleneck is the weakest link
    of the maximum spanning tree of the windows: the largest ``t`` such that
    the windows connected by pair overlaps ``>= t`` form one group, which is
    what MBAR needs. It is also the smallest neighbour overlap: windows
    sharing a centre with different springs (refinement adds stiffer ones)
    make "adjacent in the order of the centres" meaningless, and in 2D
    there is no such order.
    """
    k = len(overlap)
    if k < 2:
        return float("nan"), float("nan")
    pair = np.minimum(overlap, overlap.T)
    # Prim's algorithm on the maximum spanning tree
    in_tree = np.zeros(k, bool)
    in_tree[0] = True
    best = pair[0].copy()
    weakest = np.inf
    for _ in range(k - 1):
        cand = np.where(in_tree, -np.inf, best)
        j = int(np.argmax(cand))
        weakest = min(weakest, float(cand[j]))
        in_tree[j] = True
        best = np.maximum(best, pair[j])
    return weakest, weakest


def _add_basins(out: xr.Dataset, names: list[str], kt: float, f: np.ndarray, df: np.ndarray,
                delta: np.ndarray, delta_err: np.ndarray, barrier: np.ndarray,
                barrier_err: np.ndarray, basin_min: np.ndarray, cv_units: str) -> None:
    out.coords["basin"] = ("basin", np.array(names, dtype=object))
    out.coords["basin_from"] = ("basin_from", np.array(names, dtype=object))
    out.coords["basin_to"] = ("basin_to", np.array(names, dtype=object))
    pair = ("basin_from", "basin_to")
    out["basin_free_energy"] = ("basin", f * kt, {
        "units": "eV", "long_name": "basin free energy", "description": "-kT ln P(basin)"})
    out["basin_free_energy_err"] = ("basin", df * kt, {
        "units": "eV", "long_name": "uncertainty of basin_free_energy (analytical)"})
    out["basin_minimum"] = (("basin", "cv"), basin_min, {
        "units": cv_units, "long_name": "centre of the basin's lowest PMF bin"})
    out["delta_F"] = (pair, delta * kt, {
        "units": "eV", "long_name": "free-energy difference F(basin_to) - F(basin_from)"})
    out["delta_F_err"] = (pair, delta_err * kt, {
        "units": "eV", "long_name": "uncertainty of delta_F (analytical, with covariance)"})
    out["barrier"] = (pair, barrier * kt, {
        "units": "eV", "long_name": "free-energy barrier from basin_from to basin_to",
        "description": "minimax PMF level between the basins' minima minus the minimum of "
                       "basin_from; NaN where undefined"})
    out["barrier_err"] = (pair, barrier_err * kt, {
        "units": "eV", "long_name": "uncertainty of barrier (bootstrap)"})


__all__ = ["MBAREstimator", "KB_EV_PER_K"]
