"""Alanine dipeptide in vacuum with amber99sb (plugin ``mtcv_alanine``)."""

from __future__ import annotations

import json
import pickle
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from ase import units
from ase.md.langevin import Langevin
from scipy.spatial.transform import Rotation

import mtcv_core
from mtcv_alanine import AlanineDipeptide
from mtcv_alanine.forcefield import OpenMMCalculator, UnsupportedForceError, VectorizedForceField
from mtcv_alanine.structure import (
    ATOMS,
    BASINS,
    build_pdb,
    build_positions,
    is_l_alanine,
    make_topology,
    read_pdb,
)
from mtcv_ase.md import BatchLangevin, LangevinParams, maxwell_boltzmann, run_ase_langevin

mm = pytest.importorskip("openmm")


@pytest.fixture(scope="module")
def ala():
    system = AlanineDipeptide()
    system.minimum()  # build once for the module
    return system


@pytest.fixture(scope="module")
def openmm_context(ala):
    return mm.Context(ala.openmm_system, mm.VerletIntegrator(0.001),
                      mm.Platform.getPlatformByName("Reference"))


def openmm_energy_forces(context, positions):
    """OpenMM's own State values, converted: eV and eV/angstrom."""
    context.setPositions(positions * 0.1 * mm.unit.nanometer)
    state = context.getState(getEnergy=True, getForces=True)
    e = state.getPotentialEnergy().value_in_unit(mm.unit.kilojoule_per_mole)
    f = state.getForces(asNumpy=True).value_in_unit(
        mm.unit.kilojoule_per_mole / mm.unit.nanometer)
    return e * units.kJ / units.mol, np.asarray(f) * (units.kJ / units.mol / 10.0)


def perturbed(ala, n, scale, seed):
    rng = np.random.default_rng(seed)
    base = np.stack([ala.minimum(b) for b in BASINS])
    return base[rng.integers(0, len(BASINS), n)] + scale * rng.standard_normal((n, 22, 3))


# ------------------------------------------------------------- structure
def test_atoms_elements_masses_and_formula(ala):
    atoms = ala.make_atoms("C7eq")
    assert len(atoms) == 22
    assert atoms.get_chemical_formula(mode="hill") == "C6H12N2O2"
    assert list(atoms.get_chemical_symbols()) == [el for _, _, el in ATOMS]
    masses = atoms.get_masses()
    np.testing.assert_allclose(masses, ala.masses)
    hydrogen = np.array(atoms.get_chemical_symbols()) == "H"
    np.testing.assert_allclose(masses[hydrogen], 1.008, rtol=1e-4)
    assert isinstance(atoms.calc, OpenMMCalculator)
    assert not atoms.pbc.any()


def test_topology_has_the_21_dipeptide_bonds():
    top, models = read_pdb()
    assert models.shape == (len(BASINS), 22, 3)
    assert [r.name for r in top.residues()] == ["ACE", "ALA", "NME"]
    bonds = {tuple(sorted((b[0].index, b[1].index))) for b in top.bonds()}
    assert len(bonds) == 21
    assert bonds == {tuple(sorted((b[0].index, b[1].index))) for b in make_topology().bonds()}
    degree = np.zeros(22, int)
    for i, j in bonds:
        degree[i] += 1
        degree[j] += 1
    symbols = [el for _, _, el in ATOMS]
    expected = {"H": 1, "C": None, "N": 3, "O": 1}
    for k, el in enumerate(symbols):
        if expected[el] is not None:
            assert degree[k] == expected[el], (k, el)
    assert sorted(degree[[k for k, el in enumerate(symbols) if el == "C"]]) == [3, 3, 4, 4, 4, 4]
    # the force field's bond terms are exactly these bonds
    ff = AlanineDipeptide().force_field_evaluator
    assert {tuple(sorted(b)) for b in ff.bond_index.tolist()} == bonds
    assert ff.describe()["angles"] == 36


def test_structure_is_l_alanine_and_built_dihedrals_are_exact(ala):
    x = build_positions(-60.0, 140.0)
    np.testing.assert_allclose(np.degrees(ala.true_cv(x[None])[0]), [-60.0, 140.0], atol=1e-9)
    assert is_l_alanine(x)
    for b in BASINS:
        assert is_l_alanine(ala.minimum(b))


