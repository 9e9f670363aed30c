"""Convergence checks a bootstrap over samples cannot make (mtcv_core.convergence):
a window with a planted slow drift is found, clean windows are not, halves and
the verdict."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from mtcv_core.convergence import (
    drift_t,
    failed_checks,
    halves_agree,
    split_halves,
    verdict,
    window_drift,
)
from mtcv_core.schema_umbrella import make_umbrella_dataset, transitions_table
from mtcv_core.units import KB_EV_PER_K
from mtcv_mbar import MBAREstimator

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

T = 300.0
KT = KB_EV_PER_K * T
CENTERS = np.linspace(-1.6, 1.6, 17)
K = 40 * KT


def double_well(s: np.ndarray) -> np.ndarray:
    """eV: barrier ~3 kT, B higher by ~1 kT (as tests/test_mbar.py)."""
    return 3 * KT * (s**2 - 1) ** 2 + 0.5 * KT * s


def ar1_window(center: float, walkers: int, n: int, rng: np.random.Generator,
               rho: float = 0.9) -> np.ndarray:
    """Correlated, stationary samples of the biased double well per walker
    (Metropolis random walk started from equilibrium), walker-major."""
    grid = np.linspace(-2.5, 2.5, 20001)
    logp = -(double_well(grid) + 0.5 * K * (grid - center) ** 2) / KT
    p = np.exp(logp - logp.max())
    cdf = np.cumsum(p) / p.sum()
    out = []
    for _ in range(walkers):
        x = float(np.interp(rng.random(), cdf, grid))
        series = np.empty(n)
        step = np.sqrt(1 - rho**2) * 0.3
        for i in range(n):
            y = x + step * rng.normal()
            du = (double_well(y) + 0.5 * K * (y - center) ** 2
                  - double_well(x) - 0.5 * K * (x - center) ** 2) / KT
            if np.log(rng.random()) < -du:
                x = y
            series[i] = x
        out.append(series)
    return np.concatenate(out)


def dataset(rng: np.random.Generator, *, walkers: int = 8, n: int = 200,
            drift_cv: dict[int, float] | None = None,
            drift_energy: dict[int, float] | None = None) -> xr.Dataset:
    """17 stationary windows; ``drift_cv[w]`` adds to every walker of window
    w a ramp from 0 to that value over its run (a slow coordinate still
    relaxing), ``drift_energy[w]`` the same to the recorded energy only (a
    slow coordinate orthogonal to the CV)."""
    cv, energy = [], []
    ramp = np.tile(np.linspace(0.0, 1.0, n), walkers)
    for w, c in enumerate(CENTERS):
        s = ar1_window(c, walkers, n, rng)
        e = double_well(s) + 0.02 * rng.normal(size=s.size)
        s = s + (drift_cv or {}).get(w, 0.0) * ramp
        e = e + (drift_energy or {}).get(w, 0.0) * ramp
        cv.append(s)
        energy.append(e)
    return make_umbrella_dataset(CENTERS, K, np.stack(cv), temperature_K=T, cv_names="s",
                                 energy=np.stack(energy), walkers=walkers)


def test_planted_slow_drifts_are_found_and_only_they():
    """A window whose walkers still drift in xi (by 0.8 of its thermal width
    over the run) and one that drifts only in the unbiased energy (by 0.05 eV,
    2 kT) are flagged; the 15 stationary windows are not."""
    rng = np.random.default_rng(3)
    width = np.sqrt(KT / K)
    ds = dataset(rng, drift_cv={5: 0.8 * width}, drift_energy={11: 0.05})
    drift = window_drift(ds)
    assert drift["drifting"].values.nonzero()[0].tolist() == [5, 11]
    assert list(drift["observable"].values) == ["s", "energy"]
    assert abs(float(drift["drift_t"].sel(window=5, observable="s"))) > float(
        drift["critical_t"].sel(window=5))
    assert abs(float(drift["drift_t"].sel(window=11, observable="energy"))) > float(
        drift["critical_t"].sel(window=11))
    fes = MBAREstimator(n_bins=30, n_bootstraps=0).estimate(
        ds, basins={"A": (-2.5, 0.0), "B": (0.0, 2.5)})
    record = verdict(fes=fes, drift=drift, halves=None)
    assert record["converged"] is False
    assert failed_checks(record) == ["no_drift"]
    assert record["checks"]["no_drift"]["drifting_windows"] == [5, 11]
    assert record["checks"]["solver"]["ok"] is True


def test_stationary_windows_rarely_raise_a_false_alarm():
    """Twelve runs of 17 stationary windows: the family-wise rate is 1 %, so
    more than one flagged run in twelve would be a broken test statistic."""
    rng = np.random.default_rng(8)
    flagged = sum(bool(window_drift(dataset(rng, n=120))["drifting"].any()) for _ in range(12))
    assert flagged <= 1


def test_drift_of_a_single_walker_uses_its_blocks():
    rng = np.random.default_rng(1)
    still = rng.normal(size=4000)
    moving = still + np.linspace(0.0, 1.0, 4000)
    t_still, dof = drift_t(still, 1)
    assert dof == 6 and abs(t_still) < 5
    # a steady ramp also spreads the block means within each half: t is modest
    assert abs(drift_t(moving, 1)[0]) > 3.5


def test_halves_split_every_walker_and_keep_the_windows():
    rng = np.random.default_rng(2)
    ds = dataset(rng, walkers=4, n=100)
    first, second = split_halves(ds)
    for half in (first, second):
        assert half.sizes["window"] == ds.sizes["window"]
        assert int(half["n_samples"][0]) == 200
        assert half.attrs["walkers"] == 4
    # walker 1 of window 3: samples 100..149 go to the first half, 150..199 to the second
    np.testing.assert_array_equal(first["cv_values"].values[3, 50:100, 0],
                                  ds["cv_values"].values[3, 100:150, 0])
    np.testing.assert_array_equal(second["energy"].values[3, 50:100],
                                  ds["energy"].values[3, 150:200])


def test_halves_agree_within_their_errors_and_disagree_beyond():
    rng = np.random.default_rng(4)
    ds = dataset(rng, walkers=8, n=200)
    basins = {"A": (-2.5, 0.0), "B": (0.0, 2.5)}
    est = MBAREstimator(n_bins=30, n_bootstraps=20, bootstrap_blocks=8, seed=1)
    full = transitions_table(est.estimate(ds, basins=basins))[0]
    halves = [transitions_table(est.estimate(h, basins=basins))[0] for h in split_halves(ds)]
    agree = halves_agree(full, *halves)
    assert agree["barrier_eV"]["ok"] and agree["delta_F_eV"]["ok"], agree
    shifted = dict(halves[1], delta_F_eV=halves[1]["delta_F_eV"] + 8 * full["delta_F_err_eV"])
    assert halves_agree(full, halves[0], shifted)["delta_F_eV"]["ok"] is False
    missing = halves_agree(full, halves[0], dict(halves[1], barrier_eV=float("nan")))
    assert missing["barrier_eV"]["ok"] is None


def test_report_lines_with_missing_halves():
    """A tiny run may give a barrier on one half only: the report says n/a."""
    from mtcv_core.stages.report import _convergence_lines

    halves = halves_agree({"barrier_eV": 0.5, "barrier_err_eV": 0.01, "delta_F_eV": 0.1,
                           "delta_F_err_eV": 0.01},
                          {"barrier_eV": 0.51, "delta_F_eV": 0.1},
                          {"barrier_eV": None, "delta_F_eV": 0.12})
    row = {"from": "A", "to": "B", "converged": True,
           "convergence": {"halves_agree": {**halves, "ok": True}}}
    lines = _convergence_lines([row], [3])
    assert "| A->B | yes | - | 0.510 / n/a | 0.100 / 0.120 (z 1.0) |" in lines
    assert lines[-1] == "Drifting windows: 3."


def test_a_stiffer_window_near_a_soft_ones_centre_supersedes_it():
    from mtcv_core.ergodicity import superseded_windows

    kt = 0.025
    # soft at 0.296; stiff (k 34.9, width 0.027) at 0.293 and at 0.40; a soft one alone
    c = np.array([[0.296], [0.293], [0.40], [-1.0]])
    k = np.array([[8.7], [34.9], [34.9], [8.7]])
    np.testing.assert_array_equal(superseded_windows(c, k, kt), [True, False, False, False])
    # a quarter width is the limit; periodic dimensions wrap
    width = np.sqrt(kt / 34.9)
    far = np.array([[0.0], [0.26 * width]])
    assert not superseded_windows(far, np.array([[8.7], [34.9]]), kt).any()
    wrapped = np.array([[3.14], [-3.14]])
    assert superseded_windows(wrapped, np.array([[8.7], [34.9]]), kt,
                              periods=np.array([2 * np.pi]))[0]


def test_a_half_the_estimator_refuses_fails_the_halves_check():
    from mtcv_core.convergence import failed_checks, verdict

    fes = xr.Dataset(attrs={"min_neighbour_overlap": 0.1, "solver_converged": 1})
    v = verdict(fes=fes, drift=None, halves={"error": "the estimator failed on the second "
                                                      "halves: too soft", "ok": False})
    assert v["converged"] is False and failed_checks(v) == ["halves_agree"]
    assert "second halves" in v["checks"]["halves_agree"]["error"]
