"""Free energies from biased trajectories by reweighting (``mtcv.biased/1``).

Each sample n after the transient carries its reweighting factor
w_n = exp(log_weight_n) (OPES: beta V_t(s_t); well-tempered metaD:
beta (V_t(s_t) - c(t))). Along the CV (or any recorded observable,
``along``)::

    P(bin) = sum_{n in bin} w_n / sum_n w_n,   F(bin) = -kT ln(P(bin) / width)

zero at the lowest bin; basin free energies F_b = -kT ln sum_{n in b} w_n /
sum_n w_n (basins by ``basin_of``), dF = F_to - F_from, barriers as the
minimax PMF level between the basins' lowest bins minus the lowest bin of
the starting basin (:func:`mtcv_core.fes_paths.basin_barriers`), the same
definitions as the MBAR estimator's.

Uncertainties: a bootstrap over blocks -- each walker's series after the
transient cut into ``n_blocks`` contiguous time blocks, blocks drawn with
replacement -- so correlations within a block are kept. The estimate
repeated on growing prefixes of the run (``convergence_points``) gives dF and
the barriers against simulated time (``convergence_*`` variables).
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
import xarray as xr

from mtcv_core.config import doc, nonneg, positive
from mtcv_core.fes_paths import basin_barriers
from mtcv_core.interfaces import BasinOf, Estimator
from mtcv_core.schema import SCHEMA_ATTR, with_index_coords
from mtcv_core.schema_biased import BIASED_SCHEMA, biased_periods, validate_biased
from mtcv_core.schema_umbrella import FES_SCHEMA
from mtcv_core.units import kT_eV


@dataclass
class ReweightEstimator(Estimator):
    """Reweighted free energies of biased walkers (module docstring)."""

    name: ClassVar[str] = "reweight"
    accepts: ClassVar[tuple[str, ...]] = (BIASED_SCHEMA,)

    n_bins: int = positive(50, "PMF histogram bins per dimension")
    along: str = doc("cv", "what to reweight along: 'cv' (the sampled CV) or the name of a "
                           "recorded observable (e.g. a true CV)")
    discard_fraction: float | None = field(default=None, metadata={
        "min": 0.0, "lt": 1.0, "doc": "fraction of the run discarded at the start (default: "
                                      "the samples' transient_fs)"})
    n_blocks: int = positive(10, "time blocks for the bootstrap")
    blocks: Literal["time", "walker_time"] = field(default="time", metadata={
        "doc": "'time': a block is a stretch of time of all walkers together (the walkers "
               "share the bias, so their samples at the same time are correlated); "
               "'walker_time': each walker's stretch its own block (more blocks, errors too "
               "small when the bias correlates the walkers)"})
    n_bootstraps: int = nonneg(100, "bootstrap replicates (0: no errors)")
    seed: int = doc(0, "seed of the bootstrap")
    diagonal_moves: bool = doc(False, "minimax paths on a 2D PMF may step diagonally")
    convergence_points: int = nonneg(8, "prefixes of the run on which dF and the barriers "
                                        "are estimated again (0: none)")

    def estimate(self, samples: xr.Dataset, *, basin_of: BasinOf | None = None,
                 basin_names: Sequence[str] | None = None) -> xr.Dataset:
        ds = validate_biased(samples, where="reweight: samples")
        kt = kT_eV(float(ds.attrs["temperature_K"]))
        values, periods, names, units = self._values(ds)
        time = ds["time"].values
        start = (self.discard_fraction * time[-1] if self.discard_fraction is not None
                 else float(ds.attrs.get("transient_fs", 0.0)))
        keep_t = time > start
        if keep_t.sum() < 2 * self.n_blocks:
            raise ValueError(f"reweight: {int(keep_t.sum())} samples per walker after the "
                             f"transient ({start:g} fs); need at least {2 * self.n_blocks}")
        lw_all = ds["log_weight"].values  # (walker, sample)
        s = values[:, keep_t]            # (walker, sample, d)
        lw = lw_all[:, keep_t]
        ok = np.isfinite(lw) & np.isfinite(s).all(axis=-1)
        n_w, n_t, d = s.shape
        block_of_t = np.minimum(np.arange(n_t) * self.n_blocks // n_t, self.n_blocks - 1)
        if self.blocks == "time":
            block = np.broadcast_to(block_of_t[None, :], (n_w, n_t))
        else:
            block = np.arange(n_w)[:, None] * self.n_blocks + block_of_t[None, :]
        s_n, lw_n, block_n = s[ok], lw[ok], block[ok]
        edges = self._edges(s_n, periods)
        centers = [0.5 * (e[1:] + e[:-1]) for e in edges]
        grid = np.stack([g.ravel() for g in np.meshgrid(*centers, indexing="ij")], axis=1)
        labels_n = labels_g = None
        n_b = 0
        if basin_of is not None and self.along == "cv":
            labels_n = np.asarray(basin_of(s_n)).astype(int).reshape(-1)
            labels_g = np.asarray(basin_of(grid)).astype(int).reshape(-1)
            n_b = len(basin_names) if basin_names is not None else \
                int(max(labels_n.max(initial=-1), labels_g.max(initial=-1))) + 1
        bin_n = self._bin_index(s_n, edges, periods)
        n_blocks_total = int(block.max()) + 1
        central = _estimate(lw_n, bin_n, labels_n, labels_g, n_b, edges, periods,
                            self.diagonal_moves, np.ones(n_blocks_total), block_n)
        reps = []
        rng = np.random.default_rng(self.seed)
        present = np.unique(block_n)
        for _ in range(self.n_bootstraps):
            draw = rng.choice(present, size=len(present), replace=True)
            mult = np.bincount(draw, minlength=n_blocks_total).astype(float)
            reps.append(_estimate(lw_n, bin_n, labels_n, labels_g, n_b, edges, periods,
                                  self.diagonal_moves, mult, block_n))
        out = self._assemble(ds, kt, edges, centers, central, reps, names, units, n_b,
                             basin_names, labels_g)
        if self.convergence_points and n_b:
            self._convergence(out, values, lw_all, time, start, basin_of, labels_g, n_b,
                              edges, periods, kt)
        return with_index_coords(out, {"cv": names})

    # ----------------------------------------------------------- pieces
    def _values(self, ds: xr.Dataset) -> tuple[np.ndarray, np.ndarray, list[str], str]:
        if self.along == "cv":
            return (ds["cv_values"].values, biased_periods(ds, "cv"),
                    str(ds.attrs["cv_names"]).split(), str(ds.attrs["cv_units"]))
        if "observables" not in ds or self.along not in list(ds["observable"].values):
            have = list(ds["observable"].values) if "observable" in ds.coords else []
            raise ValueError(f"reweight.along: {self.along!r} is not a recorded observable of "
                             f"the samples (they have {have or 'none'}); use 'cv' or one of "
                             "them")
        i = list(ds["observable"].values).index(self.along)
        per = biased_periods(ds, "observable")[i:i + 1]
        units = str(ds["observables"].attrs.get("units", "1")).split()
        unit = units[i] if len(units) > i else (units[0] if units else "1")
        return ds["observables"].values[..., i:i + 1], per, [self.along], unit

    def _edges(self, s: np.ndarray, periods: np.ndarray) -> list[np.ndarray]:
        out = []
        n = self.n_bins if s.shape[1] == 1 else max(10, int(round(self.n_bins * 0.8)))
        for k in range(s.shape[1]):
            if periods[k] > 0:
                out.append(np.linspace(-periods[k] / 2, periods[k] / 2, n + 1))
                continue
            lo, hi = float(np.min(s[:, k])), float(np.max(s[:, k]))
            pad = 1e-9 * max(1.0, abs(hi - lo))
            out.append(np.linspace(lo - pad, hi + pad, n + 1))
        return out

    @staticmethod
    def _bin_index(s: np.ndarray, edges: list[np.ndarray], periods: np.ndarray) -> np.ndarray:
        idx = []
        for k, e in enumerate(edges):
            v = s[:, k]
            if periods[k] > 0:  # into [-P/2, P/2) first
                v = v - periods[k] * np.round(v / periods[k])
            idx.append(np.clip(np.searchsorted(e, v, side="right") - 1, 0, len(e) - 2))
        return np.ravel_multi_index(idx, [len(e) - 1 for e in edges])

    def _assemble(self, ds: xr.Dataset, kt: float, edges: list[np.ndarray],
                  centers: list[np.ndarray], central: dict[str, Any],
                  reps: list[dict[str, Any]], names: list[str], units: str, n_b: int,
                  basin_names: Sequence[str] | None, labels_g: np.ndarray | None
                  ) -> xr.Dataset:
        shape = tuple(len(c) for c in centers)
        pmf = central["pmf"].reshape(shape)

        def err(key: str) -> np.ndarray:
            if len(reps) < 2:
                return np.full_like(np.asarray(central[key], float), np.nan)
            r = np.stack([np.asarray(x[key], float) for x in reps])
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                sd = np.nanstd(r, axis=0, ddof=1)
            return np.where(np.isfinite(central[key]), sd, np.nan)

        pmf_err = err("pmf").reshape(shape)
        if len(shape) == 1:
            dims: tuple[str, ...] = ("bin",)
            coords: dict[str, Any] = {"bin_center": (("bin",), centers[0], {
                "units": units, "long_name": f"bin centre ({names[0]})"})}
            data: dict[str, Any] = {"bin_edges": (("bin_edge",), edges[0], {
                "units": units, "long_name": "bin edges"})}
        else:
            dims = ("bin_x", "bin_y")
            coords = {f"bin_center_{a}": ((f"bin_{a}",), c, {"units": units,
                                                             "long_name": f"bin centre ({n})"})
                      for a, c, n in zip("xy", centers, names, strict=True)}
            data = {f"bin_edges_{a}": ((f"bin_edge_{a}",), e, {"units": units,
                                                               "long_name": f"bin edges ({n})"})
                    for a, e, n in zip("xy", edges, names, strict=True)}
        data["pmf"] = (dims, pmf * kt, {"units": "eV", "long_name": "potential of mean force",
                                        "description": "-kT ln P(bin) by reweighting, zero "
                                                       "at the lowest bin; NaN: no samples"})
        data["pmf_err"] = (dims, pmf_err * kt, {
            "units": "eV", "long_name": "uncertainty of the PMF (block bootstrap)"})
        data["bin_weight"] = (dims, central["weight"].reshape(shape), {
            "units": "1", "long_name": "normalised reweighted probability of each bin"})
        out = xr.Dataset(data, coords=coords)
        out.attrs.update({
            SCHEMA_ATTR: FES_SCHEMA, "temperature_K": float(ds.attrs["temperature_K"]),
            "kT_eV": kt, "estimator": self.name,
            "estimator_options": json.dumps(asdict(self), sort_keys=True),
            "cv_names": " ".join(names), "cv_units": units, "pmf_method": "reweighted histogram",
            "pmf_uncertainty": "block bootstrap" if len(reps) >= 2 else "none",
            "barrier_uncertainty": "block bootstrap" if len(reps) >= 2 else "none",
            "barrier_definition": "minimax level between the basins' lowest PMF bins minus the "
                                  "lowest bin of the starting basin",
            "minimax_moves": "diagonal" if self.diagonal_moves else "face",
            "sampler": str(ds.attrs.get("method", "")),
            "effective_samples": float(central["n_eff"]),
        })
        if n_b:
            names_b = list(basin_names) if basin_names is not None else \
                [str(i) for i in range(n_b)]
            pair = ("basin_from", "basin_to")
            out.coords["basin"] = ("basin", np.array(names_b, dtype=object))
            out.coords["basin_from"] = ("basin_from", np.array(names_b, dtype=object))
            out.coords["basin_to"] = ("basin_to", np.array(names_b, dtype=object))
            basin_min = np.full((n_b, len(shape)), np.nan)
            for b, m in enumerate(central["minima"]):
                if m is not None:
                    basin_min[b] = [centers[k][m[k]] for k in range(len(shape))]
            out["basin_free_energy"] = ("basin", central["f_b"] * kt, {
                "units": "eV", "long_name": "basin free energy", "description": "-kT ln P(basin)"})
            out["basin_free_energy_err"] = ("basin", err("f_b") * kt, {
                "units": "eV", "long_name": "uncertainty of basin_free_energy (block bootstrap)"})
            out["basin_minimum"] = (("basin", "cv"), basin_min, {
                "units": units, "long_name": "centre of the basin's lowest PMF bin"})
            out["delta_F"] = (pair, central["delta"] * kt, {
                "units": "eV", "long_name": "free-energy difference F(basin_to) - F(basin_from)"})
            out["delta_F_err"] = (pair, err("delta") * kt, {
                "units": "eV", "long_name": "uncertainty of delta_F (block bootstrap)"})
            out["barrier"] = (pair, central["barrier"] * kt, {
                "units": "eV", "long_name": "free-energy barrier from basin_from to basin_to"})
            out["barrier_err"] = (pair, err("barrier") * kt, {
                "units": "eV", "long_name": "uncertainty of barrier (block bootstrap)"})
        return out

    def _convergence(self, out: xr.Dataset, values: np.ndarray, lw_all: np.ndarray,
                     time: np.ndarray, start: float, basin_of: BasinOf,
                     labels_grid: np.ndarray, n_b: int, edges: list[np.ndarray],
                     periods: np.ndarray, kt: float) -> None:
        """dF and barriers on growing prefixes of the run (the full estimate's
        bins and bin basins ``labels_grid``)."""
        ends = np.linspace(start, time[-1], self.convergence_points + 1)[1:]
        barrier = np.full((len(ends), n_b, n_b), np.nan)
        delta = np.full((len(ends), n_b, n_b), np.nan)
        for i, end in enumerate(ends):
            keep = (time > start) & (time <= end)
            s, lw = values[:, keep], lw_all[:, keep]
            ok = np.isfinite(lw) & np.isfinite(s).all(axis=-1)
            if ok.sum() < 10:
                continue
            s_n = s[ok]
            lab = np.asarray(basin_of(s_n)).astype(int).reshape(-1)
            res = _estimate(lw[ok], self._bin_index(s_n, edges, periods), lab, labels_grid,
                            n_b, edges, periods, self.diagonal_moves, np.ones(1),
                            np.zeros(len(s_n), int))
            barrier[i], delta[i] = res["barrier"] * kt, res["delta"] * kt
        out.coords["convergence_time"] = ("convergence_time", ends, {
            "units": "fs", "long_name": "end of the prefix of the run (simulated time)"})
        dims = ("convergence_time", "basin_from", "basin_to")
        out["convergence_barrier"] = (dims, barrier, {
            "units": "eV", "long_name": "barrier from the samples up to convergence_time"})
        out["convergence_delta_F"] = (dims, delta, {
            "units": "eV", "long_name": "delta_F from the samples up to convergence_time"})


def _estimate(lw: np.ndarray, bin_n: np.ndarray, labels_n: np.ndarray | None,
              labels_g: np.ndarray | None, n_b: int, edges: list[np.ndarray],
              periods: np.ndarray, diagonal: bool, mult: np.ndarray,
              block_n: np.ndarray) -> dict[str, Any]:
    """PMF (kT, flat over bins), bin weights, basin F (kT), dF and barriers
    (kT) of samples weighted by exp(lw) times their block's multiplicity."""
    shape = tuple(len(e) - 1 for e in edges)
    w = np.exp(lw - lw.max()) * mult[block_n]
    total = w.sum()
    hist = np.bincount(bin_n, weights=w, minlength=int(np.prod(shape))) / total
    widths = np.prod(np.meshgrid(*[np.diff(e) for e in edges], indexing="ij"), axis=0).ravel()
    with np.errstate(divide="ignore"):
        pmf = -np.log(hist / widths)
    pmf[~np.isfinite(pmf)] = np.nan
    pmf -= np.nanmin(pmf)
    n_eff = total**2 / float((w**2).sum())
    out: dict[str, Any] = {"pmf": pmf, "weight": hist, "n_eff": n_eff}
    if n_b and labels_n is not None and labels_g is not None:
        p_b = np.array([w[labels_n == b].sum() for b in range(n_b)]) / total
        with np.errstate(divide="ignore"):
            f_b = -np.log(p_b)
        f_b[~np.isfinite(f_b)] = np.nan
        out["f_b"] = f_b
        out["delta"] = f_b[None, :] - f_b[:, None]
        barrier, minima = basin_barriers(pmf.reshape(shape), labels_g.reshape(shape), n_b,
                                         diagonal=diagonal, periodic=list(periods > 0))
        out["barrier"], out["minima"] = barrier, minima
    return out


__all__ = ["ReweightEstimator"]