def test_minima_are_amber99sb_basin_minima(ala):
    """amber99sb, vacuum: C7eq (-77.5, 54.1) lowest, then beta/C5 (-147.0,
    159.1) +0.026 eV, then C7ax (60.2, -40.9) +0.062 eV."""
    ranges = {"C7eq": ((-90, -65), (40, 80)), "C7ax": ((45, 80), (-60, -25)),
              "beta": ((-165, -130), (140, 175))}
    energies = {}
    for k, b in enumerate(BASINS):
        x = ala.minimum(b)
        phi, psi = np.degrees(ala.true_cv(x[None])[0])
        (lo1, hi1), (lo2, hi2) = ranges[b]
        assert lo1 < phi < hi1 and lo2 < psi < hi2, (b, phi, psi)
        e, f = ala.energy_and_forces(x[None])
        assert np.abs(f).max() < 1e-4
        energies[b] = e[0]
        assert ala.basin_index(x[None])[0] == k
        np.testing.assert_allclose(ala.make_atoms(b).get_positions(), x)
    assert energies["C7eq"] < energies["beta"] < energies["C7ax"]
    assert 0.01 < energies["beta"] - energies["C7eq"] < 0.04
    assert 0.04 < energies["C7ax"] - energies["C7eq"] < 0.08


def test_packaged_pdb_is_reproducible():
    _, stored = read_pdb()
    _, rebuilt = read_pdb(build_pdb())
    np.testing.assert_allclose(rebuilt, stored, atol=2e-3)


# ------------------------------------------------------- energy, forces
def test_calculator_equals_openmm_state(ala, openmm_context):
    atoms = ala.make_atoms("beta")
    for x in perturbed(ala, 3, 0.05, seed=1):
        atoms.set_positions(x)
        e_ref, f_ref = openmm_energy_forces(openmm_context, x)
        assert abs(atoms.get_potential_energy() - e_ref) <= 1e-10 * abs(e_ref)
        assert atoms.get_potential_energy(force_consistent=True) == atoms.get_potential_energy()
        np.testing.assert_allclose(atoms.get_forces(), f_ref, rtol=1e-10,
                                   atol=1e-10 * np.abs(f_ref).max())


def test_calculator_forces_are_minus_energy_gradient(ala):
    calc = ala.calculator()
    x = perturbed(ala, 1, 0.03, seed=2)[0]
    h = 1e-4
    fd = np.zeros((22, 3))
    for i in range(22):
        for k in range(3):
            xp, xm = x.copy(), x.copy()
            xp[i, k] += h
            xm[i, k] -= h
            fd[i, k] = -(calc.evaluate(xp)[0] - calc.evaluate(xm)[0]) / (2 * h)
    np.testing.assert_allclose(calc.evaluate(x)[1], fd, rtol=0, atol=2e-6)


def test_vectorised_evaluator_equals_openmm(ala, openmm_context):
    x = perturbed(ala, 20, 0.08, seed=3)
    e, f = ala.energy_and_forces(x)
    assert e.shape == (20,) and f.shape == (20, 22, 3)
    for k in range(20):
        e_ref, f_ref = openmm_energy_forces(openmm_context, x[k])
        np.testing.assert_allclose(e[k], e_ref, rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(f[k], f_ref, rtol=1e-6, atol=1e-7)


def test_vectorised_evaluator_shapes_chunks_and_threads(ala):
    x = perturbed(ala, 50, 0.05, seed=4)
    e, f = ala.energy_and_forces(x)
    e1, f1 = ala.energy_and_forces(x[7])           # a single (22, 3) configuration
    assert e1.shape == () and f1.shape == (22, 3)
    np.testing.assert_allclose(e1, e[7], rtol=1e-13)
    ff = pickle.loads(pickle.dumps(ala.force_field_evaluator))
    ff.chunk_size = 7                               # chunks of 7 and a remainder of 1
    e2, f2 = ff(x.reshape(5, 10, 22, 3))
    np.testing.assert_allclose(e2.ravel(), e, rtol=1e-13)
    np.testing.assert_allclose(f2.reshape(50, 22, 3), f, rtol=1e-12, atol=1e-12)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda n: ff(x[:n]), [50, 13, 50, 13]))
    for e3, f3 in results:
        np.testing.assert_allclose(e3, e[:len(e3)], rtol=1e-13)
        np.testing.assert_allclose(f3, f[:len(f3)], rtol=1e-12, atol=1e-12)


