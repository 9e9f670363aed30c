"""CV quality: the exact PMF along any CV by quadrature, spectator coordinates,
spectator augmentation in training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtcv_core.exact_pmf import exact_pmf, transition_values
from mtcv_core.spectators import SpectatorAugmenter, spectator_sensitivity, training_ranges
from mtcv_systems import MullerBrown5D, ThreeWell5D
from mtcv_systems.embedded5d import radial_cvs
from mtcv_systems.reference import pmf_along, reference_transitions


@pytest.fixture(scope="module")
def mb() -> MullerBrown5D:
    return MullerBrown5D()


@pytest.fixture(scope="module")
def registry():
    from mtcv_core.plugins import load_plugins

    return load_plugins()


def _x_tilde(positions: np.ndarray) -> np.ndarray:
    return radial_cvs(positions)[:, :1]


def _basin_by_x(threshold: float):
    # MB: A at x~ = 23.07, B at 41.98
    return lambda xi: np.where(np.asarray(xi)[:, 0] < threshold, 0, 1)


def test_exact_pmf_of_x_tilde_is_the_marginal_of_the_2d_quadrature(mb):
    """xi = x~: the exact PMF through the CV equals the 1D marginal of the 2D
    density p ∝ x~ y~ exp(-V/kT), computed independently on the plane."""
    edges = np.linspace(15.0, 50.0, 36)
    ds = exact_pmf(mb, _x_tilde, 300.0, [edges], basin_of=_basin_by_x(32.0),
                   basin_names=["A", "B"], spectator_spread=[50.0], spectator_draws=4)
    ref = pmf_along(mb, 300.0, lambda x, y: x, bins=edges, n=400)
    ok = np.isfinite(ref["pmf"].values) & (ref["pmf"].values < 1.5)
    np.testing.assert_allclose(ds["pmf"].values[ok], ref["pmf"].values[ok], atol=2e-3)
    # basin free energies by the same split on the plane
    p = ref["probability"].values
    centers = 0.5 * (edges[1:] + edges[:-1])
    kt = ds.attrs["kT_eV"]
    df_ref = -kt * np.log(p[centers >= 32.0].sum() / p[centers < 32.0].sum())
    assert transition_values(ds, "A", "B")["delta_F_eV"] == pytest.approx(df_ref, abs=2e-3)
    assert ds.attrs["coverage"] > 0.99


def test_exact_pmf_barrier_of_a_true_cv_matches_its_1d_maximum(mb):
    edges = np.linspace(15.0, 50.0, 71)
    ds = exact_pmf(mb, _x_tilde, 300.0, [edges], basin_of=_basin_by_x(32.0),
                   basin_names=["A", "B"], spectator_draws=2)
    pmf = ds["pmf"].values
    centers = ds["bin_center"].values
    ia = np.nanargmin(np.where(centers < 32, pmf, np.nan))
    ib = np.nanargmin(np.where(centers >= 32, pmf, np.nan))
    top = np.nanmax(pmf[ia:ib + 1])
    assert transition_values(ds, "A", "B")["barrier_eV"] == pytest.approx(top - pmf[ia],
                                                                          abs=1e-9)


def test_spectators_round_trip_and_keep_energy_and_basin(mb):
    rng = np.random.default_rng(0)
    pos = mb.embed(rng.uniform(20, 45, 50), rng.uniform(5, 32, 50),
                   phi12=rng.uniform(0, 6.28, 50), phi34=rng.uniform(0, 6.28, 50),
                   x5=rng.normal(0, 100, 50))
    new = np.stack([rng.normal(0, 2000, 50), rng.uniform(0, 2 * np.pi, 50),
                    rng.uniform(0, 2 * np.pi, 50)], axis=1)
    moved = mb.with_spectators(pos, new)
    np.testing.assert_allclose(mb.spectators(moved), new, atol=1e-9)
    np.testing.assert_allclose(mb.energy(moved), mb.energy(pos), atol=1e-9)
    np.testing.assert_array_equal(mb.basin_index(moved), mb.basin_index(pos))


def test_spectators_at_their_cap_are_allowed(mb):
    """x5 beyond x~ / sqrt(1e-7) is clipped to the cap, where r^2 = x~^2 -
    1e-7 x5^2 is 0 up to rounding (a few ulps either side): the spectator
    augmentation of training hit it ("need x~^2 >= 1e-7 x5^2") once x~ was
    computed in another order. At the cap x1 = x2 = 0 and x~ is kept."""
    rng = np.random.default_rng(3)
    pos = mb.embed(rng.uniform(20, 45, 2000), rng.uniform(5, 32, 2000),
                   x5=rng.normal(0, 100, 2000))
    new = np.stack([np.full(2000, 1e9), rng.uniform(0, 2 * np.pi, 2000),
                    rng.uniform(0, 2 * np.pi, 2000)], axis=1)
    moved = mb.with_spectators(pos, new)
    from mtcv_systems.embedded5d import radial_cvs

    np.testing.assert_allclose(radial_cvs(moved), radial_cvs(pos), rtol=1e-12)
    assert np.all(np.abs(moved[:, 0, :2]) < 1e-3)
    with pytest.raises(ValueError, match="need x~"):
        mb.embed(20.0, 10.0, x5=1.01 * 20.0 / np.sqrt(1e-7))


def test_spectator_sensitivity_is_zero_for_a_cv_of_the_radii_alone(mb):
    rng = np.random.default_rng(1)
    train = mb.embed(rng.uniform(20, 45, 200), rng.uniform(5, 32, 200),
                     x5=rng.normal(0, 80, 200))
    res = spectator_sensitivity(mb, _x_tilde, _basin_by_x(32.0), train, k=5.0, draws=64)
    assert res["max_spread"] < 1e-6
    assert res["misclassified_fraction"] == 0.0
    assert res["separation"] == pytest.approx(41.98 - 23.07, abs=0.05)
    # ...and large for a CV that reads x5
    def reads_x5(p):
        return _x_tilde(p) + 0.05 * mb.spectators(p)[:, :1]

    bad = spectator_sensitivity(mb, reads_x5, _basin_by_x(32.0), train, k=5.0, draws=64)
    assert bad["landmarks"]["A"]["spread_x5"] > 10.0
    assert bad["landmarks"]["A"]["spread_phi12"] < 1e-6
    assert bad["misclassified_fraction"] > 0.1


def test_augmenter_draws_over_the_scaled_training_range(mb):
    rng = np.random.default_rng(2)
    train = mb.embed(rng.uniform(20, 45, 300), rng.uniform(5, 32, 300),
                     phi12=rng.uniform(0, np.pi / 4, 300), x5=rng.uniform(-100, 100, 300))
    aug = SpectatorAugmenter(mb, train, scale=4.0)
    out = aug(train, np.random.default_rng(3))
    s = mb.spectators(out)
    r = training_ranges(mb, train)["x5"]
    assert np.max(np.abs(s[:, 0] - r["median"])) <= 4.0 * r["range"] + 1e-9
    assert np.max(np.abs(s[:, 0])) > 2.0 * r["range"]
    # periodic spectators are drawn from the training frames' own angles
    assert np.all(s[:, 1] <= np.pi / 4 + 1e-9)
    np.testing.assert_allclose(mb.energy(out), mb.energy(train), atol=1e-9)


def test_exact_pmf_on_a_2d_cv_of_the_three_well():
    tw = ThreeWell5D()

    def cv(p):
        return radial_cvs(p)

    def basin_of(xy):
        return tw.basin_index_2d(xy[:, 0], xy[:, 1])

    edges = [np.linspace(0.5, 14.5, 41), np.linspace(0.5, 14.5, 41)]
    ds = exact_pmf(tw, cv, 300.0, edges, basin_of=basin_of, basin_names=list(tw.basins),
                   spectator_draws=1)
    ref = {(r["from"], r["to"]): r for r in reference_transitions(tw, 300.0, n=400)}
    for (a, b), r in ref.items():
        got = transition_values(ds, a, b)
        # same basins and minimax definition, coarser grid: dF exact, barrier close
        assert got["delta_F_eV"] == pytest.approx(r["delta_F_eV"], abs=0.01), (a, b)
        assert got["barrier_eV"] == pytest.approx(r["barrier_eV"], abs=0.05), (a, b)


def test_training_with_spectator_augmentation_ignores_x5(mb, registry):
    """A CV trained with augmentation moves far less with x5 than one
    trained without, on the same frames (small data, few epochs)."""
    import xarray as xr

    from mtcv_core.training import train

    rng = np.random.default_rng(4)
    n = 3000
    basin = rng.integers(0, 2, n)
    xt = np.where(basin == 0, 23.07, 41.98) + rng.normal(0, 1.0, n)
    yt = np.where(basin == 0, 31.07, 8.45) + rng.normal(0, 1.0, n)
    # x5 correlated with the basin in the training data: a shortcut to unlearn
    x5 = np.where(basin == 0, -60.0, 60.0) + rng.normal(0, 30.0, n)
    pos = mb.embed(xt, yt, phi12=rng.uniform(0, 6.28, n), phi34=rng.uniform(0, 6.28, n), x5=x5)
    frames = xr.Dataset(
        {"coordinates": (("frame", "atom", "spatial"), pos),
         "energy": (("frame",), mb.energy(pos)), "label": (("frame",), basin)},
        attrs={"basins": "A B"})
    cfg = {"latent_dim": 1, "hidden": [16, 8], "epochs": 30, "warmup_epochs": 5,
           "heads": {"classifier": {}, "energy": {"n_bins": 1}},
           "featurizer_options": {"dof_mask": mb.dof_mask.tolist()}, "seed": 0}
    spreads = {}
    for scale in (0.0, 10.0):
        aug = SpectatorAugmenter(mb, pos, scale) if scale else None
        model, hist = train(frames, cfg, registry, progress=False, augment=aug)

        def cv(p, model=model):
            with torch.no_grad():
                return model.cv(torch.as_tensor(p, dtype=torch.float32)).double().numpy()

        res = spectator_sensitivity(mb, cv, lambda xi: np.zeros(len(xi), int), pos, k=5.0,
                                    draws=64)
        spreads[scale] = res["landmarks"]["A"]["spread_x5"] / res["separation"]
    assert spreads[10.0] < 0.25 * spreads[0.0], spreads


def test_check_system_catches_spectators_that_move_the_energy():
    from mtcv_ase.testing import check_system

    class Broken(MullerBrown5D):
        def with_spectators(self, positions, values):
            moved = super().with_spectators(positions, values)
            return moved * 1.01  # also moves x~ and y~: not a spectator move

    with pytest.raises(AssertionError, match="spectators"):
        check_system(Broken(), finite_difference=False)
