"""Rate theory (mtcv_core.rates, mtcv_rates.analysis) against analytic results."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xarray as xr
from scipy.special import ndtr

from mtcv_ase.md import BatchLangevin, LangevinParams
from mtcv_core.rates import (
    FS_PER_S,
    SQRT_EV_PER_AMU_IN_A_PER_FS,
    committor,
    first_passages,
    mass_weighted_gradient_norm,
    plateau,
    transmission_coefficient,
    tst_rate,
)
from mtcv_core.units import kT_eV
from mtcv_rates.analysis import committor_test, kappa_from_shots


def test_velocity_unit_is_ases():
    from ase import units

    assert SQRT_EV_PER_AMU_IN_A_PER_FS == pytest.approx(units.fs, rel=1e-15)


def test_flux_term_of_a_linear_cv_matches_maxwell_boltzmann_velocities():
    """xi = sum_i c_i . r_i: |grad xi|_M = sqrt(sum c_i^2 / m_i), and the mean
    |d xi/dt| over Maxwell-Boltzmann velocities is sqrt(2 kT / pi) times it."""
    rng = np.random.default_rng(0)
    masses = np.array([1.0, 12.0, 16.0])
    c = rng.normal(size=(3, 3))
    grad = np.broadcast_to(c, (5, 3, 3))
    norm = mass_weighted_gradient_norm(grad, masses)
    np.testing.assert_allclose(norm, np.sqrt(np.sum(c**2 / masses[:, None])), rtol=1e-14)
    kt = kT_eV(300.0)
    v = rng.normal(size=(400_000, 3, 3)) * np.sqrt(kt / masses)[None, :, None]  # sqrt(eV/amu)
    xi_dot = np.einsum("nij,ij->n", v, c) * SQRT_EV_PER_AMU_IN_A_PER_FS  # [xi]/fs
    expected = math.sqrt(2 * kt / math.pi) * norm[0] * SQRT_EV_PER_AMU_IN_A_PER_FS
    assert np.mean(np.abs(xi_dot)) == pytest.approx(expected, rel=0.005)
    with pytest.raises(ValueError, match="masses"):
        mass_weighted_gradient_norm(grad, masses[:2])


def test_tst_rate_of_a_truncated_harmonic_well():
    """1D particle, xi = x, reactant x < x*, F = k x^2 / 2: k_TST =
    sqrt(kT / (2 pi m)) exp(-k x*^2 / 2kT) / (sqrt(2 pi kT / k) Phi(x* sqrt(k/kT)))."""
    kt, k, m, x_star = kT_eV(300.0), 0.5, 12.0, 0.4
    edges = np.linspace(-2.0, 0.8, 2801)
    centers = 0.5 * (edges[1:] + edges[:-1])
    pmf = 0.5 * k * centers**2 + 3.0  # any constant
    rate = tst_rate(pmf, centers, centers < x_star, x_star, 1 / math.sqrt(m), kt)
    z = math.sqrt(2 * math.pi * kt / k) * ndtr(x_star * math.sqrt(k / kt))
    exact = (math.sqrt(kt / (2 * math.pi * m)) * math.exp(-0.5 * k * x_star**2 / kt) / z
             * SQRT_EV_PER_AMU_IN_A_PER_FS * FS_PER_S)
    assert rate == pytest.approx(exact, rel=2e-3)
    with pytest.raises(ValueError, match="reactant"):
        tst_rate(pmf, centers, np.zeros(len(centers), bool), x_star, 1.0, kt)


def _shots_on_inverted_parabola(friction_per_fs: float, n: int, steps: int, seed: int
                                ) -> tuple[np.ndarray, np.ndarray]:
    """Langevin shots (mtcv's batched engine) from the top of U = -k x^2/2
    with Maxwell-Boltzmann velocities: (x_dot(0) (n,), x(t) (n, steps))."""
    k, m, temp = 1.0, 1.0, 300.0

    def energy_and_forces(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        f = np.zeros_like(x)
        f[:, 0, 0] = k * x[:, 0, 0]
        return -0.5 * k * x[:, 0, 0] ** 2, f

    rng = np.random.default_rng(seed)
    mask = np.array([[True, False, False]])
    integ = BatchLangevin(energy_and_forces, np.array([m]),
                          LangevinParams(temperature_K=temp, timestep_fs=0.5,
                                         friction_per_fs=friction_per_fs), rng,
                          dof_mask=mask)
    x = np.zeros((n, 1, 3))
    v = np.zeros((n, 1, 3))
    v[:, 0, 0] = rng.normal(size=n) * math.sqrt(kT_eV(temp) / m)
    v0 = v[:, 0, 0].copy()
    _, f = integ.evaluate(x)
    xs = np.empty((n, steps))
    for t in range(steps):
        x, v, f, _ = integ.step(x, v, f)
        xs[:, t] = x[:, 0, 0]
    return v0, xs


@pytest.mark.parametrize("friction_per_fs", [0.0, 0.1])
def test_transmission_coefficient_of_a_parabolic_barrier_is_kramers(friction_per_fs):
    """On a parabolic barrier (frequency omega) with Langevin friction gamma
    the plateau of kappa(t) is Kramers' exact
    sqrt(1 + (gamma / 2 omega)^2) - gamma / (2 omega); 1 without friction."""
    omega = 1.0 * SQRT_EV_PER_AMU_IN_A_PER_FS  # sqrt(k/m) in 1/fs
    g = friction_per_fs / (2 * omega)
    expected = math.sqrt(1 + g * g) - g
    v0, xs = _shots_on_inverted_parabola(friction_per_fs, 4000, 160, seed=3)
    kappa = transmission_coefficient(v0, xs, 0.0)
    boot = np.random.default_rng(1).integers(0, len(v0), (100, len(v0)))
    err = np.std([transmission_coefficient(v0[b], xs[b], 0.0) for b in boot], axis=0)
    start, value, value_err = plateau(kappa, err)
    assert kappa[0] > 0.95  # one 0.5 fs step: only the slowest shots can turn back
    assert abs(value - expected) < 3 * value_err + 1e-9
    if friction_per_fs == 0:
        np.testing.assert_allclose(kappa, 1.0, atol=1e-12)
    else:
        assert start > 5 and value_err < 0.03
    # B -> A: the same from the other side
    back = transmission_coefficient(v0, xs, 0.0, towards=-1)
    assert abs(back[-1] - expected) < 3 * err[-1] + 1e-9


def test_plateau_starts_where_the_curve_settles():
    y = np.concatenate([np.linspace(1.0, 0.5, 10), np.full(20, 0.5)])
    start, value, err = plateau(y, np.full(30, 0.01))
    assert start == 9 and value == pytest.approx(0.5) and err == 0.01


def test_first_passages_count_by_the_state_last_visited():
    #         -1 -1  A  A -1  B  B -1 -1  A  B  B -1  A
    labels = [-1, -1, 0, 0, -1, 1, 1, -1, -1, 0, 1, 1, -1, 0]
    counts, frames = first_passages(np.array(labels), 2)
    assert counts.tolist() == [[0, 2], [2, 0]]
    # last visited A at frames 2-4, 9, 13; B at 5-8, 10-12
    assert frames.tolist() == [5, 7]
    counts, frames = first_passages(np.full(4, -1), 3)
    assert counts.sum() == 0 and frames.sum() == 0
    with pytest.raises(ValueError, match="labels"):
        first_passages(np.array([0, 2]), 2)


def test_committor_is_the_fraction_of_shots_reaching_the_product():
    r = np.array([[True, False, True, True], [False] * 4])
    np.testing.assert_allclose(committor(r), [0.75, 0.0])
    with pytest.raises(ValueError, match="n_configs, n_shots"):
        committor(np.ones(3, bool))


def test_tst_rates_across_the_top_of_a_double_well_obey_detailed_balance():
    """Asymmetric double well F = 3kT (s^2 - 1)^2 + kT s / 2: xi* is the
    top between the minima, and k_AB P_A = k_BA P_B (both sides' populations
    from the same PMF)."""
    from mtcv_core.rates import dividing_surface, tst_rates

    kt = kT_eV(300.0)
    centers = np.linspace(-2.0, 2.0, 801)
    pmf = 3 * kt * (centers**2 - 1) ** 2 + 0.5 * kt * centers
    pmf[:5] = np.nan  # no data at the edge
    xi_star, k_ab, k_ba = tst_rates(pmf, centers, -1.0, 1.0, 0.5, kt)
    assert xi_star == pytest.approx(1 / 24, abs=0.006)  # dF/ds = -12 kT s + kT/2 = 0
    side_a = dividing_surface(pmf, centers, -1.0, 1.0)[1]
    ok = np.isfinite(pmf)
    p_a = np.sum(np.exp(-pmf[ok & side_a] / kt))
    p_b = np.sum(np.exp(-pmf[ok & (centers > xi_star)] / kt))
    assert k_ab * p_a == pytest.approx(k_ba * p_b, rel=1e-10)
    assert k_ab < k_ba  # B is higher: it empties faster
    with pytest.raises(ValueError, match="no finite PMF bin"):
        dividing_surface(np.full(5, np.nan), np.arange(5.0), 0.0, 4.0)


def test_kappa_from_shots_reproduces_kramers_with_a_calibrated_error():
    """Shots on a parabolic barrier (gamma = 0.1/fs) grouped as 400
    configurations x 10 shots: the plateau lies within 3 of its bootstrap
    errors of Kramers' exact value, and that error is about the spread of
    kappa over independent repetitions."""
    omega = SQRT_EV_PER_AMU_IN_A_PER_FS
    g = 0.1 / (2 * omega)
    exact = math.sqrt(1 + g * g) - g
    v0, xs = _shots_on_inverted_parabola(0.1, 4000, 160, seed=5)
    shots = xr.Dataset({"xi_dot0": (("config", "shot"), v0.reshape(400, 10)),
                        "xi": (("config", "shot", "time"), xs.reshape(400, 10, -1))},
                       coords={"time": ("time", 0.5 * np.arange(1, 161))})
    out = kappa_from_shots(shots, 0.0, n_bootstraps=100)
    value, err = out.attrs["kappa_plateau"], out.attrs["kappa_plateau_err"]
    assert abs(value - exact) < 3 * err
    assert 0.005 < err < 0.03
    assert out.attrs["plateau_start_fs"] > 0
    # the error against the spread of independent repetitions (8 x 2000 shots)
    values, errors = [], []
    for rep in range(8):
        v0, xs = _shots_on_inverted_parabola(0.1, 2000, 160, seed=10 + rep)
        rep_shots = xr.Dataset(
            {"xi_dot0": (("config", "shot"), v0.reshape(200, 10)),
             "xi": (("config", "shot", "time"), xs.reshape(200, 10, -1))},
            coords={"time": ("time", 0.5 * np.arange(1, 161))})
        o = kappa_from_shots(rep_shots, 0.0, n_bootstraps=50)
        values.append(o.attrs["kappa_plateau"])
        errors.append(o.attrs["kappa_plateau_err"])
    assert 0.5 < np.std(values, ddof=1) / np.mean(errors) < 2.0
    back = kappa_from_shots(shots, 0.0, towards=-1, n_bootstraps=20)
    assert abs(back.attrs["kappa_plateau"] - exact) < 3 * back.attrs["kappa_plateau_err"]
    with pytest.raises(ValueError, match="weights"):
        kappa_from_shots(shots, 0.0, weights=np.ones(3))


def test_committor_test_counts_committed_shots():
    committed = np.array([[1, 1, 0, -1], [0, 0, 0, 0], [1, -1, -1, -1], [-1, -1, -1, -1]])
    res = committor_test(xr.Dataset({"committed": (("config", "shot"), committed)}),
                         product=1, reactant=0, bins=4)
    np.testing.assert_allclose(res["p_B"], [2 / 3, 0.0, 1.0])
    assert res["n_configs"] == 3 and res["uncommitted_shots"] == 8
    assert res["histogram"].tolist() == [1, 0, 1, 1]
    assert res["mean"] == pytest.approx(5 / 9)
    # default bins: one per value k / 4 a fully committed configuration can take,
    # each centred on it (3 / 10 computed as 0.30000000000000004 stays in its bin)
    centred = committor_test(xr.Dataset({"committed": (("config", "shot"), committed)}),
                             product=1, reactant=0)
    np.testing.assert_allclose(centred["edges"], [-0.125, 0.125, 0.375, 0.625, 0.875, 1.125])
    assert centred["histogram"].tolist() == [1, 0, 0, 1, 1]
    with pytest.raises(ValueError, match="no shot"):
        committor_test(xr.Dataset({"committed": (("config", "shot"), -np.ones((2, 2)))}),
                       product=1, reactant=0)