def test_unsupported_forces_fail_loudly(ala):
    system = ala.openmm_system
    system.addForce(mm.CMMotionRemover())
    with pytest.raises(UnsupportedForceError, match="CMMotionRemover"):
        VectorizedForceField.from_openmm(system)
    system = ala.openmm_system
    system.addForce(mm.CustomBondForce("r"))
    with pytest.raises(UnsupportedForceError, match="CustomBondForce"):
        VectorizedForceField.from_openmm(system)
    system = ala.openmm_system
    system.addConstraint(0, 1, 0.109)
    with pytest.raises(UnsupportedForceError, match="constraints"):
        VectorizedForceField.from_openmm(system)


# ---------------------------------------------------------------- CVs
def test_true_cv_module_matches_and_has_correct_gradient(ala):
    x = perturbed(ala, 6, 0.1, seed=5)
    module = ala.true_cv_module()
    pos = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    cv = module(pos)
    np.testing.assert_allclose(cv.detach().numpy(), ala.true_cv(x), rtol=0, atol=1e-12)
    (grad,) = torch.autograd.grad((cv[:, 0] + 2.0 * cv[:, 1]).sum(), pos)
    h = 1e-6
    fd = np.zeros_like(x)
    for i in range(22):
        for k in range(3):
            xp, xm = x.copy(), x.copy()
            xp[:, i, k] += h
            xm[:, i, k] -= h
            d = ala.true_cv(xp) - ala.true_cv(xm)
            d = (d + np.pi) % (2 * np.pi) - np.pi
            fd[:, i, k] = (d[:, 0] + 2.0 * d[:, 1]) / (2 * h)
    np.testing.assert_allclose(grad.numpy(), fd, rtol=0, atol=1e-6)
    # only the phi/psi atoms move the CVs
    moving = np.unique(ala.cv_quads)
    assert np.all(grad.numpy()[:, np.setdiff1d(np.arange(22), moving)] == 0)
    # float32 works too (TorchScript module, no float64-only code)
    np.testing.assert_allclose(module(pos.detach().float()).numpy(), ala.true_cv(x), atol=1e-4)


def test_true_cv_invariant_under_rigid_motion(ala):
    x = perturbed(ala, 8, 0.05, seed=6)
    rot = Rotation.random(8, random_state=7).as_matrix()
    moved = np.einsum("nij,naj->nai", rot, x) + np.random.default_rng(8).normal(size=(8, 1, 3))
    np.testing.assert_allclose(ala.true_cv(moved), ala.true_cv(x), rtol=0, atol=1e-10)
    e, f = ala.energy_and_forces(x)
    e2, f2 = ala.energy_and_forces(moved)
    np.testing.assert_allclose(e2, e, rtol=1e-10)
    np.testing.assert_allclose(f2, np.einsum("nij,naj->nai", rot, f), rtol=0, atol=1e-9)


def test_basin_regions():
    ala = AlanineDipeptide()
    deg = np.radians
    cv = deg(np.array([[-80.0, 60.0], [62.0, -45.0], [-150.0, 160.0],
                       [175.0, -175.0],      # beta across the periodic boundary
                       [-95.0, 125.0],       # C7eq - beta saddle
                       [-70.0, -30.0],       # alpha_R
                       [50.0, 40.0],         # alpha_L
                       [0.0, 0.0], [120.0, -60.0], [-120.0, 30.0]]))
    np.testing.assert_array_equal(ala.basin_index_cv(cv), [0, 1, 2, 2, -1, -1, -1, -1, -1, -1])
    # the regions do not overlap: on a 2-degree grid (off the ellipses'
    # integer-degree boundaries) every point is in at most one
    g = deg(np.arange(-179.5, 180.0, 2.0))
    grid = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    labels = ala.basin_index_cv(grid)
    inside = 0
    for b, (pc, sc, a, c) in ala.regions_deg.items():
        dphi = (np.degrees(grid[:, 0]) - pc + 180) % 360 - 180
        dpsi = (np.degrees(grid[:, 1]) - sc + 180) % 360 - 180
        mask = (dphi / a) ** 2 + (dpsi / c) ** 2 < 1
        assert np.all(labels[mask] == ala.basins.index(b))
        inside += mask.sum()
    assert inside == (labels >= 0).sum()


