"""The config-declared ASE system (``system = "ase"``, mtcv_atoms): geometric
CVs against finite differences across a periodic boundary, continuity
across the cell, basins, start structures, constraints, and one clear error
per bad input."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.build import add_adsorbate, fcc100
from ase.constraints import FixAtoms
from ase.io import write
from mtcv_atoms import AseSystem, GeometricCVs, parse_cvs

from mtcv_core.config import ConfigError

CELL = np.diag([6.0, 7.0, 8.0])
PBC = np.array([True, True, False])
CVS = {
    "x": {"kind": "position", "atom": 0, "axis": 0},
    "d": {"kind": "distance", "atoms": [0, 1]},
    "t": {"kind": "angle", "atoms": [0, 1, 2]},
    "p": {"kind": "dihedral", "atoms": [0, 1, 2, 3]},
    "n": {"kind": "coordination", "group_a": [0], "group_b": [1, 2, 3], "r0": 1.4},
}


def _across_boundary() -> np.ndarray:
    """Four atoms whose bonds cross the x and y cell faces (minimum image)."""
    return np.array([[5.6, 6.7, 3.0], [0.5, 0.3, 3.4], [1.1, 1.2, 4.1], [0.2, 1.9, 5.0]])


def _module(specs=CVS) -> GeometricCVs:
    return GeometricCVs(parse_cvs(specs, n_atoms=4, cell=CELL, pbc=PBC), CELL, PBC)


def test_cv_gradients_match_finite_differences_across_the_cell_boundary():
    m = _module()
    x = torch.as_tensor(_across_boundary()[None], dtype=torch.float64).requires_grad_(True)
    values = m(x)[0]
    h = 1e-6
    for k in range(values.shape[0]):
        (grad,) = torch.autograd.grad(m(x)[0, k], x)
        fd = np.zeros((4, 3))
        for i in range(4):
            for c in range(3):
                xp, xm = x.detach().clone(), x.detach().clone()
                xp[0, i, c] += h
                xm[0, i, c] -= h
                fd[i, c] = float(m(xp)[0, k] - m(xm)[0, k]) / (2 * h)
        np.testing.assert_allclose(grad[0].numpy(), fd, atol=1e-6, err_msg=list(CVS)[k])


def test_cvs_use_the_minimum_image_and_do_not_jump_when_an_atom_crosses_the_cell():
    m = _module()
    x = _across_boundary()
    base = m(torch.as_tensor(x[None]))[0].numpy()
    # the bond 0-1 by minimum image: (0.5 + 6 - 5.6, 0.3 + 7 - 6.7, 0.4)
    assert base[1] == pytest.approx(np.linalg.norm([0.9, 0.6, 0.4]))
    for shift in (CELL[0], -CELL[1], CELL[0] + CELL[1]):
        moved = x.copy()
        moved[0] += shift  # atom 0 into the next image
        got = m(torch.as_tensor(moved[None]))[0].numpy()
        np.testing.assert_allclose(got[1:], base[1:], atol=1e-12)  # all but the raw position
    # a path of atom 0 straight across the face: the distance changes smoothly
    path = np.linspace(5.8, 6.2, 41)
    d = [float(m(torch.as_tensor(np.vstack([[xx, 6.7, 3.0], x[1:]])[None]))[0, 1]) for xx in path]
    assert np.max(np.abs(np.diff(d))) < 0.02


def test_cvs_script_and_the_coordination_limit_at_r0():
    m = torch.jit.script(_module())
    x = _across_boundary()
    np.testing.assert_allclose(m(torch.as_tensor(x[None]))[0].numpy(),
                               _module()(torch.as_tensor(x[None]))[0].numpy())
    one = {"n": {"kind": "coordination", "group_a": [0], "group_b": [1], "r0": 1.4}}
    c = GeometricCVs(parse_cvs(one, n_atoms=2, cell=CELL, pbc=PBC), CELL, PBC)
    at = torch.tensor([[[1.0, 1.0, 1.0], [2.4, 1.0, 1.0]]], dtype=torch.float64)
    assert float(c(at)) == pytest.approx(0.5)  # n / m at r = r0
    for dx in (1e-4, 1e-7):  # the rational function, and its limit next to r0
        near = at.clone()
        near[0, 1, 0] += dx
        # 1 / (1 + x^6): slope -6 / 4 at x = 1
        assert float(c(near)) == pytest.approx(0.5 - 1.5 * dx / 1.4, abs=1e-8)


def _slab(tmp_path):
    slab = fcc100("Al", size=(2, 2, 3))
    add_adsorbate(slab, "Au", 1.7, "hollow")
    slab.center(axis=2, vacuum=4.0)
    slab.set_constraint(FixAtoms(mask=[a.tag > 1 for a in slab]))
    hop = slab.copy()
    hop.positions[-1, 0] += slab.cell[0, 0] / 2
    path = tmp_path / "slab.traj"
    write(path, [slab, hop])
    x0, h = slab.positions[-1, 0], slab.cell[0, 0] / 2
    options = dict(structure=str(path), calculator="ase.calculators.emt:EMT",
                   cvs={"x_ad": {"kind": "position", "atom": 12, "axis": 0},
                        "d": {"kind": "distance", "atoms": [12, 8]}},
                   basins={"A": {"x_ad": [x0 - 0.6, x0 + 0.6]},
                           "B": {"x_ad": [x0 + h - 0.6, x0 + h + 0.6]}},
                   true_cvs=["x_ad"])
    return slab, options


def test_an_adatom_on_a_slab_from_a_file_and_emt(tmp_path):
    slab, options = _slab(tmp_path)
    system = AseSystem(**options)
    assert system.basins == ("A", "B")
    a, b = system.make_atoms("A"), system.make_atoms("B")
    # the two hollow sites are equivalent: same energy after relaxation
    assert a.get_potential_energy() == pytest.approx(b.get_potential_energy(), abs=1e-6)
    np.testing.assert_array_equal(system.basin_index(np.stack([a.positions, b.positions])),
                                  [0, 1])
    assert system.basin_index_cv(np.array([[a.positions[12, 0]], [99.0]])).tolist() == [0, -1]
    mask = system.dof_mask
    assert mask.shape == (13, 3) and not mask[:8].any() and mask[8:].all()  # 2 layers fixed
    np.testing.assert_allclose(a.get_masses(), slab.get_masses())
    again = pickle.loads(pickle.dumps(system))
    np.testing.assert_allclose(again.true_cv(a.positions[None]), system.true_cv(a.positions[None]))


def test_fixed_atoms_do_not_move_in_the_ase_engine(tmp_path):
    from mtcv_ase.md import LangevinParams, make_walkers

    _, options = _slab(tmp_path)
    system = AseSystem(**options)
    params = LangevinParams(temperature_K=600.0, timestep_fs=2.0, friction_per_fs=0.01)
    walkers = make_walkers(system, params, np.random.default_rng(0), fast=True, basin="A")
    x = system.make_atoms("A").positions[None]
    rec = walkers.run(x, np.zeros_like(x), 40, stride=10)
    moved = np.abs(rec["positions"][:, 0] - x[0]).max(axis=(0, 2))
    assert np.all(moved[:8] == 0.0) and np.all(moved[8:] > 0.0)


class _LoopedEMT(AseSystem):
    """The same slab declaring a batched evaluation (EMT looped over the
    configurations): the batched engines run it."""

    def energy_and_forces(self, positions):
        atoms = self.make_atoms()
        e, f = [], []
        for x in np.asarray(positions, float).reshape(-1, self.n_atoms, 3):
            atoms.set_positions(x, apply_constraint=False)
            e.append(atoms.get_potential_energy())
            f.append(atoms.get_forces(apply_constraint=False))
        return np.array(e), np.array(f)


def test_fixed_atoms_do_not_move_in_any_engine(tmp_path):
    """FixAtoms held in every engine the stages use: ASE's (basin MD's
    walkers, TPS's propagator, an umbrella window's biased Langevin) and the
    batched one (walkers and propagator) of a system that batches."""
    from mtcv_ase.md import LangevinParams, ase_langevin, make_propagator, make_walkers
    from mtcv_umbrella.bias import UmbrellaBias

    _, options = _slab(tmp_path)
    params = LangevinParams(temperature_K=600.0, timestep_fs=2.0, friction_per_fs=0.01)

    def check(x0, x):
        moved = np.abs(np.asarray(x) - x0).reshape(-1, 13, 3).max(axis=(0, 2))
        assert np.all(moved[:8] == 0.0) and np.all(moved[8:] > 0.0), moved

    for cls in (AseSystem, _LoopedEMT):
        system = cls(**options)
        assert system.supports_batch == (cls is _LoopedEMT)
        x0 = system.make_atoms("A").positions
        v0 = np.zeros((2, 13, 3))
        for fast in (False, True):
            walkers = make_walkers(system, params, np.random.default_rng(0), fast=fast)
            check(x0, walkers.run(np.stack([x0, x0]), v0, 20, stride=10)["positions"])
            prop = make_propagator(system, params, np.random.default_rng(1), 2, fast)
            prop.reset(np.arange(2), np.stack([x0, x0]), v0)
            for _ in range(10):
                x, _, _ = prop.step(np.arange(2))
            check(x0, x)
    atoms = AseSystem(**options).make_atoms("A")
    cv = GeometricCVs(parse_cvs({"x": {"kind": "position", "atom": 12, "axis": 0}},
                                n_atoms=13, cell=atoms.cell.array, pbc=atoms.pbc),
                      atoms.cell.array, atoms.pbc)
    atoms.calc = UmbrellaBias(atoms.calc, cv, [float(x0[12, 0]) + 0.3], [5.0])
    ase_langevin(atoms, params, np.random.default_rng(2)).run(20)
    check(x0, atoms.positions)


@pytest.mark.parametrize("change, message", [
    (dict(calculator="ase.calculators.nope:EMT"), "calculator: cannot import"),
    (dict(calculator="ase.calculators.emt:Nope"), "has no 'Nope'"),
    (dict(calculator="EMT"), "expected \"module:attribute\""),
    (dict(cvs={"d": {"kind": "distance", "atoms": [0, 40]}}), "cvs.d.atoms[1]: atom index 40 "
                                                              "out of range"),
    (dict(cvs={"d": {"kind": "torsion", "atoms": [0, 1]}}), "cvs.d.kind: unknown CV kind"),
    (dict(cvs={"d": {"kind": "distance", "atoms": [0, 1], "r0": 2}}), "cvs.d.r0: unknown key"),
    (dict(cvs={"n": {"kind": "coordination", "group_a": [12], "group_b": [8], "r0": 2.0}}),
     "cvs.n.r0: the cell is periodic along axis 0"),
    (dict(basins={"A": {"x_ad": [0.0, 2.0]}, "B": {"x_ad": [1.5, 3.0]}}),
     "basins.B: overlaps basins.A"),
    (dict(index=0), "basins.B: no start structure relaxes into it"),
    (dict(basins={"A": {"x_ad": [0.8, 2.0]}, "B": {"y": [6.0, 7.0]}}), "basins.B.y: no such CV"),
    (dict(true_cvs=["z"]), "true_cvs[0]: no CV 'z'"),
    (dict(structure="missing.traj"), "structure: missing.traj: no such file"),
])
def test_bad_input_is_one_clear_error(tmp_path, monkeypatch, change, message):
    _, options = _slab(tmp_path)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as err:
        AseSystem(**{**options, **change})
    assert message in str(err.value)


def test_a_file_ase_cannot_read_and_a_start_in_no_basin(tmp_path, monkeypatch):
    _, options = _slab(tmp_path)
    bad = tmp_path / "bad.traj"
    bad.write_text("not a trajectory")
    with pytest.raises(ConfigError, match="bad.traj: ase.io.read cannot read it"):
        AseSystem(**{**options, "structure": str(bad)})
    lone = tmp_path / "lone.xyz"
    write(lone, Atoms("Au2", positions=[[0, 0, 0], [2.6, 0, 0]]))
    with pytest.raises(ConfigError, match="relaxes to .* in no basin"):
        AseSystem(structure=str(lone), calculator="ase.calculators.emt:EMT",
                  cvs={"d": {"kind": "distance", "atoms": [0, 1]}},
                  basins={"A": {"d": [3.5, 4.0]}, "B": {"d": [5.0, 6.0]}})


ADATOM_CONFIG = """
name = "adatom"
system = "ase"
temperature_K = 600.0
seed = 7

