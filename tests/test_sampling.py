"""Data sources: labels, the two engines, Dask determinism, the split."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
from scipy.spatial import cKDTree

from mtcv_sampling import TPS, BasinMD
from mtcv_sampling.basin_md import _kept_frames
from mtcv_systems import MullerBrown5D, ThreeWell5D


def overlap(train: np.ndarray, test: np.ndarray, *, max_points: int = 20000,
            seed: int = 0) -> float:
    """Fraction of test points that lie inside the training set's cloud.

    A test point counts as inside when its nearest training point is closer
    than the 95th percentile of the nearest-neighbour distances *within* the
    training set (the set's own sampling resolution). 0: disjoint sets; about
    0.95: the test set is drawn from the same distribution.

    train: (n, d), test: (m, d) points in any coordinates; at most
    ``max_points`` of each are used (a random subset).
    """
    rng = np.random.default_rng(seed)
    train = np.asarray(train, float).reshape(len(train), -1)
    test = np.asarray(test, float).reshape(len(test), -1)
    if len(train) < 2 or len(test) == 0:
        raise ValueError("overlap needs at least 2 training and 1 test point")
    if len(train) > max_points:
        train = train[rng.choice(len(train), max_points, replace=False)]
    if len(test) > max_points:
        test = test[rng.choice(len(test), max_points, replace=False)]
    tree = cKDTree(train)
    d_self = tree.query(train, k=2)[0][:, 1]
    resolution = np.percentile(d_self, 95)
    d_test = tree.query(test, k=1)[0]
    return float(np.mean(d_test <= resolution))


def frame_names(ds, name):
    """Per-frame names of categorical variable ``name``."""
    from mtcv_core.schema import category_names

    return [category_names(ds, name)[c] for c in ds[name].values]


@pytest.fixture(scope="module")
def mb():
    system = MullerBrown5D()
    system.critical_points()
    return system


def small_tps(**kw):
    # energy-biased shooting points, as the 5D configs use: uniform ones on
    # Muller-Brown often start in the intermediate minimum, whose segments
    # wander for ~20,000 steps (the tests would take twice as long)
    opts = dict(chains=4, shots_per_chain=3, burn_in_shots=1, stride=10,
                temperature_K=300.0, seed_temperature_K=2500.0, walkers_per_task=2,
                shooting_energy_width_eV=0.05)
    opts.update(kw)
    return TPS(**opts)


def test_kept_frames_rule():
    assert _kept_frames(np.array([0, 0, -1, 0, -1]), 0) == (4, False)
    assert _kept_frames(np.array([0, -1, 1, 0]), 0) == (1, True)
    assert _kept_frames(np.array([1, 1]), 0) == (0, True)


def test_basin_md_frames_carry_starting_basin(mb):
    ds = BasinMD(trajectories_per_basin=6, n_steps=400, stride=10, equilibration_steps=100,
                 temperature_K=300.0, walkers_per_task=4).run(mb, seed=11)
    assert set(np.unique(ds.label.values)) == {0, 1}
    basin = mb.basin_index(ds.coordinates.values)
    for traj in np.unique(ds.trajectory.values):
        sel = ds.trajectory.values == traj
        labels = np.unique(ds.label.values[sel])
        assert labels.size == 1
        # no frame lies in another basin (-1: a thermal excursion)
        assert basin[sel][0] in (labels[0], -1)
        assert not np.any((basin[sel] >= 0) & (basin[sel] != labels[0]))
    assert set(frame_names(ds, "source")) == {"basin_md"}
    assert set(frame_names(ds, "label_source")) == {"starting_basin"}


@pytest.mark.parametrize("system_cls,transition", [(MullerBrown5D, ["A", "B"]),
                                                   (ThreeWell5D, ["A", "C"])])
def test_tps_segments_carry_committed_basin(system_cls, transition):
    system = system_cls()
    ds = small_tps(transitions=[transition]).run(system, seed=5)
    assert ds.sizes["frame"] > 0
    basin = system.basin_index(ds.coordinates.values)
    traj = ds.trajectory.values
    for t in np.unique(traj):
        idx = np.flatnonzero(traj == t)
        labels = np.unique(ds.label.values[idx])
        assert labels.size == 1 and labels[0] >= 0
        # the segment's last frame is where it committed
        assert basin[idx[-1]] == labels[0]
        # before that it was in no basin (it would have stopped there)
        assert (basin[idx[:-1]] == -1).all()
    assert ds.attrs["tps_shots"] == 4 * 4
    assert set(frame_names(ds, "label_source")) == {"committed_basin"}


def test_fast_and_ase_engines_agree_in_basin(mb):
    """Same physics: <V> and the x~ distribution in basin A at 300 K agree
    within statistical error (independent trajectories give the error)."""
    common = dict(n_steps=1500, stride=5, equilibration_steps=300, temperature_K=300.0,
                  basins=["A"])
    fast = BasinMD(trajectories_per_basin=48, engine="fast", **common).run(mb, seed=1)
    ase = BasinMD(trajectories_per_basin=8, engine="ase", **common).run(mb, seed=2)

    def per_traj(ds, values):
        t = ds.trajectory.values
        return np.array([values[t == k].mean() for k in np.unique(t)])

    for name, f in [("V", lambda ds: ds.energy.values),
                    ("x~", lambda ds: mb.true_cv(ds.coordinates.values)[:, 0]),
                    ("x~^2", lambda ds: mb.true_cv(ds.coordinates.values)[:, 0] ** 2)]:
        a, b = per_traj(fast, f(fast)), per_traj(ase, f(ase))
        z = abs(a.mean() - b.mean()) / np.hypot(a.std(ddof=1) / np.sqrt(a.size),
                                               b.std(ddof=1) / np.sqrt(b.size))
        assert z < 4.0, (name, a.mean(), b.mean(), z)


@pytest.mark.slow  # 20 s; the pipeline's 1-vs-2-workers test covers it in the default suite
def test_dask_workers_do_not_change_results(mb):
    from dask.distributed import Client, LocalCluster

    basin = BasinMD(trajectories_per_basin=4, n_steps=200, stride=10, equilibration_steps=50,
                    temperature_K=300.0, walkers_per_task=2)
    tps = small_tps(chains=2, shots_per_chain=2, walkers_per_task=1, max_segment_steps=5000)
    results = []
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster, Client(cluster) as client:
            results.append([basin.run(mb, seed=3, client=client),
                            tps.run(mb, seed=3, client=client)])
    serial = [basin.run(mb, seed=3), tps.run(mb, seed=3)]
    for one, two, ser in zip(results[0], results[1], serial, strict=True):
        xr.testing.assert_identical(one, two)
        xr.testing.assert_identical(one, ser)


def test_split_disjoint_in_5d_overlapping_in_true_cvs(mb):
    src = BasinMD(trajectories_per_basin=16, n_steps=1000, stride=10, temperature_K=300.0)
    train = src.run(mb, seed=4, split="train")
    test = src.run(mb, seed=4, split="test", scale=0.5)
    assert (test.split.values == 1).all()
    x_train, x_test = (mb.to_5d(d.coordinates.values) for d in (train, test))
    cv_train, cv_test = (mb.true_cv(d.coordinates.values) for d in (train, test))
    assert overlap(x_train, x_test) < 0.01
    assert overlap(cv_train, cv_test) > 0.5


def test_tps_frame_cap_keeps_committed_end(mb):
    ds = small_tps(chains=2, shots_per_chain=2, stride=1, max_frames_per_segment=4).run(
        mb, seed=8)
    basin = mb.basin_index(ds.coordinates.values)
    for t in np.unique(ds.trajectory.values):
        idx = np.flatnonzero(ds.trajectory.values == t)
        assert 1 <= idx.size <= 5
        assert basin[idx[-1]] == ds.label.values[idx[-1]]


@pytest.mark.parametrize("fmt", ["traj", "extxyz", "nc"])
def test_trajectory_files_source(mb, tmp_path, fmt):
    """Existing trajectories with their energies, in ASE's formats and ours."""
    import ase.io

    from mtcv_ase.frames import frames_to_atoms
    from mtcv_core.io import write_dataset
    from mtcv_sampling import TrajectoryFiles

    ds = BasinMD(trajectories_per_basin=1, n_steps=50, stride=10, equilibration_steps=0,
                 temperature_K=300.0).run(mb, seed=2)
    path = tmp_path / f"frames.{fmt}"
    if fmt == "nc":
        write_dataset(ds, path)
    else:
        ase.io.write(path, frames_to_atoms(ds))
    out = TrajectoryFiles(paths=[str(path)], test_paths=[str(path)],
                          labeler="cv_region").run(mb, seed=0)
    np.testing.assert_allclose(out.coordinates.values, ds.coordinates.values, atol=1e-6)
    np.testing.assert_allclose(out.energy.values, ds.energy.values, atol=1e-6)
    np.testing.assert_allclose(out.forces.values, ds.forces.values, atol=1e-6)
    np.testing.assert_array_equal(out.label.values, mb.basin_index(ds.coordinates.values))
    assert set(frame_names(out, "source")) == {"file"}
    assert set(frame_names(out, "label_source")) == {"cv_region"}


def test_trajectory_files_clear_errors(mb, tmp_path):
    import ase.io
    from ase import Atoms

    from mtcv_sampling import TrajectoryFiles

    with pytest.raises(FileNotFoundError, match="missing.traj: no such file"):
        TrajectoryFiles(paths=[str(tmp_path / "missing.traj")]).run(mb, seed=0)
    bare = tmp_path / "bare.xyz"
    ase.io.write(bare, [Atoms("H2", positions=np.zeros((2, 3)))])
    with pytest.raises(ValueError, match="bare.xyz: image 0 has no energy"):
        TrajectoryFiles(paths=[str(bare)]).run(mb, seed=0)


# ------------------------------------------------- TPS forgets a hot seed
def _double_well_x_basins():
    """The example plugin's 2D double well with basins defined on x alone,
    so that the harmonic coordinate y is independent of reactivity: in the
    path ensemble every frame's y is Boltzmann distributed, <k y^2 / 2> = kT/2."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples" / "plugin_package"))
    try:
        from mtcv_example.double_well import DoubleWell2D
    finally:
        sys.path.pop(0)

    class XBasins(DoubleWell2D):
        def basin_index_2d(self, x, y):
            x = np.asarray(x, float)
            return np.where(x < -0.8, 0, np.where(x > 0.8, 1, -1))

    return XBasins(barrier_eV=0.25, stiffness_y=2.0, tilt_eV=0.0)


@pytest.mark.parametrize("width,expect_equilibrium", [(0.0, True), (0.05, False)])
def test_tps_frames_reach_the_target_temperature(width, expect_equilibrium):
    """From a 3000 K seed path, 200 burn-in shots: with uniform shooting points
    the recorded frames' harmonic energy is kT/2 at 300 K (measured 1.00 +- 0.03
    of it); energy-biased shooting points (width 0.05 eV ~ 2 kT) start the
    segments from hotter frames (measured 1.33 +- 0.08)."""
    from ase.units import kB

    system = _double_well_x_basins()
    src = TPS(transitions=[["L", "R"]], chains=64, shots_per_chain=40, burn_in_shots=200,
              stride=5, seed_temperature_K=3000.0, seed_walkers=16,
              shooting_energy_width_eV=width, walkers_per_task=64, temperature_K=300.0,
              timestep_fs=1.0, friction_per_fs=0.01)
    ds = src.run(system, seed=4)
    y = ds["coordinates"].values[:, 0, 1]
    ratio = 0.5 * system.k * y**2 / (0.5 * kB * 300.0)
    chain = ds["trajectory"].values // (200 + 40)
    per_chain = np.array([ratio[chain == c].mean() for c in np.unique(chain)])
    err = per_chain.std(ddof=1) / np.sqrt(len(per_chain))
    if expect_equilibrium:
        assert abs(ratio.mean() - 1.0) < max(4 * err, 0.1), (ratio.mean(), err)
    else:
        assert ratio.mean() > 1.15, (ratio.mean(), err)
