"""Umbrella sampling along periodic CVs (alanine dipeptide's phi, psi):
minimum-image restraints in both engines, periodic MBAR, the reference-CV
subset."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from mtcv_alanine import AlanineDipeptide
from mtcv_ase.testing import check_forces_finite_difference
from mtcv_core.export import SelectCV
from mtcv_umbrella import UmbrellaBias, UmbrellaSampler
from mtcv_umbrella.bias import BatchedBias, min_image

TWO_PI = 2.0 * math.pi


@pytest.fixture(scope="module")
def ala():
    return AlanineDipeptide()


@pytest.fixture(scope="module")
def phi_cv(ala):
    return torch.jit.script(SelectCV(ala.true_cv_module(), [0]))


def _beta_like(ala, rng, n=4):
    """Configurations near the beta minimum (phi ~ -147 deg), slightly perturbed."""
    x = ala.minimum("beta")
    return x[None] + rng.normal(scale=0.02, size=(n, *x.shape))


def test_min_image_wraps_only_periodic_dimensions():
    d = torch.tensor([[3.5, 3.5], [-3.5, -3.5], [0.2, 7.0]], dtype=torch.float64)
    p = torch.tensor([TWO_PI, 0.0], dtype=torch.float64)
    out = min_image(d, p)
    np.testing.assert_allclose(out[:, 0], [3.5 - TWO_PI, TWO_PI - 3.5, 0.2])
    np.testing.assert_allclose(out[:, 1], d[:, 1])


def test_select_cv_picks_columns_and_scripts(ala, phi_cv):
    x = torch.as_tensor(_beta_like(ala, np.random.default_rng(0)))
    np.testing.assert_allclose(phi_cv(x).numpy()[:, 0], ala.true_cv(x.numpy())[:, 0])


def test_periodic_bias_restrains_the_minimum_image(ala, phi_cv):
    """A window at phi0 = +170 deg restrains a configuration at phi ~ -147 deg
    by the 43 deg between them across +-180, not by the 317 deg the other
    way; forces equal finite differences of the wrapped energy."""
    atoms = ala.make_atoms("beta")
    phi = float(ala.true_cv(atoms.get_positions()[None])[0, 0])
    center, k = math.radians(170.0), 0.5
    bias = UmbrellaBias(atoms.calc, phi_cv, center=[center], k=k, period=TWO_PI)
    atoms.calc = bias
    atoms.get_potential_energy()
    gap = (phi - center + math.pi) % TWO_PI - math.pi
    assert abs(gap) < math.radians(60)
    assert bias.results["bias_energy"] == pytest.approx(0.5 * k * gap**2, rel=1e-10)
    check_forces_finite_difference(bias, atoms, delta=1e-5, rtol=1e-5, atol=1e-6)


def test_batched_bias_equals_the_ase_calculator(ala):
    """The fast path's restraint (all walkers in one call) against
    UmbrellaBias on OpenMM, walker by walker, for (phi, psi) windows whose
    centres lie across the periodic boundary from the walkers."""
    rng = np.random.default_rng(1)
    x = _beta_like(ala, rng)
    cv = ala.true_cv_module()
    centers = np.array([[math.radians(175.0), math.radians(-170.0)]] * len(x))
    k = np.full_like(centers, 0.3)
    batched = BatchedBias(ala, cv, centers, k, periods=ala.true_cv_periods)
    e, f = batched(x)
    for i in range(len(x)):
        atoms = ala.make_atoms()
        atoms.set_positions(x[i])
        atoms.calc = UmbrellaBias(atoms.calc, cv, centers[i], k[i], period=ala.true_cv_periods)
        assert e[i] == pytest.approx(atoms.get_potential_energy(), abs=1e-9)
        np.testing.assert_allclose(f[i], atoms.get_forces(), atol=1e-8)
    # without the period the same windows would cost ~0.5 k (2 pi)^2 more
    plain = BatchedBias(ala, cv, centers, k)(x)[0]
    assert np.all(plain - e > 0.3 * 0.5 * (TWO_PI - 1.5) ** 2)


def test_fast_and_ase_engines_sample_the_same_phi_window(ala, phi_cv):
    """A 120 K window on phi near the C7eq -> C7ax saddle, fast engine
    (vectorised amber99sb + batched bias) against ASE's Langevin on the
    OpenMM calculator: a few hundred biased steps stay stable, and the mean
    of phi agrees within statistical error."""
    center = np.array([[math.radians(-40.0)]])
    start = ala.minimum("C7eq")[None]
    common = dict(temperature_K=120.0, timestep_fs=0.5, n_steps=1200, equilibration_steps=200,
                  stride=10)
    fast = UmbrellaSampler(engine="fast", walkers_per_window=16, **common).run_windows(
        ala, phi_cv, seed=1, centers=center, spring_constants=[[2.0]], start_positions=start,
        cv_periods=[TWO_PI])
    ase = UmbrellaSampler(engine="ase", walkers_per_window=3, **common).run_windows(
        ala, phi_cv, seed=2, centers=center, spring_constants=[[2.0]], start_positions=start,
        cv_periods=[TWO_PI])
    assert fast.attrs["cv_period"] == repr(TWO_PI)
    f = fast.cv_values.values[0, :, 0].reshape(16, -1).mean(axis=1)
    a = ase.cv_values.values[0, :, 0].reshape(3, -1).mean(axis=1)
    assert np.isfinite(f).all() and np.isfinite(a).all()
    z = abs(f.mean() - a.mean()) / np.hypot(f.std(ddof=1) / 4.0, a.std(ddof=1) / np.sqrt(3))
    assert z < 4, (np.degrees(f.mean()), np.degrees(a.mean()))
    # the spring pulls phi out of C7eq (phi ~ -78 deg) up the slope towards
    # the centre; the PMF's slope keeps the mean short of it
    phi_min = ala.true_cv(start)[0, 0]
    assert phi_min + 0.1 < f.mean() < center[0, 0]


def test_mbar_recovers_a_periodic_potential_across_the_boundary():
    """Windows all around a circle on U(t) = A cos(t - 2.5): samples drawn
    exactly from each window's biased density (inverse CDF on a fine grid),
    windows centred on both sides of +-pi. The MBAR PMF equals U within
    error everywhere, including the bins next to the boundary."""
    from mtcv_core.schema_umbrella import make_umbrella_dataset
    from mtcv_mbar import MBAREstimator

    kT, a = 0.025, 0.1
    rng = np.random.default_rng(7)
    grid = np.linspace(-math.pi, math.pi, 20001)
    u = a * np.cos(grid - 2.5)
    centers = np.linspace(-math.pi, math.pi, 16, endpoint=False) + 0.1
    k = 0.5
    series = []
    for c in centers:
        d = (grid - c + math.pi) % TWO_PI - math.pi
        w = np.exp(-(u + 0.5 * k * d**2 - u.min()) / kT)
        cdf = np.cumsum(w)
        cdf /= cdf[-1]
        series.append(np.interp(rng.uniform(size=3000), cdf, grid))
    ds = make_umbrella_dataset(centers, k, np.array(series), temperature_K=kT / 8.617333262e-5,
                               cv_names="t", cv_units="radian", cv_period=TWO_PI)
    fes = MBAREstimator(n_bins=24, n_bootstraps=10, max_walker_spread=0.0).estimate(ds)
    t = fes["bin_center"].values
    pmf, err = fes["pmf"].values, fes["pmf_err"].values
    exact = a * np.cos(t - 2.5)
    ok = np.isfinite(pmf)
    assert ok.sum() >= 22
    # compare shapes: both shifted to mean zero over the bins
    diff = (pmf[ok] - pmf[ok].mean()) - (exact[ok] - exact[ok].mean())
    # bin averaging of cos over a 15 degree bin changes it by < 0.3 %
    assert np.all(np.abs(diff) < 4 * err[ok] + 0.003), (diff, err[ok])


def test_reference_cv_subset_and_bad_names(ala):
    from types import SimpleNamespace

    from mtcv_core.config import ConfigError
    from mtcv_core.stages import reference_cv

    ctx = SimpleNamespace(system=ala)
    module, index = reference_cv(ctx, ["psi"])
    assert index == [1]
    x = torch.as_tensor(_beta_like(ala, np.random.default_rng(2)))
    np.testing.assert_allclose(module(x).numpy()[:, 0], ala.true_cv(x.numpy())[:, 1])
    assert reference_cv(ctx, [])[1] == [0, 1]
    with pytest.raises(ConfigError, match=r"reference_cvs.*'omega'.*\['phi', 'psi'\]"):
        reference_cv(ctx, ["phi", "omega"])


def test_sample_temperatures_per_split():
    from types import SimpleNamespace

    from mtcv_core.interfaces import MDSettings
    from mtcv_core.stages import split_temperature
    from mtcv_sampling import BasinMD

    sample = SimpleNamespace(train_temperature_K=None, test_temperature_K=100.0)
    cfg = SimpleNamespace(temperature_K=120.0, sample=sample)
    assert split_temperature(cfg, "train") == 120.0
    assert split_temperature(cfg, "test") == 100.0
    sample.train_temperature_K, sample.test_temperature_K = 90.0, None
    assert split_temperature(cfg, "test") == 90.0
    # a source's own temperature wins over the split's; its unset options take the run's
    md = MDSettings(temperature_K=100.0, timestep_fs=2.0, friction_per_fs=0.05, engine="ase")
    own = BasinMD(temperature_K=700.0, friction_per_fs=0.1).settings(md)
    assert own == MDSettings(temperature_K=700.0, timestep_fs=2.0, friction_per_fs=0.1,
                             engine="ase")
    assert BasinMD().settings(md) == md
