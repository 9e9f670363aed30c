"""From shots to numbers: the transmission coefficient with its error and
plateau, and the committor test (:mod:`mtcv_core.rates` for the formulas).

Both take the dataset of :class:`mtcv_rates.surface_shots.SurfaceShots`
(``xi_dot0`` (config, shot), ``xi`` (config, shot, time), ``committed``
(config, shot), ``time`` fs). Errors come from a bootstrap over the
configurations (each drawn with all its shots): shots from one
configuration are not independent of each other.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from mtcv_core.rates import plateau, transmission_coefficient


def kappa_from_shots(shots: xr.Dataset, xi_star: float, *, towards: int = 1,
                     weights: np.ndarray | None = None, n_bootstraps: int = 200,
                     seed: int = 0) -> xr.Dataset:
    """Bennett-Chandler ``kappa(t)`` with bootstrap errors and its plateau.

    weights: (n_configs,) configuration weights (e.g. the surface sampler's,
    undoing its restraint), default equal. Returns ``kappa`` and
    ``kappa_err`` on ``time``; attributes ``kappa_plateau``,
    ``kappa_plateau_err`` and ``plateau_start_fs``."""
    v = np.asarray(shots["xi_dot0"].values, float)
    x = np.asarray(shots["xi"].values, float)
    n_c, n_s = v.shape
    w = np.ones(n_c) if weights is None else np.asarray(weights, float)
    if w.shape != (n_c,):
        raise ValueError(f"kappa_from_shots: weights {w.shape} do not match {n_c} "
                         "configurations")

    def kappa(rows: np.ndarray) -> np.ndarray:
        return transmission_coefficient(v[rows].ravel(), x[rows].reshape(-1, x.shape[2]),
                                        xi_star, weights=np.repeat(w[rows], n_s),
                                        towards=towards)

    central = kappa(np.arange(n_c))
    rng = np.random.default_rng(seed)
    boot = []
    for _ in range(n_bootstraps):
        try:
            boot.append(kappa(rng.integers(0, n_c, n_c)))
        except ValueError:  # a draw with no shot towards the product
            continue
    err = np.std(boot, axis=0, ddof=1) if len(boot) >= 2 else np.full_like(central, np.nan)
    start, value, value_err = plateau(central, np.nan_to_num(err, nan=np.inf))
    time = shots["time"].values
    out = xr.Dataset({"kappa": (("time",), central, {"units": "1",
                                                     "long_name": "transmission coefficient"}),
                      "kappa_err": (("time",), err, {"units": "1", "long_name": "bootstrap "
                                                     "error over configurations"})},
                     coords={"time": ("time", time, {"units": "fs"})})
    out.attrs.update(kappa_plateau=value, kappa_plateau_err=value_err,
                     plateau_start_fs=float(time[start]), xi_star=float(xi_star),
                     towards=int(towards), n_bootstraps=len(boot))
    return out


def committor_test(shots: xr.Dataset, product: int, reactant: int, *,
                   bins: int | None = None) -> dict[str, object]:
    """The committor test: p_B of each configuration over its shots that
    reached the reactant or the product (shots that reached neither within
    the run are left out and counted), its mean, standard deviation and
    histogram on ``bins`` equal bins of [0, 1] (None: one bin centred on
    each value k / n_shots that a configuration whose shots all committed can
    take, so that no value falls on a bin edge). An ideal reaction
    coordinate gives a histogram peaked at 1/2."""
    c = np.asarray(shots["committed"].values)
    to_b = (c == product).sum(axis=1)
    to_a = (c == reactant).sum(axis=1)
    n = to_a + to_b
    ok = n > 0
    if not ok.any():
        raise ValueError("committor_test: no shot reached either basin; run the shots longer")
    p_b = to_b[ok] / n[ok]
    if bins is None:
        n_s = c.shape[1]
        edges = np.linspace(-0.5 / n_s, 1.0 + 0.5 / n_s, n_s + 2)
        hist, edges = np.histogram(p_b, bins=edges)
    else:
        hist, edges = np.histogram(p_b, bins=bins, range=(0.0, 1.0))
    return {"p_B": p_b, "mean": float(np.mean(p_b)), "std": float(np.std(p_b)),
            "histogram": hist, "edges": edges, "n_configs": int(ok.sum()),
            "uncommitted_shots": int(c.size - n.sum())}


__all__ = ["kappa_from_shots", "committor_test"]
