"""The MBAR estimator against exact answers.

Umbrella windows are sampled exactly from their biased distributions (no
MD): a 1D double well by inverse CDF on a fine grid, a Gaussian mixture in
closed form. Estimates are checked with z-scores against the exact PMF,
basin free energies and barriers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import xarray as xr
from scipy.special import ndtr

from mtcv_core.config import ConfigError, check_options
from mtcv_core.fes_paths import basin_barriers, minimax_barrier, minimax_levels, minimax_path
from mtcv_core.io import VALIDATORS, read_dataset, write_dataset
from mtcv_core.schema import SchemaError
from mtcv_mbar import (
    FES_SCHEMA,
    KB_EV_PER_K,
    UMBRELLA_SCHEMA,
    MBAREstimator,
    make_umbrella_dataset,
    transitions_table,
    validate_umbrella,
)
from mtcv_mbar.solver import mbar_hessian, solve_mbar

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")

T = 300.0
KT = KB_EV_PER_K * T
GRID = np.linspace(-2.5, 2.5, 20001)


def double_well(s: np.ndarray) -> np.ndarray:
    """Asymmetric double well, eV: barrier ~3 kT, basin B higher by ~1 kT."""
    return 3 * KT * (s**2 - 1) ** 2 + 0.5 * KT * s


def sample_biased(u, center: float, k: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """Exact samples of exp(-(u(s) + k/2 (s - c)^2)/kT) by inverse CDF on GRID."""
    logp = -(u(GRID) + 0.5 * k * (GRID - center) ** 2) / KT
    p = np.exp(logp - logp.max())
    cdf = np.concatenate([[0.0], np.cumsum(0.5 * (p[1:] + p[:-1]) * np.diff(GRID))])
    return np.interp(rng.random(n), cdf / cdf[-1], GRID)


def exact_bin_pmf(u, edges: np.ndarray) -> np.ndarray:
    """-ln P(bin) (kT units, unnormalised) by fine quadrature in each bin."""
    out = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        s = np.linspace(lo, hi, 401)
        out.append(-np.log(np.trapezoid(np.exp(-u(s) / KT), s)))
    return np.array(out)


def exact_basin_f(u, lo: float, hi: float) -> float:
    s = np.linspace(lo, hi, 200001)
    return float(-KT * np.log(np.trapezoid(np.exp(-u(s) / KT), s)))


@pytest.fixture(scope="module")
def double_well_fes() -> tuple[xr.Dataset, xr.Dataset]:
    rng = np.random.default_rng(7)
    centers = np.linspace(-1.6, 1.6, 17)
    k = 40 * KT
    cv = np.stack([sample_biased(double_well, c, k, 2000, rng) for c in centers])
    ds = make_umbrella_dataset(centers, k, cv, temperature_K=T, cv_names="s")
    fes = MBAREstimator(n_bins=40, n_bootstraps=20, seed=3).estimate(
        ds, basins={"A": (-2.5, 0.0), "B": (0.0, 2.5)})
    return ds, fes


def test_double_well_pmf_matches_exact(double_well_fes):
    _, fes = double_well_fes
    pmf, err = fes["pmf"].values, fes["pmf_err"].values
    exact = exact_bin_pmf(double_well, fes["bin_edges"].values) * KT
    ref = int(np.nanargmin(pmf))
    assert pmf[ref] == 0.0 and err[ref] == 0.0
    ok = np.isfinite(pmf) & (np.arange(len(pmf)) != ref)
    z = (pmf[ok] - (exact[ok] - exact[ref])) / err[ok]
    assert ok.sum() >= 35
    assert np.mean(np.abs(z) < 4) >= 0.95, z
    assert np.mean(np.abs(z) < 2) >= 0.8, z


def test_double_well_basins_and_barrier(double_well_fes):
    _, fes = double_well_fes
    f_a = exact_basin_f(double_well, -2.5, 0.0)
    f_b = exact_basin_f(double_well, 0.0, 2.5)
    d = fes["delta_F"].sel(basin_from="A", basin_to="B")
    d_err = fes["delta_F_err"].sel(basin_from="A", basin_to="B")
    assert abs(float(d) - (f_b - f_a)) / float(d_err) < 4
    assert float(fes["delta_F"].sel(basin_from="B", basin_to="A")) == pytest.approx(-float(d))
    # basin free energies are -kT ln P(basin): the two probabilities add up to ~1
    p = np.exp(-fes["basin_free_energy"].values / KT)
    assert p.sum() == pytest.approx(1.0, abs=1e-3)
    # barrier on the same bins, exactly
    exact = exact_bin_pmf(double_well, fes["bin_edges"].values)
    centers = fes["bin_center"].values
    labels = np.where(centers < 0, 0, 1)
    exact_bar, _ = basin_barriers(exact, labels, 2)
    rows = {(r["from"], r["to"]): r for r in transitions_table(fes)}
    assert set(rows) == {("A", "B"), ("B", "A")}
    for (a, b), (i, j) in {("A", "B"): (0, 1), ("B", "A"): (1, 0)}.items():
        r = rows[a, b]
        assert 0 < r["barrier_err_eV"] < 0.01
        assert abs(r["barrier_eV"] - exact_bar[i, j] * KT) / r["barrier_err_eV"] < 4
    assert rows["A", "B"]["barrier_eV"] > rows["B", "A"]["barrier_eV"]


def test_overlap_and_window_outputs(double_well_fes):
    ds, fes = double_well_fes
    o = fes["overlap"].values
    assert o.shape == (17, 17)
    np.testing.assert_allclose(o.sum(axis=1), 1.0, atol=1e-8)
    nb = fes.attrs["min_neighbour_overlap"]
    assert 0.05 < nb < 1
    # the chain of neighbours is one spanning tree: the bottleneck is at least its weakest link
    assert nb >= min(min(o[i, i + 1], o[i + 1, i]) for i in range(16)) - 1e-12
    assert fes.attrs["overlap_bottleneck"] == nb
    # independent samples: g ~ 1
    g = fes["statistical_inefficiency"].values
    assert np.all((g >= 1) & (g < 1.6))
    assert fes.attrs["mtcv_schema"] == FES_SCHEMA and fes.attrs["temperature_K"] == T
    assert fes["pmf"].attrs["units"] == "eV" and fes["bin_center"].attrs["units"] == "1"


def mixture_samples(center: float, k_w: float, n: int, rng: np.random.Generator,
                    wells: list[tuple[float, float, float]]) -> np.ndarray:
    """Exact samples of exp(-beta (U + bias)) for U = -kT ln sum_i exp(-beta
    (k_i/2 (s - m_i)^2 + c_i)): each Gaussian component times the Gaussian
    bias is Gaussian, with a closed-form weight."""
    b = k_w / KT
    logw, mu, sd = [], [], []
    for k_i, m_i, c_i in wells:
        a = k_i / KT
        logw.append(-0.5 * np.log(a + b) - a * b * (m_i - center) ** 2 / (2 * (a + b))
                    - c_i / KT)
        mu.append((a * m_i + b * center) / (a + b))
        sd.append(1 / np.sqrt(a + b))
    w = np.exp(np.array(logw) - max(logw))
    comp = rng.choice(len(wells), size=n, p=w / w.sum())
    return rng.normal(np.array(mu)[comp], np.array(sd)[comp])


def test_harmonic_basins_analytic():
    """Two harmonic basins of stiffness k1, k2 (offset c): dF = -kT ln
    sqrt(k1/k2) + c."""
    k1, k2, c = 16 * KT, 64 * KT, 0.5 * KT
    wells = [(k1, -1.0, 0.0), (k2, 1.0, c)]
    rng = np.random.default_rng(11)
    centers = np.linspace(-1.5, 1.5, 13)
    k_w = 20 * KT
    cv = np.stack([mixture_samples(x, k_w, 1500, rng, wells) for x in centers])
    ds = make_umbrella_dataset(centers, k_w, cv, temperature_K=T, cv_names="s")
    fes = MBAREstimator(n_bins=30, n_bootstraps=0).estimate(
        ds, basins={"A": (-5.0, 0.0), "B": (0.0, 5.0)})
    analytic = -KT * np.log(np.sqrt(k1 / k2)) + c
    # exact populations of the mixture (tails across s = 0 included)
    z1, z2 = np.sqrt(KT / k1), np.sqrt(KT / k2) * np.exp(-c / KT)
    p_a = z1 * ndtr(1 / np.sqrt(KT / k1)) + z2 * ndtr(-1 / np.sqrt(KT / k2))
    p_b = z1 * ndtr(-1 / np.sqrt(KT / k1)) + z2 * ndtr(1 / np.sqrt(KT / k2))
    exact = -KT * np.log(p_b / p_a)
    assert exact == pytest.approx(analytic, abs=1e-5)
    d = float(fes["delta_F"].sel(basin_from="A", basin_to="B"))
    err = float(fes["delta_F_err"].sel(basin_from="A", basin_to="B"))
    assert 0 < err < 0.2 * KT
    assert abs(d - exact) / err < 4
    assert np.all(np.isnan(fes["barrier_err"].values))  # no bootstrap requested


def test_decorrelation_of_ar1_series():
    """AR(1) with coefficient phi has g = (1 + phi)/(1 - phi)."""
    phi, n = 0.8, 20000
    rng = np.random.default_rng(5)
    centers = np.array([-0.5, 0.0, 0.5])
    series = np.empty((3, n))
    for w, c in enumerate(centers):
        x = np.empty(n)
        x[0] = 0.0
        noise = rng.normal(0.0, 0.1 * np.sqrt(1 - phi**2), n)
        for t in range(1, n):
            x[t] = phi * x[t - 1] + noise[t]
        series[w] = c + x
    ds = make_umbrella_dataset(centers, 2.0, series, temperature_K=T, cv_names="s")
    fes = MBAREstimator(n_bins=20, n_bootstraps=0, max_samples_per_window=0).estimate(ds)
    g = fes["statistical_inefficiency"].values
    expected = (1 + phi) / (1 - phi)
    np.testing.assert_allclose(g, expected, rtol=0.2)
    np.testing.assert_allclose(fes["n_used"].values, n / g, rtol=0.01)
    # the cap keeps evenly spaced uncorrelated samples
    capped = MBAREstimator(n_bins=20, n_bootstraps=0, max_samples_per_window=500).estimate(ds)
    assert capped["n_used"].values.tolist() == [500, 500, 500]
    assert "basin" not in fes.coords and transitions_table(fes) == []
    fes_all = MBAREstimator(n_bins=20, n_bootstraps=0, decorrelate=False,
                            max_samples_per_window=0).estimate(ds)
    assert np.all(fes_all["n_used"].values == n)
    np.testing.assert_allclose(fes_all["statistical_inefficiency"].values, g)


def test_subsampled_estimate_agrees_with_the_full_one_on_a_harmonic_well():
    """Correlated AR(1) windows on U = k0 (s - 0.3)^2 / 2: MBAR on the
    decorrelated samples and MBAR on every sample give the same F_B - F_A
    (basins s < 0, s >= 0) within the subsampled error bar, both match the
    analytic value, and only the subsampled error is honest (the full one
    counts correlated samples as independent)."""
    rng = np.random.default_rng(21)
    k0, kb, s0, phi, n = 2.0 * KT, 20.0 * KT, 0.3, 0.9, 4000
    centers = np.linspace(-1.5, 1.5, 9)
    series = np.empty((len(centers), n))
    for w, c in enumerate(centers):
        mean, sd = (k0 * s0 + kb * c) / (k0 + kb), np.sqrt(KT / (k0 + kb))
        x = np.empty(n)
        x[0] = rng.normal(mean, sd)
        kicks = rng.normal(0.0, sd * np.sqrt(1 - phi**2), n)
        for t in range(1, n):
            x[t] = mean + phi * (x[t - 1] - mean) + kicks[t]
        series[w] = x
    ds = make_umbrella_dataset(centers, kb, series, temperature_K=T, cv_names="s")
    basins = {"A": (-5.0, 0.0), "B": (0.0, 5.0)}
    pair = {"basin_from": "A", "basin_to": "B"}
    sub = MBAREstimator(n_bins=20, n_bootstraps=0).estimate(ds, basins=basins)
    full = MBAREstimator(n_bins=20, n_bootstraps=0, decorrelate=False,
                         max_samples_per_window=0).estimate(ds, basins=basins)
    assert np.all(sub["n_used"].values < n / 10)  # g ~ (1 + phi) / (1 - phi) = 19
    sigma = np.sqrt(KT / k0)
    p_b = ndtr(s0 / sigma)
    exact = -KT * np.log(p_b / (1 - p_b))
    d_sub, e_sub = (float(sub[v].sel(pair)) for v in ("delta_F", "delta_F_err"))
    d_full, e_full = (float(full[v].sel(pair)) for v in ("delta_F", "delta_F_err"))
    assert abs(d_sub - d_full) < 2 * e_sub
    assert abs(d_sub - exact) < 4 * e_sub
    assert abs(d_full - exact) < 4 * e_sub
    assert e_full < e_sub / 3


def test_two_dimensional_pmf_and_minimax_barrier():
    """Separable 2D surface: double well in x, Gaussian in y, windows along x
    only (zero spring in y)."""
    rng = np.random.default_rng(21)
    ky = 8 * KT
    cx = np.linspace(-1.6, 1.6, 13)
    kx = 40 * KT
    x = np.stack([sample_biased(double_well, c, kx, 1000, rng) for c in cx])
    y = rng.normal(0.0, np.sqrt(KT / ky), x.shape)
    centers = np.stack([cx, np.zeros_like(cx)], axis=1)
    springs = np.stack([np.full_like(cx, kx), np.zeros_like(cx)], axis=1)
    ds = make_umbrella_dataset(centers, springs, np.stack([x, y], axis=-1), temperature_K=T,
                               cv_names=["x", "y"])
    fes = MBAREstimator(n_bins=20, n_bootstraps=20, seed=1).estimate(
        ds, basin_of=lambda s: np.where(s[:, 0] < 0, 0, 1), basin_names=["A", "B"])
    assert fes["pmf"].dims == ("bin_x", "bin_y")
    ex = exact_bin_pmf(double_well, fes["bin_edges_x"].values)
    ey_edges = fes["bin_edges_y"].values
    ey = -np.log(np.diff(ndtr(ey_edges / np.sqrt(KT / ky))))
    exact = (ex[:, None] + ey[None, :]) * KT
    pmf, err = fes["pmf"].values, fes["pmf_err"].values
    ref = np.unravel_index(int(np.nanargmin(pmf)), pmf.shape)
    ok = np.isfinite(pmf) & np.isfinite(err) & (err > 0)
    ok &= fes["bin_count"].values >= 20  # bootstrap errors of sparse bins are unreliable
    z = (pmf - (exact - exact[ref]))[ok] / err[ok]
    assert ok.sum() > 100
    assert np.mean(np.abs(z) < 4) >= 0.95
    # minimax in a separable surface: the 1D barrier in x
    cxs = fes["bin_center_x"].values
    i_a = int(np.argmin(np.where(cxs < 0, ex, np.inf)))
    i_b = int(np.argmin(np.where(cxs >= 0, ex, np.inf)))
    exact_ab = (ex[i_a:i_b + 1].max() - ex[i_a]) * KT
    bar = float(fes["barrier"].sel(basin_from="A", basin_to="B"))
    bar_err = float(fes["barrier_err"].sel(basin_from="A", basin_to="B"))
    assert abs(bar - exact_ab) / bar_err < 4
    f_a = exact_basin_f(double_well, -2.5, 0.0)
    f_b = exact_basin_f(double_well, 0.0, 2.5)
    d = float(fes["delta_F"].sel(basin_from="A", basin_to="B"))
    d_err = float(fes["delta_F_err"].sel(basin_from="A", basin_to="B"))
    assert abs(d - (f_b - f_a)) / d_err < 4
    assert fes["basin_minimum"].sel(basin="A").values[0] < 0


def test_barrier_bias_correction_subtracts_the_bootstrap_bias(double_well_fes):
    """barrier_bias (mean of the bootstrap barriers minus the estimate) is
    reported always and subtracted with barrier_bias_correction; the error
    is the same and the corrected barrier still matches the exact one."""
    ds, plain = double_well_fes
    corrected = MBAREstimator(n_bins=40, n_bootstraps=20, seed=3,
                              barrier_bias_correction=True).estimate(
        ds, basins={"A": (-2.5, 0.0), "B": (0.0, 2.5)})
    pair = {"basin_from": "A", "basin_to": "B"}
    bias = float(plain["barrier_bias"].sel(pair))
    err = float(plain["barrier_err"].sel(pair))
    assert np.isfinite(bias) and 0 < abs(bias) < err
    assert float(corrected["barrier"].sel(pair)) == pytest.approx(
        float(plain["barrier"].sel(pair)) - bias, abs=1e-12)
    xr.testing.assert_identical(corrected["barrier_err"], plain["barrier_err"])
    xr.testing.assert_identical(corrected["barrier_bias"], plain["barrier_bias"])
    exact = exact_bin_pmf(double_well, plain["bin_edges"].values) * KT
    centres = plain["bin_center"].values
    lo = int(np.nanargmin(np.where(centres < 0, exact, np.inf)))
    hi = int(np.nanargmin(np.where(centres >= 0, exact, np.inf)))
    exact_ab = np.nanmax(exact[lo:hi + 1]) - exact[lo]
    assert abs(float(corrected["barrier"].sel(pair)) - exact_ab) < 4 * err


def test_netcdf_round_trip_and_registry(double_well_fes, tmp_path):
    ds, fes = double_well_fes
    assert VALIDATORS[UMBRELLA_SCHEMA] is validate_umbrella
    write_dataset(ds, tmp_path / "umbrella.nc")
    back = read_dataset(tmp_path / "umbrella.nc", schema=UMBRELLA_SCHEMA)
    xr.testing.assert_identical(back, ds)
    write_dataset(fes, tmp_path / "fes.nc")
    fes_back = read_dataset(tmp_path / "fes.nc", schema=FES_SCHEMA)
    xr.testing.assert_allclose(fes_back, fes)
    assert transitions_table(fes_back) == transitions_table(fes)


@pytest.mark.parametrize(("mutate", "message"), [
    (lambda d: d.drop_vars("spring_constant"), "'spring_constant' is missing"),
    (lambda d: d.assign(center=(("cv", "window"), d["center"].values.T)),
     "'center' has dims ('cv', 'window')"),
    (lambda d: d.assign_attrs(temperature_K="hot"), "'temperature_K'"),
    (lambda d: d.assign_attrs(mtcv_schema="mtcv.frames/1"), "'mtcv.umbrella/1'"),
    (lambda d: d.assign(n_samples=d["n_samples"] * 0), "'n_samples' must lie in"),
])
def test_bad_dataset_gives_clear_error(mutate, message):
    ds = make_umbrella_dataset([0.0, 1.0], 1.0, [np.zeros(5), np.ones(3)], temperature_K=T)
    assert list(ds["n_samples"].values) == [5, 3]
    assert np.isnan(ds["cv_values"].values[1, 3:]).all()
    bad = mutate(ds)
    for name in ("center", "n_samples"):
        if name in bad:
            bad[name].attrs.update(ds[name].attrs)
    with pytest.raises(SchemaError, match="my.nc") as info:
        validate_umbrella(bad, where="my.nc")
    assert message in str(info.value)
    with pytest.raises(SchemaError, match="mbar: samples"):
        MBAREstimator(n_bootstraps=0).estimate(bad)


def test_options_and_registration():
    from mtcv_core.plugins import load_plugins

    assert load_plugins().get("estimator", "mbar").factory is MBAREstimator
    with pytest.raises(ConfigError, match="n_bins"):
        check_options(MBAREstimator, {"n_bins": 0}, "estimate.mbar")
    ds = make_umbrella_dataset([0.0, 1.0], 1.0, np.zeros((2, 5)), temperature_K=T)
    with pytest.raises(ValueError, match="reweighting"):
        MBAREstimator().estimate(ds, temperature_K=350.0)


def test_newton_solver_matches_pymbar():
    import pymbar

    rng = np.random.default_rng(0)
    centers = np.linspace(-1, 1, 5)
    s = np.concatenate([rng.normal(c, 0.3, 300) for c in centers])
    u_kn = 0.5 * 10 * (s[None, :] - centers[:, None]) ** 2
    n_k = np.full(5, 300)
    ref = pymbar.MBAR(u_kn, n_k).f_k
    np.testing.assert_allclose(solve_mbar(u_kn, n_k), ref, atol=1e-6)
    np.testing.assert_allclose(solve_mbar(u_kn, n_k, ref + 0.3), ref, atol=1e-6)
    # a bootstrap replicate, solved with the full data's Hessian held fixed
    idx = np.concatenate([300 * k + rng.integers(0, 300, 300) for k in range(5)])
    ref_b = pymbar.MBAR(u_kn[:, idx], n_k).f_k
    hess = mbar_hessian(u_kn, n_k, ref)
    np.testing.assert_allclose(solve_mbar(u_kn[:, idx], n_k, ref, hessian=hess), ref_b,
                               atol=1e-6)


def test_bootstrap_multiplicities_match_repeated_columns(monkeypatch):
    """A bootstrap replicate given as sample multiplicities (no copy of
    u_kn) solves to the same free energies and unbiased weights as the
    replicate's repeated columns, with and without the fixed Hessian; the
    chunked passes give the same numbers on one thread as on several."""
    import mtcv_mbar.solver as solver

    rng = np.random.default_rng(11)
    centers = np.linspace(-1, 1, 6)
    s = np.concatenate([rng.normal(c, 0.25, 200) for c in centers])
    u_kn = 0.5 * 12 * (s[None, :] - centers[:, None]) ** 2 + 0.8 * s[None, :] ** 2
    n_k = np.full(6, 200)
    f = solve_mbar(u_kn, n_k)
    idx = np.concatenate([200 * k + rng.integers(0, 200, 200) for k in range(6)])
    counts = np.bincount(idx, minlength=u_kn.shape[1]).astype(float)
    hess = mbar_hessian(u_kn, n_k, f)
    for h in (None, hess):
        f_rep, log_w_rep = solver.solve_unbiased_log_weights(u_kn[:, idx], n_k, f, hessian=h)
        f_mul, log_w_mul = solver.solve_unbiased_log_weights(u_kn, n_k, f, hessian=h,
                                                             weights=counts)
        np.testing.assert_allclose(f_mul, f_rep, atol=1e-9)
        # the weight of each drawn sample, summed over its copies
        w_rep = np.bincount(idx, weights=np.exp(log_w_rep), minlength=len(s))
        np.testing.assert_allclose(np.exp(log_w_mul), w_rep, atol=1e-12)
    assert np.all(np.isneginf(log_w_mul[counts == 0]))
    monkeypatch.setattr(solver, "CHUNK_ELEMENTS", 600)  # 100 samples per chunk
    monkeypatch.setattr(solver, "THREADS", 1)
    one = solver._evaluate(u_kn, np.log(n_k), n_k, f + 0.1, hessian=True, weights=counts)
    monkeypatch.setattr(solver, "THREADS", 3)
    monkeypatch.setattr(solver, "_POOL", None)
    three = solver._evaluate(u_kn, np.log(n_k), n_k, f + 0.1, hessian=True, weights=counts)
    assert one[0] == three[0]
    for a, b in zip(one[1:], three[1:], strict=True):
        np.testing.assert_array_equal(a, b)


def test_chunked_mbar_matches_pymbar(monkeypatch):
    """The bounded-memory path of large problems (ChunkedMBAR, the coarse
    start, chunked passes) against pymbar, with chunks of a few samples:
    overlap, free-energy differences and their asymptotic errors, perturbed
    (basin) free energies and errors, to 1e-10."""
    import pymbar

    import mtcv_mbar.solver as solver

    rng = np.random.default_rng(5)
    centers = np.linspace(-1, 1, 12)
    s = np.concatenate([rng.normal(c, 0.15, 150) for c in centers])
    u_kn = 0.5 * 40 * (s[None, :] - centers[:, None]) ** 2 + 1.5 * s[None, :] ** 2
    n_k = np.full(12, 150)
    monkeypatch.setattr(solver, "CHUNK_ELEMENTS", 1000)  # 83 samples per chunk
    f = solve_mbar(u_kn, n_k, solver.coarse_start(u_kn, n_k, per_state=10))
    ref = pymbar.MBAR(u_kn, n_k)
    np.testing.assert_allclose(f, ref.f_k, atol=1e-8)
    ours = solver.ChunkedMBAR(u_kn, n_k, f)
    np.testing.assert_allclose(ours.compute_overlap()["matrix"],
                               ref.compute_overlap()["matrix"], atol=1e-10)
    u_ln = np.zeros((3, len(s)))  # unbiased, and restricted to s <= 0 and to s > 0
    u_ln[1, s > 0] = np.inf
    u_ln[2, s <= 0] = np.inf
    for a, b in ((ours.compute_free_energy_differences(),
                  ref.compute_free_energy_differences()),
                 (ours.compute_perturbed_free_energies(u_ln),
                  ref.compute_perturbed_free_energies(u_ln))):
        np.testing.assert_allclose(a["Delta_f"], b["Delta_f"], atol=1e-8)
        np.testing.assert_allclose(a["dDelta_f"], b["dDelta_f"], atol=1e-10)
    assert np.all(np.isfinite(ours.compute_perturbed_free_energies(u_ln)["dDelta_f"]))


def test_large_problems_take_the_bounded_memory_path_with_the_same_result(monkeypatch):
    """The estimator on a 2D case with the large-problem path switched on
    (every problem counted large) gives pymbar's path's PMF, basin free
    energies, their errors and the overlap."""
    import mtcv_mbar.estimator as estimator

    rng = np.random.default_rng(8)
    cx = np.linspace(-1.6, 1.6, 9)
    kx = 40 * KT
    x = np.stack([sample_biased(double_well, c, kx, 400, rng) for c in cx])
    y = rng.normal(0.0, 0.2, x.shape)
    ds = make_umbrella_dataset(np.stack([cx, np.zeros_like(cx)], axis=1),
                               np.stack([np.full_like(cx, kx), np.full_like(cx, 2 * KT)], axis=1),
                               np.stack([x, y], axis=-1), temperature_K=T, cv_names=["x", "y"])

    def run():
        return MBAREstimator(n_bins=12, n_bootstraps=4, seed=1).estimate(
            ds, basin_of=lambda v: np.where(v[:, 0] < 0, 0, 1), basin_names=["A", "B"])

    plain = run()
    monkeypatch.setattr(estimator, "COARSE_START_WINDOWS", 2)
    large = run()
    for var in ("pmf", "pmf_err", "overlap", "delta_F", "delta_F_err", "barrier", "barrier_err",
                "basin_free_energy", "basin_free_energy_err"):
        np.testing.assert_allclose(large[var].values, plain[var].values, atol=1e-7,
                                   err_msg=var)


def test_minimax_paths():
    f = np.array([0.0, 3.0, 1.0, 5.0, 2.0, 0.5])
    level, path = minimax_path(f, 0, 5)
    assert level == 5.0 and path == [(i,) for i in range(6)]
    assert minimax_path(f, 0, 5, periodic=True) == (0.5, [(0,), (5,)])
    assert minimax_barrier(f, 5, 0) == 4.5
    # 2D: a wall with one gap; NaN cells are impassable
    g = np.zeros((5, 5))
    g[2, :] = 10.0
    g[2, 3] = 4.0
    g[2, 0] = np.nan
    level, path = minimax_path(g, (0, 0), (4, 0))
    assert level == 4.0 and (2, 3) in path
    steps = np.abs(np.diff(np.array(path), axis=0)).sum(axis=1)
    assert np.all(steps == 1)
    lv = minimax_levels(g, (0, 0))
    assert np.isinf(lv[2, 0]) and lv[4, 4] == 4.0
    # diagonal moves slip between two touching blocks
    h = np.array([[0.0, 9.0], [9.0, 0.0]])
    assert minimax_barrier(h, (0, 0), (1, 1)) == 9.0
    assert minimax_barrier(h, (0, 0), (1, 1), diagonal=True) == 0.0
    bars, minima = basin_barriers(g, np.array([[0] * 5] * 2 + [[-1] * 5] + [[1] * 5] * 2), 2)
    assert minima[0] is not None and bars[0, 1] == 4.0 and bars[1, 0] == 4.0


def test_windows_whose_walkers_disagree_are_dropped(double_well_fes):
    """A window whose four walkers sampled two different places (as on an
    unstable barrier top) is left out; the basin free energies stay exact."""
    ds, fes = double_well_fes
    rng = np.random.default_rng(11)
    cv = ds["cv_values"].values.copy()
    n = cv.shape[1] // 4
    # window 8 (centre 0): walkers 0-1 stuck near -0.9, walkers 2-3 near +0.9
    cv[8, :, 0] = np.concatenate([rng.normal(m, 0.1, n) for m in (-0.9, -0.9, 0.9, 0.9)])
    bad = ds.copy(data={**{v: ds[v].values for v in ds.data_vars}, "cv_values": cv})
    bad.attrs["walkers"] = 4
    basins = {"A": (-2.5, 0.0), "B": (0.0, 2.5)}
    with pytest.warns(RuntimeWarning, match=r"dropped windows \[8\]"):
        out = MBAREstimator(n_bins=40, n_bootstraps=0).estimate(bad, basins=basins)
    assert out.sizes["window"] == ds.sizes["window"] - 1 and out.attrs["windows_dropped"] == "[8]"
    exact = exact_basin_f(double_well, 0.0, 2.5) - exact_basin_f(double_well, -2.5, 0.0)
    got = float(out["delta_F"].sel(basin_from="A", basin_to="B"))
    err = float(out["delta_F_err"].sel(basin_from="A", basin_to="B"))
    assert abs(got - exact) < 4 * err
    kept = MBAREstimator(n_bins=40, n_bootstraps=0, max_walker_spread=0).estimate(
        bad, basins=basins)
    assert kept.sizes["window"] == ds.sizes["window"]


def test_a_window_superseded_by_a_stiffer_one_at_its_centre_is_dropped(double_well_fes):
    """A soft window on the barrier top (its restrained potential is itself
    a double well) whose walkers all stayed on the left, next to the stiffer
    window the refinement put at the same centre: the soft one is left out
    and reported, and the free energies stay exact; without the option it
    is kept and pulls F_B - F_A away."""
    ds, _ = double_well_fes
    rng = np.random.default_rng(5)
    k_soft = 1.0 * KT
    soft = sample_biased(double_well, 0.0, k_soft, 8000, rng)
    soft = -np.abs(soft)[:2000]  # stuck in the left mode
    stiff = sample_biased(double_well, 0.0, 40 * KT, 2000, rng)
    centers = np.concatenate([ds["center"].values[:, 0], [0.0, 0.0]])
    springs = np.concatenate([ds["spring_constant"].values[:, 0], [k_soft, 40 * KT]])
    cv = np.concatenate([ds["cv_values"].values[:, :, 0], soft[None], stiff[None]])
    both = make_umbrella_dataset(centers, springs, cv, temperature_K=T, cv_names="s")
    basins = {"A": (-2.5, 0.0), "B": (0.0, 2.5)}
    exact = exact_basin_f(double_well, 0.0, 2.5) - exact_basin_f(double_well, -2.5, 0.0)
    out = MBAREstimator(n_bins=40, n_bootstraps=0).estimate(both, basins=basins)
    assert out.attrs["windows_superseded"] == "[17]" and out.sizes["window"] == 18
    got = float(out["delta_F"].sel(basin_from="A", basin_to="B"))
    err = float(out["delta_F_err"].sel(basin_from="A", basin_to="B"))
    assert abs(got - exact) < 4 * err
    kept = MBAREstimator(n_bins=40, n_bootstraps=0, drop_superseded=False).estimate(
        both, basins=basins)
    assert kept.sizes["window"] == 19 and kept.attrs["windows_superseded"] == "[]"
    biased = float(kept["delta_F"].sel(basin_from="A", basin_to="B"))
    assert biased - exact > 4 * err


def _walker_windows(rng: np.random.Generator, walkers: int, n: int, offset: float = 0.0):
    """17 windows over the double well, ``walkers`` walkers of ``n`` exact
    samples each; with ``offset`` every walker's samples are shifted by its
    own N(0, offset) (a slow mode the walker never leaves)."""
    centers = np.linspace(-1.6, 1.6, 17)
    k = 40 * KT
    cv = np.stack([np.concatenate([sample_biased(double_well, c, k, n, rng)
                                   + offset * rng.normal() for _ in range(walkers)])
                   for c in centers])
    return make_umbrella_dataset(centers, k, cv, temperature_K=T, cv_names="s",
                                 walkers=walkers)


def test_error_bars_cover_the_exact_answer_at_their_nominal_rate():
    """Over 50 independent short runs the reported sigma of F_B - F_A and of
    the barrier (on the run's own bins; walker-block bootstrap) covers the
    exact value as often as a normal error should: coverage at 1 and 2 sigma
    within the two-sided 99.9 % binomial limits of 68.3 % and 95.4 %."""
    from scipy.stats import binom

    rng = np.random.default_rng(11)
    exact_df = exact_basin_f(double_well, 0.0, 2.5) - exact_basin_f(double_well, -2.5, 0.0)
    z_df, z_bar = [], []
    for _ in range(50):
        ds = _walker_windows(rng, walkers=4, n=100)
        fes = MBAREstimator(n_bins=30, n_bootstraps=30, bootstrap_blocks=8,
                            seed=int(rng.integers(1000))).estimate(
            ds, basins={"A": (-2.5, 0.0), "B": (0.0, 2.5)})
        pair = dict(basin_from="A", basin_to="B")
        z_df.append((float(fes["delta_F"].sel(pair)) - exact_df)
                    / float(fes["delta_F_err"].sel(pair)))
        edges = fes["bin_edges"].values
        exact_pmf = exact_bin_pmf(double_well, edges)
        labels = np.where(0.5 * (edges[1:] + edges[:-1]) < 0.0, 0, 1)
        exact_bar = basin_barriers(exact_pmf - np.min(exact_pmf), labels, 2)[0][0, 1] * KT
        z_bar.append((float(fes["barrier"].sel(pair)) - exact_bar)
                     / float(fes["barrier_err"].sel(pair)))
    for name, z in (("dF", np.array(z_df)), ("barrier", np.array(z_bar))):
        for level, p in ((1, 0.6827), (2, 0.9545)):
            hits = int(np.sum(np.abs(z) <= level))
            lo, hi = binom.ppf([0.0005, 0.9995], len(z), p)
            assert lo <= hits <= hi, (name, level, hits, (lo, hi), np.round(z, 2))


def test_walker_blocks_see_a_slow_mode_that_single_samples_miss():
    """Walkers stuck on their own offsets: resampling single samples treats
    them as independent and reports too small an error; resampling walkers
    (``bootstrap_blocks``) reports the spread the offsets cause."""
    rng = np.random.default_rng(5)
    ds = _walker_windows(rng, walkers=8, n=200, offset=0.05)
    basins = {"A": (-2.5, 0.0), "B": (0.0, 2.5)}
    blocks = MBAREstimator(n_bins=30, n_bootstraps=40, bootstrap_blocks=8).estimate(
        ds, basins=basins)
    single = MBAREstimator(n_bins=30, n_bootstraps=40, bootstrap_blocks=0,
                           walker_excess_p=0.0).estimate(ds, basins=basins)
    pair = dict(basin_from="A", basin_to="B")
    for name in ("delta_F_err", "barrier_err"):
        assert float(blocks[name].sel(pair)) > 1.5 * float(single[name].sel(pair)), name


def test_walkers_that_disagree_inflate_the_error_of_single_samples():
    """The same stuck walkers, single samples resampled, but each window
    whose walkers disagree drawn as many times fewer as the scatter of its
    walkers' means says (the default): the errors come up to what
    resampling whole walkers says; walkers that agree are left alone."""
    rng = np.random.default_rng(5)
    ds = _walker_windows(rng, walkers=8, n=200, offset=0.05)
    basins = {"A": (-2.5, 0.0), "B": (0.0, 2.5)}
    pair = dict(basin_from="A", basin_to="B")
    blocks = MBAREstimator(n_bins=30, n_bootstraps=40, bootstrap_blocks=8,
                           walker_excess_p=0.0).estimate(ds, basins=basins)
    single = MBAREstimator(n_bins=30, n_bootstraps=40, walker_excess_p=0.0).estimate(
        ds, basins=basins)
    inflated = MBAREstimator(n_bins=30, n_bootstraps=40).estimate(ds, basins=basins)
    assert float(inflated["walker_inflation"].min()) >= 1.0
    assert float(np.median(inflated["walker_inflation"])) > 1.1
    for name in ("delta_F_err", "barrier_err"):
        assert float(inflated[name].sel(pair)) > 1.2 * float(single[name].sel(pair)), name
        ratio = float(inflated[name].sel(pair)) / float(blocks[name].sel(pair))
        assert 0.6 < ratio < 1.6, (name, ratio)
    # the estimate itself is the same: every sample still enters it
    for name in ("delta_F", "barrier"):
        assert float(inflated[name].sel(pair)) == float(single[name].sel(pair))
    # thinned to fewer kept samples per window, the inflation is relative to
    # what MBAR keeps: the error still matches resampling whole walkers
    thin = dict(n_bins=30, n_bootstraps=100, max_samples_per_window=100)
    thinned = MBAREstimator(**thin).estimate(ds, basins=basins)
    thin_blocks = MBAREstimator(**thin, bootstrap_blocks=8, walker_excess_p=0.0).estimate(
        ds, basins=basins)
    assert float(np.median(thinned["walker_inflation"])) < float(
        np.median(inflated["walker_inflation"]))
    for name in ("delta_F_err", "barrier_err"):
        ratio = float(thinned[name].sel(pair)) / float(thin_blocks[name].sel(pair))
        assert 0.7 < ratio < 1.4, (name, ratio)
    agree = _walker_windows(np.random.default_rng(6), walkers=8, n=200, offset=0.0)
    plain = MBAREstimator(n_bins=30, n_bootstraps=0).estimate(agree, basins=basins)
    assert float(np.mean(plain["walker_inflation"] > 1.0)) < 0.2


def test_a_window_tied_to_no_other_is_dropped_and_named():
    """A stiff window far from the others (no overlap: its free energy is not
    determined) is dropped, named in ``windows_isolated``, and the result is
    that of the other windows; a window that overlaps is kept."""
    rng = np.random.default_rng(3)
    ds = _walker_windows(rng, walkers=2, n=300)
    basins = {"A": (-2.5, 0.0), "B": (0.0, 2.5)}
    pair = dict(basin_from="A", basin_to="B")
    k = float(ds["spring_constant"].values[0, 0])
    far = sample_biased(double_well, 2.4, 400 * k, 600, rng)
    cv = [ds["cv_values"].values[w, :, 0] for w in range(ds.sizes["window"])] + [far]
    centers = np.append(ds["center"].values[:, 0], 2.4)
    springs = np.append(ds["spring_constant"].values[:, 0], 400 * k)
    with_far = make_umbrella_dataset(centers, springs, cv, temperature_K=T, cv_names="s",
                                     walkers=2)
    est = MBAREstimator(n_bins=30, n_bootstraps=0)
    with pytest.warns(RuntimeWarning, match="overlap the other windows"):
        dropped = est.estimate(with_far, basins=basins)
    assert json.loads(dropped.attrs["windows_isolated"]) == [17]
    plain = est.estimate(ds, basins=basins)
    assert json.loads(plain.attrs["windows_isolated"]) == []
    assert float(dropped["delta_F"].sel(pair)) == pytest.approx(
        float(plain["delta_F"].sel(pair)), abs=1e-9)


def test_newton_solver_converges_where_newton_alone_stalls():
    """Thirty stiff windows across a 40 kT double well, started from f = 0:
    Newton's steps stop descending (nearly singular Hessian) long before the
    solution -- the solver then takes self-consistent steps and converges,
    to pymbar's answer."""
    import pymbar

    from mtcv_mbar.estimator import _self_consistency
    from mtcv_mbar.solver import solve_mbar, unbiased_log_weights

    rng = np.random.default_rng(0)
    xs = np.linspace(-2.5, 2.5, 20001)
    centers, k, n = np.linspace(-1.5, 1.5, 30), 2000.0, 200
    samples = []
    for c in centers:
        e = 40.0 * (xs**2 - 1) ** 2 + 0.5 * k * (xs - c) ** 2
        p = np.exp(-(e - e.min()))
        samples.append(rng.choice(xs, n, p=p / p.sum()))
    s = np.concatenate(samples)
    u = 0.5 * k * (s[None, :] - centers[:, None]) ** 2
    n_k = np.full(len(centers), n)
    f = solve_mbar(u, n_k)
    assert _self_consistency(u, unbiased_log_weights(u, n_k, f), f) < 1e-8
    ref = pymbar.MBAR(u, n_k).f_k
    np.testing.assert_allclose(f - f[0], ref - ref[0], atol=1e-6)


def test_the_solver_threads_work_in_a_forked_child():
    """The chunk pool is made anew in a forked process (its threads do not
    survive a fork): a solve there finishes with the parent's answer."""
    import multiprocessing as mp

    import mtcv_mbar.solver as solver

    rng = np.random.default_rng(2)
    centers = np.linspace(-1, 1, 4)
    s = np.concatenate([rng.normal(c, 0.3, 50) for c in centers])
    u_kn = 0.5 * 10 * (s[None, :] - centers[:, None]) ** 2
    n_k = np.full(4, 50)
    old = solver.CHUNK_ELEMENTS
    solver.CHUNK_ELEMENTS = 40  # several chunks: the pool is used
    try:
        f = solver.solve_mbar(u_kn, n_k)  # the parent's pool now exists
        with mp.get_context("fork").Pool(1) as pool:
            f_child = pool.apply_async(solver.solve_mbar, (u_kn, n_k)).get(timeout=60)
    finally:
        solver.CHUNK_ELEMENTS = old
    np.testing.assert_array_equal(f_child, f)
