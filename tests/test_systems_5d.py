"""The built-in 5D model systems (plugin ``mtcv_systems``)."""

from __future__ import annotations

import json
import pickle
import time

import numpy as np
import pytest
from ase import units
from ase.md.langevin import Langevin

from mtcv_core.units import kT_eV
from mtcv_systems.embedded5d import DOF_MASK, MullerBrown5D, ThreeWell5D
from mtcv_systems.potentials2d import KCAL_PER_MOL_IN_EV, steepest_descent

try:  # ase >= 3.29
    from ase.md.velocitydistribution import thermalize_momenta
except ImportError:  # pragma: no cover - older ase
    from ase.md.velocitydistribution import MaxwellBoltzmannDistribution

    def thermalize_momenta(atoms, temperature_K, *, rng=None):
        MaxwellBoltzmannDistribution(atoms, temperature_K=temperature_K, rng=rng)


# physically relevant (x~, y~) boxes, angstrom
REGIONS = {"muller_brown_5d": ((14.0, 48.0), (4.0, 36.0)),
           "three_well_5d": ((1.5, 13.5), (3.0, 15.5))}


@pytest.fixture(scope="module", params=["muller_brown_5d", "three_well_5d"])
def system(request):
    return MullerBrown5D() if request.param == "muller_brown_5d" else ThreeWell5D()


@pytest.fixture(scope="module")
def mb():
    return MullerBrown5D()


@pytest.fixture(scope="module")
def tw():
    return ThreeWell5D()


def random_positions(system, n, rng):
    """(n, 2, 3) positions with (x~, y~) uniform in the system's region,
    random angles and x5 ~ N(0, 5 angstrom)."""
    (x0, x1), (y0, y1) = REGIONS[system.name]
    return system.embed(rng.uniform(x0, x1, n), rng.uniform(y0, y1, n),
                        phi12=rng.uniform(0, 2 * np.pi, n), phi34=rng.uniform(0, 2 * np.pi, n),
                        x5=rng.normal(0.0, 5.0, n))


def fd_forces(energy, pos, h=1e-5):
    """-dE/dx by central differences over the 5 active coordinates."""
    f = np.zeros_like(pos)
    for a, k in zip(*np.nonzero(DOF_MASK), strict=True):
        p, m = pos.copy(), pos.copy()
        p[a, k] += h
        m[a, k] -= h
        f[a, k] = -(energy(p) - energy(m)) / (2 * h)
    return f


# ---------------------------------------------------------------- geometry


def test_embedding_round_trip(system):
    rng = np.random.default_rng(0)
    xt, yt = rng.uniform(2, 12, 50), rng.uniform(2, 12, 50)
    pos = system.embed(xt, yt, phi12=rng.uniform(0, 6, 50), phi34=rng.uniform(0, 6, 50),
                       x5=rng.normal(0, 10, 50))
    assert pos.shape == (50, 2, 3)
    assert np.all(pos[:, 1, 2] == 0.0)
    np.testing.assert_allclose(system.true_cv(pos), np.stack([xt, yt], 1), rtol=1e-12)
    np.testing.assert_array_equal(system.from_5d(system.to_5d(pos)), pos)
    assert system.to_5d(pos).shape == (50, 5)
    # x5 barely changes the energy
    e0 = system.energy(system.embed(xt, yt))
    np.testing.assert_allclose(system.energy(pos), e0, rtol=1e-12, atol=1e-12)


def test_make_atoms(system):
    for k, basin in enumerate(system.basins):
        atoms = system.make_atoms(basin)
        assert len(atoms) == 2
        np.testing.assert_array_equal(atoms.get_masses(), [1.0, 1.0])
        xt, yt, e = system.minimum(basin)
        np.testing.assert_allclose(system.true_cv(atoms.positions[None])[0], [xt, yt],
                                   atol=1e-12)
        assert atoms.get_potential_energy() == pytest.approx(e, abs=1e-12)
        assert np.abs(atoms.get_forces()).max() < 1e-6
        assert system.basin_index(atoms.positions[None])[0] == k
        assert atoms.get_number_of_degrees_of_freedom() == 5
    assert system.supports_batch
    assert system.true_cv_names == ("x_tilde", "y_tilde")
    json.dumps(system.describe())
    clone = pickle.loads(pickle.dumps(system))
    assert clone.barrier(system.basins[0], system.basins[1]) == system.barrier(
        system.basins[0], system.basins[1])


