"""The umbrella bias calculator and the umbrella sampler (both engines)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import xarray as xr
from ase.calculators.mixing import SumCalculator
from ase.md.langevin import Langevin

from mtcv_ase.md import FS
from mtcv_ase.testing import check_forces_finite_difference
from mtcv_systems import MullerBrown5D
from mtcv_systems.embedded5d import true_cv_module
from mtcv_umbrella import UmbrellaBias, UmbrellaSampler


class TanhCV(torch.nn.Module):
    """A nonlinear 1D CV of the 5D point, standing in for a trained network."""

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        x = positions.reshape(positions.shape[0], -1)[:, :5]
        return torch.tanh(0.05 * (x[:, 0] - x[:, 2]) + 0.01 * x[:, 1] * x[:, 3])[:, None]


@pytest.fixture(scope="module")
def mb():
    return MullerBrown5D()


@pytest.mark.parametrize("cv", [TanhCV(), true_cv_module()])
def test_bias_forces_finite_difference(mb, cv):
    rng = np.random.default_rng(0)
    for _ in range(3):
        atoms = mb.make_atoms("A", phi12=rng.uniform(0, 6), phi34=rng.uniform(0, 6))
        atoms.positions[:, :2] += rng.normal(scale=0.5, size=(2, 2))
        d = 1 if isinstance(cv, TanhCV) else 2
        bias = UmbrellaBias(atoms.calc, cv, center=np.full(d, 0.1 if d == 1 else 25.0), k=3.0)
        check_forces_finite_difference(bias, atoms, delta=1e-5, rtol=1e-6, atol=1e-8,
                                       mask=mb.dof_mask)
        # the bias alone, combined through ASE's SumCalculator, is the same
        alone = UmbrellaBias(None, cv, center=np.full(d, 0.1 if d == 1 else 25.0), k=3.0)
        total = SumCalculator([mb.make_atoms().calc, alone])
        a = atoms.copy()
        a.calc = total
        b = atoms.copy()
        b.calc = bias
        assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-12)
        np.testing.assert_allclose(a.get_forces(), b.get_forces(), atol=1e-12)
        assert b.calc.results["unbiased_energy"] + b.calc.results["bias_energy"] == (
            pytest.approx(b.get_potential_energy()))


def _run(mb, extra_calls: bool):
    atoms = mb.make_atoms("A")
    atoms.calc = UmbrellaBias(atoms.calc, TanhCV(), center=[0.0], k=20.0)
    dyn = Langevin(atoms, timestep=FS, temperature_K=300.0, friction=0.01 / FS, fixcm=False,
                   rng=np.random.default_rng(3))
    if extra_calls:  # ask for forces and energy again at every step
        dyn.attach(lambda: (atoms.get_forces(), atoms.get_potential_energy(),
                            atoms.calc.get_property("forces", atoms)), interval=1)
    dyn.run(200)
    return atoms.get_positions()


def test_bias_is_pure_function_of_positions(mb):
    np.testing.assert_array_equal(_run(mb, False), _run(mb, True))


def test_fast_and_ase_umbrella_agree(mb):
    """The same window with both engines: mean and spread of the CV agree
    within statistical error."""
    cv = true_cv_module()
    center = np.array([[21.0, 22.0]])  # on the slope towards the transition state
    start = mb.embed(center[:, 0], center[:, 1], phi12=0.4, phi34=0.4)
    common = dict(temperature_K=300.0, n_steps=3000, equilibration_steps=300, stride=10)
    fast = UmbrellaSampler(engine="fast", walkers_per_window=32, **common).run_windows(
        mb, cv, seed=1, centers=center, spring_constants=[[0.3, 0.3]], start_positions=start)
    ase = UmbrellaSampler(engine="ase", walkers_per_window=4, **common).run_windows(
        mb, cv, seed=2, centers=center, spring_constants=[[0.3, 0.3]], start_positions=start)
    for ds, m in ((fast, 32), (ase, 4)):
        assert int(ds.n_samples[0]) == m * 300
    for d in range(2):
        f = fast.cv_values.values[0, :, d].reshape(32, -1).mean(axis=1)
        a = ase.cv_values.values[0, :, d].reshape(4, -1).mean(axis=1)
        z = abs(f.mean() - a.mean()) / np.hypot(f.std(ddof=1) / np.sqrt(32),
                                               a.std(ddof=1) / np.sqrt(4))
        assert z < 4, (d, f.mean(), a.mean())


def test_windows_saved_and_reused(mb, tmp_path):
    cv = true_cv_module()
    centers = np.array([[23.0, 31.0], [25.0, 28.0], [27.0, 25.0]])
    start = mb.embed(centers[:, 0], centers[:, 1])
    sampler = UmbrellaSampler(temperature_K=300.0, n_steps=200, equilibration_steps=0,
                              walkers_per_window=2, windows_per_task=1)
    kw = dict(seed=4, centers=centers, spring_constants=[[0.5, 0.5]] * 3,
              start_positions=start, store=tmp_path)
    first = sampler.run_windows(mb, cv, **kw)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "window_0000.nc", "window_0001.nc", "window_0002.nc"]
    (tmp_path / "window_0001.nc").unlink()  # as if killed before it finished
    again = sampler.run_windows(mb, cv, **kw)
    np.testing.assert_array_equal(first.cv_values.values, again.cv_values.values)
    # a stored window planned with another spring is not reused: it runs again
    stiffer = dict(kw, spring_constants=[[0.5, 0.5], [2.0, 2.0], [0.5, 0.5]])
    with pytest.warns(RuntimeWarning, match="window_0001.nc: stored window has another"):
        changed = sampler.run_windows(mb, cv, **stiffer)
    assert changed.spring_constant.values[1, 0] == 2.0
    np.testing.assert_array_equal(first.cv_values.values[0], changed.cv_values.values[0])
    assert not np.array_equal(first.cv_values.values[1], changed.cv_values.values[1])


def test_window_planning_helpers():
    from mtcv_umbrella.windows import _components, coverage_gaps, plan_grid

    rng = np.random.default_rng(0)
    # two islands of data: the grid plan joins them into one connected set
    pts = np.concatenate([rng.normal([0, 0], 0.5, (500, 2)), rng.normal([6, 5], 0.5, (500, 2))])
    plan = plan_grid(pts, spacing=1.0, kT=0.025)
    cells = {tuple(np.floor(c - pts.min(axis=0)).astype(int)) for c in plan.centers}
    assert len(_components(cells)) == 1
    assert plan.spring_constants.shape == plan.centers.shape
    # a stretch no window visits is reported as a gap
    samples = [rng.normal(c, 0.1, 500) for c in (0.0, 0.25, 0.5, 1.5, 1.75)]
    gaps = coverage_gaps(samples, 0.0, 1.75, width=0.125)
    assert len(gaps) == 1 and 0.6 < gaps[0][0] < 1.0 and 1.0 < gaps[0][1] < 1.4


def test_walker_spread_flags_windows_whose_walkers_disagree():
    from mtcv_core.ergodicity import consistent_windows, walker_spread

    rng = np.random.default_rng(1)
    agree = rng.normal(0.0, 0.1, 4 * 500)
    split = np.concatenate([rng.normal(m, 0.1, 500) for m in (-1.0, -1.0, 1.0, 1.0)])
    assert walker_spread(agree, 4) < 1.0
    assert walker_spread(split, 4) > 15.0
    assert consistent_windows([agree, split], 4).tolist() == [True, False]
    # one walker: blocks of its series stand in for walkers
    assert walker_spread(np.concatenate([np.full(100, 0.0), np.full(300, 1.0)])
                         + rng.normal(0, 0.05, 400), 1) > 10


def _ar1_walkers(rng, walkers, n, phi=0.9, offsets=None):
    """(walkers * n,) walker-major AR(1) series (g ~ 19) with per-walker
    offsets (a mode slower than the run)."""
    x = np.zeros((walkers, n))
    noise = rng.normal(size=(walkers, n))
    for t in range(1, n):
        x[:, t] = phi * x[:, t - 1] + noise[:, t]
    if offsets is not None:
        x += np.asarray(offsets)[:, None]
    return x.ravel()


def test_walker_excess_is_calibrated_and_sees_a_planted_slow_mode():
    """Walkers of one ensemble: p roughly uniform (few below 1e-3, ratio near
    1); walkers each stuck at their own offset of a slow orthogonal mode
    (offsets of 0.3 sd of the series, invisible to a per-walker spread
    test): flagged."""
    from mtcv_core.ergodicity import walker_excess

    rng = np.random.default_rng(3)
    null = [walker_excess(_ar1_walkers(rng, 16, 1000), 16) for _ in range(200)]
    ratios, ps = np.array(null).T
    assert 0.8 < np.median(ratios) < 1.2
    assert np.mean(ps < 0.05) < 0.15 and np.mean(ps < 1e-3) <= 0.03
    stuck = _ar1_walkers(rng, 16, 1000, offsets=rng.normal(0, 0.3 * 2.3, 16))
    ratio, p = walker_excess(stuck, 16)
    assert ratio > 2.0 and p < 1e-6
    assert np.isnan(walker_excess(stuck, 1)[0])  # one walker: no between-walker test


def test_windows_whose_walkers_disagree_are_reseeded_and_reported():
    """The sampler's re-seeding pass: a window whose walkers disagree is run
    again (new id, new starts, reseed_factor times the steps) and takes the
    old one's place; one that still disagrees after the last pass is listed
    in windows_disagreeing; agreeing windows are untouched."""
    from mtcv_core.schema_umbrella import make_umbrella_dataset
    from mtcv_umbrella.windows import WindowPlan

    rng = np.random.default_rng(4)
    walkers, n = 8, 400
    good = [_ar1_walkers(rng, walkers, n) + c for c in (0.0, 1.0)]
    bad = _ar1_walkers(rng, walkers, n, offsets=rng.normal(0, 3.0, walkers)) + 2.0

    def dataset(series, centers, ids):
        return make_umbrella_dataset(np.array(centers)[:, None], 1.0,
                                     [s[:, None] for s in series], temperature_K=300.0,
                                     cv_names=("xi",), walkers=walkers, window_ids=ids)

    result = dataset(good + [bad], [0.0, 1.0, 2.0], [0, 1, 2])
    calls = []
    first_rerun_agrees = True

    def run(plan: WindowPlan, first_id: int, sampler: UmbrellaSampler):
        calls.append((first_id, sampler.n_steps, plan.centers[:, 0].tolist()))
        m = sampler.n_steps // 10  # samples per walker, stride 10
        fixed = first_rerun_agrees and len(calls) == 1
        series = [(_ar1_walkers(rng, walkers, m) if fixed else _ar1_walkers(
            rng, walkers, m, offsets=rng.normal(0, 3.0, walkers))) + c
            for c in plan.centers[:, 0]]
        return dataset(series, plan.centers[:, 0], range(first_id, first_id + len(series)))

    sampler = UmbrellaSampler(n_steps=4000, reseed_passes=2, reseed_factor=2,
                              reseed_max_fraction=0.5)  # one window in three fails
    out = sampler.reseed(result, run, first_id=3, kT=0.0258)
    assert calls == [(3, 8000, [2.0])]
    assert sorted(out["window"].values.tolist()) == [0, 1, 3]
    assert int(out["n_samples"].sel(window=3)) == walkers * 800
    assert json.loads(out.attrs["windows_reseeded"])[0]["window"] == 2
    assert json.loads(out.attrs["windows_disagreeing"]) == []
    xr.testing.assert_identical(out.sel(window=[0, 1])["n_samples"],
                                result.sel(window=[0, 1])["n_samples"])
    # a mode that no re-run equilibrates: every pass tried, then reported
    calls.clear()
    first_rerun_agrees = False
    out = sampler.reseed(result, run, first_id=3, kT=0.0258)
    assert [c[:2] for c in calls] == [(3, 8000), (4, 16000)]
    left = json.loads(out.attrs["windows_disagreeing"])
    assert [d["window"] for d in left] == [4] and left[0]["p"] < 1e-3
    assert UmbrellaSampler(reseed_passes=0).reseed(result, run, first_id=3, kT=0.0258).attrs[
        "windows_disagreeing"] != "[]"  # off: nothing run, the failure still reported
    # one window in three disagrees: above a max fraction of 0.3 nothing is run again
    calls.clear()
    out = UmbrellaSampler(reseed_max_fraction=0.3).reseed(result, run, first_id=3, kT=0.0258)
    assert calls == [] and [d["window"] for d in json.loads(out.attrs["windows_disagreeing"])
                            ] == [2]


def test_refinement_stiffens_where_the_first_pass_fell_short():
    """Gap -> four times stiffer windows inside it; a window whose walkers
    disagree -> a stiffer one at its centre; the spring cap is honoured."""
    from mtcv_umbrella.windows import refine_line_centers

    kT, k0 = 0.025, 1.6  # thermal width 0.125
    rng = np.random.default_rng(2)
    centers = np.array([0.0, 0.25, 0.5, 1.5, 1.75, 2.0])
    samples = [rng.normal(c, 0.12, 2000) for c in centers]
    c_new, k_new = refine_line_centers(centers, np.full(6, k0), samples, walkers=4, kT=kT,
                                       overlap_threshold=0.0, k_max=np.inf)
    assert c_new.size >= 3 and np.all((c_new > 0.6) & (c_new < 1.4))
    np.testing.assert_allclose(k_new, 4 * k0)
    c_new, k_new = refine_line_centers(centers, np.full(6, k0), samples, walkers=4, kT=kT,
                                       overlap_threshold=0.0, k_max=2 * k0)
    np.testing.assert_allclose(k_new, 2 * k0)
    # no gap, but window 2's walkers sit in two places
    centers = np.arange(8) * 0.25
    samples = [rng.normal(c, 0.12, 2000) for c in centers]
    samples[2] = np.concatenate([rng.normal(m, 0.05, 500) for m in (0.4, 0.4, 0.6, 0.6)])
    c_new, k_new = refine_line_centers(centers, np.full(8, k0), samples, walkers=4, kT=kT,
                                       overlap_threshold=0.0, k_max=np.inf)
    assert c_new.tolist() == [0.5] and k_new.tolist() == [4 * k0]
    # with that stiffer window present, nothing more is asked for
    c2, _ = refine_line_centers(np.append(centers, 0.5), np.append(np.full(8, k0), 4 * k0),
                                samples + [rng.normal(0.5, 0.06, 2000)], walkers=4, kT=kT,
                                overlap_threshold=0.0, k_max=np.inf)
    assert c2.size == 0


def test_a_superseded_window_does_not_hide_a_gap():
    """The quick demo's failure (0.1 eV off along xi): a soft window on the
    barrier top was bimodal, so a stiffer window took its place at its centre
    and the estimator left the soft one out; but its wide samples were the
    only ones on the steep flank next to it, so the refiner saw no gap there
    and MBAR got a bottleneck (overlap 0.005). Superseded windows now cover
    nothing: the flank gets windows."""
    from mtcv_umbrella.windows import refine_line_centers

    kT, k0 = 0.025, 1.6  # thermal width 0.125
    rng = np.random.default_rng(6)
    centers = np.array([0.0, 0.25, 1.25, 1.5, 0.5, 0.5])
    k = np.array([k0, k0, k0, k0, k0, 4 * k0])
    samples = [rng.normal(c, 0.12, 2000) for c in centers[:4]]
    # the soft window at 0.5: its walkers spread over the whole flank
    samples.append(rng.uniform(0.3, 1.1, 2000))
    samples.append(rng.normal(0.5, 0.06, 2000))  # the stiff one: 0.5 +- 0.06 only
    c_new, k_new = refine_line_centers(centers, k, samples, walkers=4, kT=kT,
                                       overlap_threshold=0.0, k_max=np.inf)
    assert np.any((c_new > 0.65) & (c_new < 0.95)), c_new
    assert np.all(k_new >= 4 * k0 - 1e-12)


def test_a_stretch_seen_only_in_a_slow_tail_is_a_gap():
    """Raw samples reach [0.6, 1.4] only through one window's slowly
    decorrelating tail (an AR(1) series, g ~ 2000): plenty of raw samples,
    fewer than two independent ones per bin, so the stretch is a gap (the
    alanine xi windows of docs/results.md had exactly this)."""
    from mtcv_core.ergodicity import statistical_inefficiency
    from mtcv_umbrella.windows import coverage_gaps

    rng = np.random.default_rng(5)
    fast = [rng.normal(c, 0.1, 4000) for c in (0.0, 0.25, 1.75, 2.0)]
    slow = np.empty(4000)
    slow[0] = 0.5
    for i in range(1, slow.size):  # AR(1) around 0.5, correlation time ~1000 samples
        slow[i] = 0.5 + 0.999 * (slow[i - 1] - 0.5) + rng.normal(0, 0.3 * np.sqrt(1 - 0.999**2))
    samples = fast + [slow]
    g = [statistical_inefficiency(s, 1) for s in samples]
    assert g[-1] > 100 * max(g[:-1])
    raw = coverage_gaps(samples, 0.0, 2.0, 0.05)
    effective = coverage_gaps(samples, 0.0, 2.0, 0.05, weights=[1 / x for x in g])
    covered = lambda gaps, x: not any(a <= x < b for a, b in gaps)  # noqa: E731
    assert covered(raw, 0.9) and not covered(effective, 0.9)
    assert covered(effective, 0.0) and covered(effective, 2.0 - 1e-9)


def test_grouped_normals_give_each_group_its_own_stream():
    from mtcv_ase.md import GroupedNormals

    def draws(groups):
        g = GroupedNormals([np.random.default_rng(s) for s in groups], [2] * len(groups),
                           block_bytes=200)
        return np.stack([g.standard_normal((2 * len(groups), 3)) for _ in range(7)])

    both = draws([5, 6])
    np.testing.assert_array_equal(both[:, :2], draws([5])[:, :2])
    np.testing.assert_array_equal(both[:, 2:], draws([6])[:, :2])
    # the same numbers as drawing from the generator directly
    ref = np.random.default_rng(5).standard_normal((3, 2, 3))
    np.testing.assert_array_equal(draws([5])[:3], ref)


def test_window_results_do_not_depend_on_task_grouping(mb):
    cv = true_cv_module()
    centers = np.array([[23.0, 31.0], [25.0, 28.0], [27.0, 25.0]])
    start = mb.embed(centers[:, 0], centers[:, 1])
    kw = dict(seed=9, centers=centers, spring_constants=[[0.5, 0.5]] * 3,
              start_positions=start)
    one = UmbrellaSampler(temperature_K=300.0, n_steps=100, equilibration_steps=10,
                          walkers_per_window=2, windows_per_task=3).run_windows(mb, cv, **kw)
    each = UmbrellaSampler(temperature_K=300.0, n_steps=100, equilibration_steps=10,
                           walkers_per_window=2, windows_per_task=1).run_windows(mb, cv, **kw)
    xr.testing.assert_identical(one, each)


class TiltedRadiusCV(torch.nn.Module):
    """(x~ + a cos(phi12), cos(phi12)): a CV that is mostly the radius but
    reads the embedding angle phi12 -- the slow spectator a learned CV
    reads -- and, as its second column (restrained with k = 0), the angle's
    cosine itself, so the window records it."""

    def __init__(self, amplitude: float = 0.6) -> None:
        super().__init__()
        self.amplitude = amplitude

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        x = positions.reshape(positions.shape[0], -1)[:, :5]
        r = torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2 + 1e-7 * x[:, 4] ** 2)
        cos12 = x[:, 0] / torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2)
        return torch.stack([r + self.amplitude * cos12, cos12], dim=1)


def _exact_window_means(mb, cv, center, k, temperature_K=300.0):
    """The window's exact mean of each CV column, from the system's
    quadrature (the restraint on the first column only)."""
    kT = 8.617333262e-5 * temperature_K
    num = np.zeros(2)
    den = 0.0
    for pos, w in mb.equilibrium_nodes(temperature_K, spectator_draws=32, n=300):
        with torch.no_grad():
            xi = cv(torch.as_tensor(pos)).numpy()
        wb = w * np.exp(-0.5 * k * (xi[:, 0] - center) ** 2 / kT)
        num += wb @ xi
        den += wb.sum()
    return num / den


@pytest.mark.parametrize("engine", ["fast", "ase"])
def test_spectator_moves_equilibrate_a_slow_angle_the_cv_reads(mb, engine):
    """Walkers started at phi12 = 0 in a window on x~ + 0.6 cos(phi12):
    the angle diffuses over hundreds of ps at x~ ~ 23 angstrom, so without
    spectator moves the walkers keep cos(phi12) ~ 1, far off the window's exact
    mean; with the moves (exact Monte Carlo on the restraint energy) the
    window reaches its ensemble."""
    cv = TiltedRadiusCV()
    center, k = 21.0, 0.05  # on A's flank: the PMF's slope tilts phi12
    exact = _exact_window_means(mb, cv, center, k)
    assert exact[1] < -0.2  # the slope of the PMF tilts the angle distribution
    start = mb.embed(np.array([20.4]), np.array([29.0]), phi12=0.0, phi34=0.3)
    walkers = 16 if engine == "fast" else 6
    common = dict(engine=engine, temperature_K=300.0, n_steps=2000, equilibration_steps=500,
                  stride=10, walkers_per_window=walkers)
    runs = {moves: UmbrellaSampler(spectator_moves=moves, **common).run_windows(
        mb, cv, seed=3, centers=[[center, 0.0]], spring_constants=[[k, 0.0]],
        start_positions=start) for moves in ((0, 20) if engine == "fast" else (20,))}
    acc = json.loads(runs[20].attrs["spectator_acceptance"])
    assert 0.05 < acc["0"] < 0.95
    z = {}
    for moves, ds in runs.items():
        cos12 = ds.cv_values.values[0, :, 1].reshape(walkers, -1).mean(axis=1)
        z[moves] = (cos12.mean() - exact[1]) / max(cos12.std(ddof=1) / np.sqrt(walkers), 0.01)
    assert abs(z[20]) < 4, (z, exact)
    if engine == "fast":  # the plain ASE path is as slow to equilibrate the angle
        assert "spectator_moves" not in runs[0].attrs
        assert abs(z[0]) > 8, (z, exact)


def test_spectator_moves_need_periodic_spectators():
    from mtcv_core.config import ConfigError
    from mtcv_core.interfaces import System

    class Plain(System):
        name = "plain"

        def make_atoms(self, basin=None):
            raise NotImplementedError

        def basin_index(self, atoms):
            return -1

    with pytest.raises(ConfigError, match="spectator_moves = 10: system 'plain' declares no"):
        UmbrellaSampler(spectator_moves=10).check(Plain())
