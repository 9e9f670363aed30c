"""Is a free-energy number converged? Checks a bootstrap over samples cannot make.

A bootstrap over the samples of one run measures the noise of those samples;
it cannot see a coordinate the windows never equilibrate (their walkers keep
the values they started with, and every one of them drifts the same way). Two
checks on an umbrella dataset (``mtcv.umbrella/1``) that can:

* :func:`window_drift` -- per window, every walker's second-half mean minus its
  first-half mean, of xi and of every other recorded observable (the unbiased
  energy), tested against zero across the independent walkers (a t statistic;
  with one walker its blocks). A window still relaxing in a slow orthogonal
  coordinate drifts in what that coordinate touches.
* :func:`split_halves` -- the dataset cut into the first and the second half
  of every walker's series; estimating each half (with any estimator) and
  comparing the numbers is the forward/backward check of the result itself.

:func:`verdict` combines these with the estimator's own diagnostics
(neighbour overlap, dropped windows, solver) into one record per transition,
written to ``summary.json`` and the report; ``mtcv run --strict`` turns a
failed verdict into an error.

Units: eV for energies; xi in its own units; t statistics dimensionless.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import xarray as xr

#: family-wise false-alarm rate of :func:`window_drift` over all windows
DRIFT_ALPHA = 0.01
#: a transition's halves disagree beyond this many standard errors of their
#: difference (the full run's sigma times 2: each half has twice the variance)
HALVES_Z = 3.0
#: neighbouring windows must overlap at least this much (MBAR's overlap matrix)
MIN_OVERLAP = 0.03


def _walker_parts(series: np.ndarray, walkers: int) -> list[np.ndarray]:
    """The independent parts of a window's series (n, ...): its walkers, or
    with one walker eight contiguous blocks."""
    return [p for p in np.array_split(series, walkers if walkers > 1 else 8) if len(p) >= 4]


def drift_t(series: np.ndarray, walkers: int) -> tuple[float, int]:
    """The t statistic of the mean second-half minus first-half difference
    over the independent parts of ``series`` (n,) (:func:`_walker_parts`;
    with one walker, block means of the first vs the second half), and its
    degrees of freedom. 0 when it cannot be formed or nothing varies."""
    series = np.asarray(series, float)
    parts = _walker_parts(series, walkers)
    if walkers > 1:
        diffs = np.array([p[len(p) // 2:].mean() - p[: len(p) // 2].mean() for p in parts])
        if len(diffs) < 3:
            return 0.0, 0
        sd = diffs.std(ddof=1)
        if not np.isfinite(sd) or sd <= 0:
            return 0.0, len(diffs) - 1
        return float(diffs.mean() / (sd / math.sqrt(len(diffs)))), len(diffs) - 1
    means = np.array([p.mean() for p in parts])
    half = len(means) // 2
    if half < 2:
        return 0.0, 0
    a, b = means[:half], means[half:]
    se = math.sqrt(a.var(ddof=1) / len(a) + b.var(ddof=1) / len(b))
    if not np.isfinite(se) or se <= 0:
        return 0.0, len(means) - 2
    return float((b.mean() - a.mean()) / se), len(means) - 2


def window_drift(samples: xr.Dataset, *, alpha: float = DRIFT_ALPHA) -> xr.Dataset:
    """Per window and observable the drift statistic of :func:`drift_t`.

    Observables: each CV dimension and, when recorded, the unbiased energy.
    A window drifts when any |t| exceeds the two-sided critical value at
    ``alpha / (n_windows * n_observables)`` (Bonferroni: over a whole run of
    stationary windows the false-alarm rate is at most ``alpha``).

    Returns a dataset with ``drift_t`` (window, observable), ``critical_t``
    (window) and ``drifting`` (window) bool, attribute ``alpha``.
    """
    from scipy import stats

    walkers = int(samples.attrs.get("walkers", 1))
    n_win = samples.sizes["window"]
    n_samples = samples["n_samples"].values.astype(int)
    names = [str(n) for n in str(samples.attrs.get("cv_names", "")).split()]
    names = names if len(names) == samples.sizes["cv"] else [
        f"cv{d}" for d in range(samples.sizes["cv"])]
    observables = list(names) + (["energy"] if "energy" in samples else [])
    t = np.zeros((n_win, len(observables)))
    dof = np.zeros(n_win, dtype=int)
    cv = samples["cv_values"].values
    energy = samples["energy"].values if "energy" in samples else None
    for w in range(n_win):
        cols = [cv[w, : n_samples[w], d] for d in range(cv.shape[2])]
        if energy is not None:
            cols.append(energy[w, : n_samples[w]])
        for j, col in enumerate(cols):
            t[w, j], dof[w] = drift_t(col, walkers)
    tests = max(1, n_win * len(observables))
    critical = np.array([stats.t.ppf(1 - alpha / (2 * tests), d) if d > 0 else np.inf
                         for d in dof])
    drifting = np.any(np.abs(t) > critical[:, None], axis=1)
    window = samples["window"].values if "window" in samples.coords else np.arange(n_win)
    return xr.Dataset(
        {"drift_t": (("window", "observable"), t, {
            "long_name": "second-half minus first-half mean over the walkers, t statistic"}),
         "critical_t": (("window",), critical),
         "drifting": (("window",), drifting)},
        coords={"window": window, "observable": observables},
        attrs={"alpha": float(alpha), "walkers": walkers})


def split_halves(samples: xr.Dataset) -> tuple[xr.Dataset, xr.Dataset]:
    """The first and the second half of every walker's series, as two
    umbrella datasets (same windows, walkers and attributes)."""
    walkers = int(samples.attrs.get("walkers", 1))
    n_samples = samples["n_samples"].values.astype(int)
    cv = samples["cv_values"].values
    energy = samples["energy"].values if "energy" in samples else None
    halves: list[dict[str, list[np.ndarray]]] = [{"cv": [], "e": []}, {"cv": [], "e": []}]
    for w in range(samples.sizes["window"]):
        idx = np.arange(n_samples[w])
        parts = np.array_split(idx, max(1, walkers))
        for h in (0, 1):
            sel = np.concatenate([p[: len(p) // 2] if h == 0 else p[len(p) // 2:]
                                  for p in parts])
            halves[h]["cv"].append(cv[w, sel])
            if energy is not None:
                halves[h]["e"].append(energy[w, sel])
    out = []
    for h in (0, 1):
        n = max(len(s) for s in halves[h]["cv"])
        pad = np.full((samples.sizes["window"], n, cv.shape[2]), np.nan)
        epad = np.full((samples.sizes["window"], n), np.nan)
        for w, s in enumerate(halves[h]["cv"]):
            pad[w, : len(s)] = s
            if energy is not None:
                epad[w, : len(s)] = halves[h]["e"][w]
        ds = samples.isel(sample=slice(0, n)).copy()
        ds["cv_values"] = (("window", "sample", "cv"), pad, samples["cv_values"].attrs)
        ds["n_samples"] = (("window",), np.array([len(s) for s in halves[h]["cv"]]),
                           samples["n_samples"].attrs)
        if energy is not None:
            ds["energy"] = (("window", "sample"), epad, samples["energy"].attrs)
        out.append(ds)
    return out[0], out[1]


def _finite(value: Any) -> float | None:
    try:
        v = float(value)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def halves_agree(full: Mapping[str, Any], first: Mapping[str, Any],
                 second: Mapping[str, Any], *, z_max: float = HALVES_Z) -> dict[str, Any]:
    """Whether the barrier and dF of one transition from the two halves agree:
    ``|first - second| <= z_max * 2 sigma`` with sigma the full run's error
    (each half has about twice the full run's variance). Returns per quantity
    the two values, z and ``ok`` (None where a value is missing)."""
    out: dict[str, Any] = {}
    for key, err in (("barrier_eV", "barrier_err_eV"), ("delta_F_eV", "delta_F_err_eV")):
        a, b, s = (_finite(d.get(k)) for d, k in ((first, key), (second, key), (full, err)))
        if a is None or b is None or s is None or not s > 0:
            out[key] = {"first_half": a, "second_half": b, "z": None, "ok": None}
            continue
        z = abs(a - b) / (2.0 * s)
        out[key] = {"first_half": round(a, 4), "second_half": round(b, 4),
                    "z": round(float(z), 2), "ok": bool(z <= z_max)}
    return out


def verdict(*, fes: xr.Dataset, drift: xr.Dataset | None,
            halves: Mapping[str, Any] | None,
            samples: xr.Dataset | None = None) -> dict[str, Any]:
    """The convergence verdict of one transition: each check's value and
    whether it passed (None: not available), and ``converged`` (every
    available check passed).

    fes: the estimator's ``mtcv.fes/1`` output (attributes
    ``min_neighbour_overlap``, ``windows_isolated``, ``windows_dropped``,
    ``solver_converged`` when it sets them); drift: :func:`window_drift`;
    halves: :func:`halves_agree`;
    samples: the sampler's dataset (attributes ``windows_disagreeing`` and
    ``windows_reseeded`` when it sets them, :meth:`Sampler.run`): windows
    whose walkers still disagree beyond their own statistics fail
    ``walkers_equilibrated``.
    """
    checks: dict[str, Any] = {}
    overlap = fes.attrs.get("min_neighbour_overlap")
    if overlap is not None and np.isfinite(float(overlap)):
        checks["overlap"] = {"min_neighbour": round(float(overlap), 4), "limit": MIN_OVERLAP,
                             "ok": bool(float(overlap) >= MIN_OVERLAP)}
        isolated = fes.attrs.get("windows_isolated")
        if isolated is not None:  # left out by the estimator, tied to no other window
            checks["overlap"]["windows_isolated"] = (
                json.loads(isolated) if isinstance(isolated, str) else list(isolated))
    dropped = fes.attrs.get("windows_dropped")
    if dropped is not None:
        ids = json.loads(dropped) if isinstance(dropped, str) else list(dropped)
        superseded = fes.attrs.get("windows_superseded", "[]")
        replaced = json.loads(superseded) if isinstance(superseded, str) else list(superseded)
        # superseded windows were replaced by a stiffer one on purpose: not a failure
        checks["walkers_agree"] = {"windows_dropped": ids, "windows_superseded": replaced,
                                   "ok": not ids}
    if samples is not None and "windows_disagreeing" in samples.attrs:
        left = json.loads(samples.attrs["windows_disagreeing"])
        rerun = json.loads(samples.attrs.get("windows_reseeded", "[]"))
        checks["walkers_equilibrated"] = {
            "windows_disagreeing": [int(d["window"]) for d in left],
            "ratios": [d.get("ratio") for d in left],
            "windows_reseeded": [int(d["window"]) for d in rerun], "ok": not left}
    if drift is not None:
        bad = drift["window"].values[drift["drifting"].values].tolist()
        checks["no_drift"] = {"drifting_windows": [int(w) for w in bad],
                              "alpha": drift.attrs.get("alpha"), "ok": not bad}
    if halves is not None and "error" in halves:  # the estimator refused a half
        checks["halves_agree"] = {"error": halves["error"], "ok": False}
    elif halves is not None:
        oks = [v["ok"] for v in halves.values() if v.get("ok") is not None]
        checks["halves_agree"] = {**halves, "ok": all(oks) if oks else None}
    solver = fes.attrs.get("solver_converged")
    if solver is not None:
        checks["solver"] = {"ok": bool(int(solver))}
    results = [c["ok"] for c in checks.values() if c.get("ok") is not None]
    return {"converged": all(results) if results else None, "checks": checks}


def failed_checks(record: Mapping[str, Any]) -> list[str]:
    """The names of the failed checks of a :func:`verdict` record, or of a
    ``summary.json`` transition row (its ``convergence``)."""
    checks = record.get("checks", record.get("convergence", {}))
    return [name for name, c in checks.items() if c.get("ok") is False]


__all__ = ["DRIFT_ALPHA", "HALVES_Z", "MIN_OVERLAP", "drift_t", "window_drift",
           "split_halves", "halves_agree", "verdict", "failed_checks"]