def test_dof_mask_and_start_positions(system):
    np.testing.assert_array_equal(system.dof_mask, DOF_MASK)
    assert DOF_MASK.sum() == 5
    rng = np.random.default_rng(4)
    for k, basin in enumerate(system.basins):
        train = system.start_positions(basin, 64, rng=rng)
        test = system.start_positions(basin, 64, rng=rng, split="test")
        assert train.shape == test.shape == (64, 2, 3)
        xt, yt, _ = system.minimum(basin)
        for pos in (train, test):
            np.testing.assert_allclose(system.true_cv(pos), np.tile([xt, yt], (64, 1)),
                                       atol=1e-9)
            assert np.all(system.basin_index(pos) == k)
        # interleaved eighth-turn sectors: train k pi/2 + [0, pi/4), test k pi/2 + [pi/4, pi/2)
        for pos, lo in ((train, 0.0), (test, np.pi / 4)):
            x = system.to_5d(pos)
            for a, b in ((0, 1), (2, 3)):
                phase = np.mod(np.arctan2(x[:, b], x[:, a]), np.pi / 2)
                assert np.all((phase >= lo - 1e-9) & (phase < lo + np.pi / 4 + 1e-9))
                quadrant = np.floor(np.mod(np.arctan2(x[:, b], x[:, a]), 2 * np.pi)
                                    / (np.pi / 2))
                assert len(np.unique(quadrant)) == 4  # all quadrants seen
    with pytest.raises(ValueError):
        system.start_positions(system.basins[0], 2, rng=rng, split="valid")


# ------------------------------------------------------------------ forces


def test_forces_match_finite_differences(system):
    rng = np.random.default_rng(1)
    pos = random_positions(system, 200, rng)
    e, f = system.energy_and_forces(pos)
    keep = np.linalg.norm(f.reshape(len(f), -1), axis=1) > 1e-2  # away from critical points
    pos, e, f = pos[keep][:20], e[keep][:20], f[keep][:20]
    assert len(pos) == 20
    assert np.all(f[:, 1, 2] == 0.0)
    atoms = system.make_atoms()

    def ase_energy(p):
        atoms.set_positions(p, apply_constraint=False)
        return atoms.get_potential_energy()

    def batch_energy(p):
        return float(system.energy_and_forces(p[None])[0][0])

    for p, ei, fi in zip(pos, e, f, strict=True):
        ref = fd_forces(batch_energy, p)
        assert np.linalg.norm(fi - ref) / np.linalg.norm(ref) < 1e-6
        ref_ase = fd_forces(ase_energy, p)
        atoms.set_positions(p, apply_constraint=False)
        assert atoms.get_potential_energy() == pytest.approx(ei, abs=1e-13)
        fa = atoms.get_forces()
        assert fa.shape == (2, 3) and fa[1, 2] == 0.0
        assert np.linalg.norm(fa - ref_ase) / np.linalg.norm(ref_ase) < 1e-6


def test_forces_finite_at_singular_radii(system):
    pos = system.embed([0.0, 5.0, 0.0], [5.0, 0.0, 0.0])
    e, f = system.energy_and_forces(pos)
    assert np.all(np.isfinite(e)) and np.all(np.isfinite(f))


# -------------------------------------------------------- critical points