# ------------------------------------------------- plumbing and dynamics
def test_pickle_round_trip(ala):
    fresh = pickle.loads(pickle.dumps(AlanineDipeptide(temperature_K=120.0)))
    assert fresh.temperature_K == 120.0
    clone = pickle.loads(pickle.dumps(ala))
    # only plain data travels: the system XML, the numpy evaluator, arrays
    assert set(clone._cache) <= {"system_xml", "ff", "minima", "masses"}
    x = perturbed(ala, 4, 0.05, seed=9)
    np.testing.assert_array_equal(clone.energy_and_forces(x)[0], ala.energy_and_forces(x)[0])
    atoms = pickle.loads(pickle.dumps(ala.make_atoms("C7ax")))
    atoms.get_potential_energy()
    atoms2 = pickle.loads(pickle.dumps(atoms))   # with a live Context inside
    assert atoms2.calc._context is None
    assert atoms2.get_potential_energy() == pytest.approx(atoms.get_potential_energy(),
                                                          rel=1e-12)


def test_registered_and_described(ala):
    registry = mtcv_core.load_plugins(reload=True)
    system = registry.create("system", "alanine_dipeptide", temperature_K=120.0)
    assert isinstance(system, AlanineDipeptide)
    assert registry.get("system", "alanine_dipeptide").plugin == "alanine"
    assert system.supports_batch
    assert system.reference_transitions(300.0) == []
    d = json.loads(json.dumps(ala.describe()))
    assert d["force_field"] == "amber99sb.xml"
    assert d["basins"] == ["C7eq", "C7ax", "beta"]
    assert d["true_cv_units"] == "radian"
    x = ala.start_positions("C7ax", 3, rng=np.random.default_rng(0), split="test")
    assert x.shape == (3, 22, 3) and np.all(ala.basin_index(x) == 1)


def test_ase_langevin_300K_stays_finite_and_bounded(ala):
    atoms = ala.make_atoms("C7eq")
    e0 = atoms.get_potential_energy()
    rng = np.random.default_rng(10)
    atoms.set_velocities(maxwell_boltzmann(atoms.get_masses(), 300.0, rng))
    dyn = Langevin(atoms, timestep=0.5 * units.fs, temperature_K=300.0, friction=0.01 / units.fs,
                   fixcm=False, rng=rng)
    energies = []
    for _ in range(30):
        dyn.run(10)
        energies.append(atoms.get_potential_energy())
    assert np.all(np.isfinite(atoms.get_positions()))
    assert np.all(np.isfinite(energies))
    assert max(energies) - e0 < 3.0      # ~ (66/2) kT = 0.85 eV on average at 300 K
    assert atoms.get_temperature() < 1000.0


def test_fast_path_reproduces_ase_trajectory(ala):
    """One walker of the batched integrator on the vectorised evaluator
    follows ASE's Langevin on the OpenMM calculator to round-off."""
    params = LangevinParams(temperature_K=300.0, timestep_fs=0.5, friction_per_fs=0.01)
    atoms = ala.make_atoms("C7ax")
    v0 = maxwell_boltzmann(atoms.get_masses(), 300.0, np.random.default_rng(11))
    atoms.set_velocities(v0)
    x0 = atoms.get_positions()
    ref = run_ase_langevin(atoms, 100, params, np.random.default_rng(12), stride=10)
    integ = BatchLangevin(ala.energy_and_forces, atoms.get_masses(), params,
                          np.random.default_rng(12))
    fast = integ.run(x0[None], v0[None], 100, stride=10)
    np.testing.assert_allclose(fast["positions"][:, 0], ref["positions"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(fast["energy"][:, 0], ref["energy"], rtol=0, atol=1e-9)