[system_options]
structure = "slab.traj"
calculator = "ase.calculators.emt:EMT"
true_cvs = ["x_ad"]
[system_options.cvs]
x_ad = {{ kind = "position", atom = 12, axis = 0 }}
d = {{ kind = "distance", atoms = [12, 8] }}
[system_options.basins]
A = {{ x_ad = [{a0}, {a1}] }}
B = {{ x_ad = [{b0}, {b1}] }}

[execution]
workers = 2

[sample]
timestep_fs = 2.0
friction_per_fs = 0.01
test_fraction = 0.2

[sample.sources.basin_md]
trajectories_per_basin = 4
equilibration_steps = 100
n_steps = 300
stride = 10
walkers_per_task = 4

[sample.sources.tps]
transitions = [["A", "B"]]
chains = 2
shots_per_chain = 3
burn_in_shots = 1
stride = 10
seed_temperature_K = 900.0   # EMT aluminium melts near 933 K
seed_walkers = 4
walkers_per_task = 2

[train]
latent_dim = 1
hidden = [16]
epochs = 200
warmup_epochs = 50
batch_size = 256

[umbrella]
transitions = [["A", "B"]]
reference = true
[umbrella.sampler_options]
n_windows = 6
walkers_per_window = 2
n_steps = 300
equilibration_steps = 50
stride = 5
windows_per_task = 3
max_refinements = 0
reseed_passes = 0