def test_muller_brown_critical_points(mb):
    cp = mb.critical_points()
    ref_min = [(23.07, 31.07, -29.34), (41.98, 8.45, -21.63), (31.20, 15.47, -16.15)]
    ref_sad = [(35.40, 12.69, -14.45), (18.85, 17.99, -8.13)]
    for found, ref in ((cp.minima, ref_min), (cp.saddles, ref_sad)):
        assert len(found) == len(ref)
        for c, (x, y, e) in zip(found, ref, strict=True):
            assert (c.x, c.y) == (pytest.approx(x, abs=0.01), pytest.approx(y, abs=0.01))
            assert c.energy / KCAL_PER_MOL_IN_EV == pytest.approx(e, abs=0.01)
    assert mb.minimum("A")[:2] == (pytest.approx(23.07, abs=0.01), pytest.approx(31.07, abs=0.01))
    assert mb.minimum("B")[:2] == (pytest.approx(41.98, abs=0.01), pytest.approx(8.45, abs=0.01))
    # the two saddles connect A-I and I-B (I: the unnamed intermediate minimum)
    assert sorted(tuple(sorted(c)) for c in cp.connections) == [(0, 2), (1, 2)]
    print(f"MB barriers: A->B {mb.barrier('A', 'B'):.4f} eV, B->A {mb.barrier('B', 'A'):.4f} eV")
    assert mb.barrier("A", "B") == pytest.approx(0.92, abs=0.005)
    assert mb.barrier("B", "A") == pytest.approx(0.59, abs=0.005)
    assert mb.barrier("A", "B", direct=True) == np.inf


def test_three_well_critical_points(tw):
    pot = tw.potential
    cp = tw.critical_points()

    def std(c):
        x, y = pot.to_standard(c.x, c.y)
        return float(x), float(y), float(pot.to_standard_energy(c.energy))

    ref_min = [(-1.048, -0.042, -3.995), (1.048, -0.042, -3.995), (0.0, 1.537, -2.172)]
    ref_sad = [(-0.617, 1.103, -1.647), (0.617, 1.103, -1.647), (0.0, -0.316, -1.385)]
    for found, ref in ((cp.minima, ref_min), (cp.saddles, ref_sad)):
        assert len(found) == 3
        got = sorted((std(c) for c in found), key=lambda t: (round(t[2], 2), t[0]))
        ref = sorted(ref, key=lambda t: (round(t[2], 2), t[0]))
        for (x, y, e), (rx, ry, re) in zip(got, ref, strict=True):
            assert (x, y, e) == (pytest.approx(rx, abs=0.01), pytest.approx(ry, abs=0.01),
                                 pytest.approx(re, abs=0.01))
    assert pot.to_standard(*tw.minimum("A")[:2])[0] < 0 < pot.to_standard(*tw.minimum("B")[:2])[0]
    assert pot.to_standard(*tw.minimum("C")[:2])[1] == pytest.approx(1.537, abs=0.01)

    scale = pot.energy_scale  # V = V_std/2 + 2 eV
    expect = {("A", "C"): (-1.647 + 3.995) * scale, ("B", "C"): (-1.647 + 3.995) * scale,
              ("C", "A"): (-1.647 + 2.172) * scale, ("C", "B"): (-1.647 + 2.172) * scale}
    for (a, b), v in expect.items():
        assert tw.barrier(a, b) == pytest.approx(v, abs=0.005)
        assert tw.barrier(a, b, direct=True) == pytest.approx(v, abs=0.005)
    # A -> B: the direct saddle (0, -0.316) is higher than the path through C
    assert tw.barrier("A", "B", direct=True) == pytest.approx((-1.385 + 3.995) * scale, abs=0.005)
    assert tw.barrier("A", "B") == pytest.approx((-1.647 + 3.995) * scale, abs=0.005)
    print("three-well barriers (eV): " + ", ".join(
        f"{a}->{b} {tw.barrier(a, b):.4f} (direct {tw.barrier(a, b, direct=True):.4f})"
        for a in tw.basins for b in tw.basins if a != b))


# ----------------------------------------------------------------- basins


def test_basin_index_agrees_with_steepest_descent(system):
    rng = np.random.default_rng(2)
    pos = random_positions(system, 3000, rng)
    labels = system.basin_index(pos)
    assert labels.shape == (3000,)
    for k in range(len(system.basins)):
        assert np.sum(labels == k) >= 20
    xy = system.true_cv(pos[labels >= 0])
    ex, ey = steepest_descent(system.potential, xy[:, 0], xy[:, 1], gtol=1e-5)
    mins = np.array([system.minimum(b)[:2] for b in system.basins])
    end = mins[labels[labels >= 0]]
    assert np.hypot(ex - end[:, 0], ey - end[:, 1]).max() < 0.05


def test_intermediate_minimum_is_unlabelled(mb):
    cp = mb.critical_points()
    named = {mb.minimum(b)[:2] for b in mb.basins}
    (inter,) = [m for m in cp.minima if (m.x, m.y) not in named]
    rng = np.random.default_rng(3)
    r, t = rng.uniform(0, 1.0, 200), rng.uniform(0, 2 * np.pi, 200)
    pos = mb.embed(inter.x + r * np.cos(t), inter.y + r * np.sin(t),
                   phi12=rng.uniform(0, 6, 200), x5=rng.normal(0, 5, 200))
    assert np.all(mb.basin_index(pos) == -1)


# --------------------------------------------------------------------- MD


@pytest.mark.parametrize("name", ["muller_brown_5d", "three_well_5d"])
def test_ase_langevin_stays_in_basin(name):
    system = MullerBrown5D() if name == "muller_brown_5d" else ThreeWell5D()
    mins = np.array([system.minimum(b)[:2] for b in system.basins])
    for k, basin in enumerate(system.basins):
        rng = np.random.default_rng(10 + k)
        atoms = system.make_atoms(basin)
        thermalize_momenta(atoms, temperature_K=300, rng=rng)
        md = Langevin(atoms, timestep=1 * units.fs, temperature_K=300,
                      friction=0.01 / units.fs, fixcm=False, rng=rng)
        frames = []
        md.attach(lambda atoms=atoms, frames=frames: frames.append(atoms.positions.copy()),
                  interval=10)
        t0 = time.perf_counter()
        md.run(1000)
        elapsed = time.perf_counter() - t0
        assert elapsed < 5.0, f"1000 ASE steps took {elapsed:.2f} s"
        frames = np.array(frames)
        assert len(frames) == 101
        assert np.all(frames[:, 1, 2] == 0.0)  # the inactive coordinate never moves
        labels = system.basin_index(frames)
        # never in another basin; thermal excursions above half the lowest
        # barrier are labelled -1 ...
        assert set(np.unique(labels)) <= {k, -1}
        assert np.mean(labels == k) > 0.8
        # ... but every frame is still in the basin of attraction of its minimum
        xy = system.true_cv(frames)
        ex, ey = steepest_descent(system.potential, xy[:, 0], xy[:, 1], gtol=1e-5)
        assert np.hypot(ex - mins[k, 0], ey - mins[k, 1]).max() < 0.05
        assert np.ptp(system.true_cv(frames), axis=0).max() > 0.1  # it did move


# ----------------------------------------------------------------- plugin


def test_plugin_is_discoverable():
    import mtcv_core

    registry = mtcv_core.load_plugins(reload=True)
    system = registry.create("system", "muller_brown_5d")
    assert isinstance(system, MullerBrown5D)
    assert isinstance(registry.create("system", "three_well_5d", temperature_K=250.0),
                      ThreeWell5D)
    assert registry.get("system", "three_well_5d").plugin == "systems"


@pytest.mark.parametrize("cls", [MullerBrown5D, ThreeWell5D])
def test_energy_scale_scales_barriers_and_keeps_the_critical_points(cls):
    """energy_scale multiplies V - const: same critical points, energy
    barriers times the factor; at 0.2 the MB A -> B free-energy barrier
    (quadrature) is 6-10 kT at 300 K, low enough to count transitions."""
    full, low = cls(), cls(energy_scale=0.2)
    for a, b in zip(full.critical_points().minima, low.critical_points().minima, strict=True):
        assert (a.x, a.y) == pytest.approx((b.x, b.y), abs=1e-6)
    for key, value in full.describe()["barriers_eV"].items():
        assert low.describe()["barriers_eV"][key] == pytest.approx(0.2 * value, rel=1e-6)
    x = low.embed(*low.minimum("A")[:2])
    e_full, f_full = full.energy_and_forces(x)
    e_low, f_low = low.energy_and_forces(x)
    np.testing.assert_allclose(f_low, 0.2 * f_full, rtol=1e-10, atol=1e-14)
    if cls is MullerBrown5D:
        np.testing.assert_allclose(e_low, 0.2 * e_full, rtol=1e-12)
        ab = next(r for r in low.reference_transitions(300.0) if (r["from"], r["to"]) == ("A", "B"))
        assert 6.0 < ab["barrier_eV"] / kT_eV(300.0) < 10.0
    with pytest.raises(ValueError, match="energy_scale"):
        cls(energy_scale=0.0)