[estimate]
options = {{ n_bins = 20, n_bootstraps = 5 }}
"""


@pytest.mark.slow
def test_mtcv_run_on_a_system_nobody_wrote(tmp_path, monkeypatch):
    """An Au adatom on Al(100) with ASE's EMT, declared only in TOML, through
    every stage (ASE's Langevin on the calculator: no batched path), with
    the reference umbrella along the adatom's coordinate."""
    import json

    from mtcv_core.pipeline import run_pipeline

    slab, _ = _slab(tmp_path)
    x0, h = slab.positions[-1, 0], slab.cell[0, 0] / 2
    cfg = tmp_path / "adatom.toml"
    cfg.write_text(ADATOM_CONFIG.format(a0=x0 - 0.6, a1=x0 + 0.6, b0=x0 + h - 0.6,
                                        b1=x0 + h + 0.6))
    monkeypatch.chdir(tmp_path)
    summary = run_pipeline(cfg, out=tmp_path / "run", progress=False)
    assert summary["stages_done"][-1] == "report"
    row = summary["transitions"][0]
    assert (row["from"], row["to"]) == ("A", "B")
    assert summary["umbrella_windows"] > 0 and summary["umbrella_reference_windows"] > 0
    on_disk = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert on_disk["system"] == "ase"
    import xarray as xr

    with xr.open_dataset(tmp_path / "run" / "data.nc") as data:
        x = data["coordinates"].values
    # the fixed bottom layers never moved in basin MD or TPS. (This is a
    # smoke test of the contract, not of the physics: a 2x2 top layer at
    # 600-900 K roughens -- its atoms wander by several angstrom -- and the
    # CV of so little data separates nothing; the adatom showcase needs a
    # larger slab and a lower temperature.)
    assert np.ptp(x[:, :8], axis=0).max() < 1e-9
    assert np.ptp(x[:, 8:], axis=0).max() > 0.1


def test_the_distances_featurizer_takes_the_minimum_image_of_a_periodic_system(tmp_path):
    """A periodic system passes its cell to the distances featurizer
    (``uses_cell``): its features do not jump when an atom crosses the cell
    boundary, scripted too; without a cell they would."""
    from mtcv_features.molecular import DistanceFeaturizer

    _, options = _slab(tmp_path)
    system = AseSystem(**options)
    assert system.cell is not None and system.pbc.tolist() == [True, True, False]
    assert DistanceFeaturizer.uses_cell
    feat = DistanceFeaturizer(atoms=[8, 12], cell=system.cell.tolist(),
                              pbc=system.pbc.tolist())
    plain = DistanceFeaturizer(atoms=[8, 12])
    x = system.make_atoms("A").positions[None].copy()
    moved = x.copy()
    moved[0, 12] += system.cell[0]  # the adatom into the next image
    for f in (feat, torch.jit.script(feat)):
        a, b = (f(torch.as_tensor(v)).numpy() for v in (x, moved))
        np.testing.assert_allclose(a, b, atol=1e-12)
    assert abs(float(plain(torch.as_tensor(moved))) - float(plain(torch.as_tensor(x)))) > 1.0


def test_the_cartesian_featurizer_takes_images_nearest_a_reference(tmp_path):
    """In a periodic cell the cartesian features take each atom at its image
    nearest the reference structure: no jump when the adatom crosses the
    cell boundary, the same features for a periodic image, scripted too;
    the train stage passes the system's cell and first start structure."""
    from mtcv_core.config import from_mapping
    from mtcv_core.pipeline import RunConfig, RunContext
    from mtcv_core.plugins import load_plugins
    from mtcv_core.stages.train import train_config
    from mtcv_features import CartesianFeaturizer

    _, options = _slab(tmp_path)
    system = AseSystem(**options)
    ref = system.make_atoms("A").positions
    feat = CartesianFeaturizer(dof_mask=system.dof_mask, cell=system.cell.tolist(),
                               pbc=system.pbc.tolist(), reference=ref.tolist())
    assert feat.n_features(system.n_atoms) == 3 * 5  # the top layer and the adatom
    x = ref[None].copy()
    moved = x.copy()
    moved[0, 12] += system.cell[0] - system.cell[1]  # the adatom into another image
    for f in (feat, torch.jit.script(feat)):
        a, b = (f(torch.as_tensor(v)).numpy() for v in (x, moved))
        np.testing.assert_allclose(a, b, atol=1e-12)
    # the adatom walked across the cell face, its positions wrapped into the
    # cell (as a wrapped trajectory stores them): the features change smoothly
    face = system.cell[0, 0]
    plain = CartesianFeaturizer(dof_mask=system.dof_mask)
    path, raw = [], []
    for xx in np.linspace(face - 0.3, face + 0.3, 61):
        p = x.copy()
        p[0, 12, 0] = xx % face
        path.append(feat(torch.as_tensor(p)).numpy()[0])
        raw.append(plain(torch.as_tensor(p)).numpy()[0])
    assert np.max(np.abs(np.diff(np.array(path), axis=0))) < 0.011
    assert np.max(np.abs(np.diff(np.array(raw), axis=0))) > 0.9 * face  # without: a jump
    with pytest.raises(ValueError, match="missing reference"):
        CartesianFeaturizer(cell=system.cell.tolist(), pbc=system.pbc.tolist())
    with pytest.raises(ValueError, match="reference has 13 atoms, the system has 4"):
        feat.n_features(4)
    cfg = from_mapping(RunConfig, {"system": "ase", "system_options": options,
                                   "train": {"featurizer": "cartesian"}})
    ctx = RunContext(config=cfg, out=tmp_path / "run", registry=load_plugins(), system=system,
                     client_factory=None, progress=False, summary={})
    train = train_config(ctx)
    got = train.featurizer_options
    np.testing.assert_allclose(got["reference"], ref)
    assert got["pbc"] == [True, True, False] and np.asarray(got["dof_mask"]).sum() == 15


def test_the_frames_figure_with_one_true_cv(tmp_path):
    """A system with a single true CV gets histograms per basin in the
    sample stage's figure (it used to index a second CV)."""
    from mtcv_core.plots import plot_frames
    from mtcv_core.schema import make_frames

    rng = np.random.default_rng(0)
    n = 40
    frames = make_frames(rng.normal(size=(n, 2, 3)), rng.normal(size=n),
                         np.zeros((n, 2, 3)), numbers=[1, 1], masses=[1.0, 1.0],
                         basins=["A", "B"], label=rng.integers(-1, 2, n), source="basin_md")
    fig = plot_frames(frames, rng.normal(size=(n, 1)), tmp_path / "data.png", names=["x"])
    assert (tmp_path / "data.png").stat().st_size > 0
    assert fig.axes[0].get_ylabel() == "frames"


def test_a_calculator_that_batches_gets_the_batched_engine(tmp_path):
    """A calculator class with ``batch_energy_and_forces`` (here the
    vectorised Lennard-Jones of mtcv_ase.batched) makes system ``ase``
    batched: its energies equal ASE's own LennardJones, and the MD engines
    advance the walkers together; EMT stays on ASE's engine."""
    from ase.calculators.lj import LennardJones
    from ase.cluster import Icosahedron

    from mtcv_ase.batched import BatchedLennardJones, can_batch
    from mtcv_ase.md import AseWalkers, BatchLangevin, LangevinParams, make_walkers

    cluster = Icosahedron("Ar", noshells=2)  # 13 atoms
    cluster.center()
    moved = cluster.copy()
    moved.positions[:, 0] += 10.0  # the same cluster elsewhere: basin B of a toy CV
    write(tmp_path / "lj.xyz", [cluster, moved])
    rng = np.random.default_rng(0)
    x = cluster.positions[None] + rng.normal(scale=0.05, size=(3, 13, 3))
    lj = BatchedLennardJones(sigma=3.4, epsilon=0.0104)
    e, f = lj.batch_energy_and_forces(x)
    ref = LennardJones(sigma=3.4, epsilon=0.0104, rc=1000.0)
    for k in range(3):
        a = cluster.copy()
        a.positions = x[k]
        a.calc = ref
        assert e[k] == pytest.approx(a.get_potential_energy(), rel=1e-9)
        np.testing.assert_allclose(f[k], a.get_forces(), rtol=1e-8, atol=1e-10)
    assert can_batch(BatchedLennardJones) and not can_batch(LennardJones)
    system = AseSystem(structure=str(tmp_path / "lj.xyz"), relax_steps=0,
                       calculator="mtcv_ase.batched:BatchedLennardJones",
                       calculator_options={"sigma": 3.4, "epsilon": 0.0104},
                       cvs={"x0": {"kind": "position", "atom": 0, "axis": 0}},
                       basins={"A": {"x0": [-1.0, 1.0]}, "B": {"x0": [9.0, 11.0]}})
    assert system.supports_batch
    np.testing.assert_allclose(system.energy_and_forces(x)[0], e)
    params = LangevinParams(temperature_K=30.0, timestep_fs=5.0, friction_per_fs=0.01)
    walkers = make_walkers(system, params, rng, fast=True, basin="A")
    assert isinstance(walkers, BatchLangevin)
    start = np.repeat(system.make_atoms("A").positions[None], 4, axis=0)
    rec = walkers.run(start, np.zeros_like(start), 50, stride=10)
    assert np.isfinite(rec["energy"]).all() and rec["positions"].shape == (5, 4, 13, 3)
    np.testing.assert_allclose(rec["energy"][-1], system.energy_and_forces(rec["x"])[0])
    _, options = _slab(tmp_path)
    emt = AseSystem(**options)
    assert not emt.supports_batch
    assert isinstance(make_walkers(emt, params, rng, fast=True), AseWalkers)
    with pytest.raises(NotImplementedError, match="one configuration at a time"):
        emt.energy_and_forces(x)
