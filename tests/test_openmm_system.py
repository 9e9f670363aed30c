"""System ``openmm``: any molecule in vacuum from a PDB and OpenMM force-field
files, batched through the vectorised force field. The second molecule,
valine dipeptide (ACE-VAL-NME), against OpenMM itself; alanine dipeptide
declared this way against the alanine plugin; one clear error per bad input."""

from __future__ import annotations

import pickle
import tomllib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("openmm")

from mtcv_atoms import OpenMMSystem  # noqa: E402

from mtcv_core.config import ConfigError  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VALINE = ROOT / "examples" / "valine_dipeptide" / "valine_dipeptide.toml"


@pytest.fixture(scope="module")
def valine():
    options = tomllib.loads(VALINE.read_text())["system_options"]
    options["pdb"] = str(ROOT / options["pdb"])
    return OpenMMSystem(**options)


def test_valine_dipeptide_builds_and_its_batched_energies_match_openmm(valine):
    from mtcv_ase.openmm_forcefield import OpenMMCalculator

    assert valine.supports_batch and valine.n_atoms == 28 and valine.cell is None
    terms = valine.describe()["terms"]
    assert terms["bonds"] == 27 and terms["pairs"] > 0
    # masses are the force field's (amber: C 12.01, H 1.008)
    atoms = valine.make_atoms("C7eq")
    assert atoms.get_masses()[0] == pytest.approx(12.01, abs=0.01)
    assert not atoms.pbc.any()
    rng = np.random.default_rng(0)
    x = np.stack([valine.minima[b] for b in valine.basins])
    x = np.concatenate([x, x[:1] + rng.normal(scale=0.05, size=(6, 28, 3))])
    e, f = valine.energy_and_forces(x)
    calc = OpenMMCalculator(valine.system_xml)
    for k in range(len(x)):
        e_ref, f_ref = calc.evaluate(x[k])
        assert e[k] == pytest.approx(e_ref, rel=1e-10, abs=1e-10)
        np.testing.assert_allclose(f[k], f_ref, rtol=1e-9, atol=1e-9)
    # and the ASE calculator of make_atoms is the same energy
    assert atoms.get_potential_energy() == pytest.approx(float(e[0]), rel=1e-10)


def test_valine_forces_are_the_gradient_of_the_energy(valine):
    x = valine.minima["C7ax"] + np.random.default_rng(1).normal(scale=0.03, size=(28, 3))
    _, f = valine.energy_and_forces(x[None])
    h = 1e-5
    for i, c in ((0, 0), (10, 1), (14, 2), (27, 0)):
        xp, xm = x.copy(), x.copy()
        xp[i, c] += h
        xm[i, c] -= h
        (ep,), _ = valine.energy_and_forces(xp[None])
        (em,), _ = valine.energy_and_forces(xm[None])
        assert -(ep - em) / (2 * h) == pytest.approx(f[0, i, c], abs=1e-6)


def test_the_start_structures_lie_in_their_basins_and_the_system_pickles(valine):
    phi = np.degrees(valine.cv_values(np.stack([valine.minima["C7eq"],
                                                valine.minima["C7ax"]]))[:, 0])
    assert -100 < phi[0] < -60 and 40 < phi[1] < 80
    back = pickle.loads(pickle.dumps(valine))
    x = valine.minima["C7eq"][None]
    assert back.energy_and_forces(x)[0][0] == valine.energy_and_forces(x)[0][0]
    assert back.make_atoms("C7ax").get_potential_energy() == pytest.approx(
        float(valine.energy_and_forces(valine.minima["C7ax"][None])[0][0]), rel=1e-10)


def test_alanine_dipeptide_declared_as_a_config_is_the_alanine_plugin(tmp_path):
    """The alanine plugin's PDB through system ``openmm``: the same force
    field, so the same energies and forces as ``alanine_dipeptide``."""
    from importlib import resources

    from mtcv_alanine import AlanineDipeptide

    pdb = tmp_path / "ala.pdb"
    pdb.write_text(resources.files("mtcv_alanine").joinpath(
        "data/alanine_dipeptide.pdb").read_text())
    system = OpenMMSystem(pdb=str(pdb), relax_steps=0, index="0:2",  # C7eq, C7ax models
                          cvs={"phi": {"kind": "dihedral", "atoms": [4, 6, 8, 14]}},
                          basins={"C7eq": {"phi": [-2.4, -0.6]}, "C7ax": {"phi": [0.5, 1.8]}})
    ala = AlanineDipeptide()
    x = ala.minimum("C7eq")[None] + np.random.default_rng(2).normal(scale=0.05, size=(4, 22, 3))
    e, f = system.energy_and_forces(x)
    e_ref, f_ref = ala.energy_and_forces(x)
    np.testing.assert_allclose(e, e_ref, rtol=1e-12)
    np.testing.assert_allclose(f, f_ref, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(system.make_atoms().get_masses(), ala.masses)
    np.testing.assert_allclose(system.cv_values(x)[:, 0], ala.true_cv(x)[:, 0], atol=1e-10)


def test_bad_openmm_input_gets_one_clear_line(valine, tmp_path):
    options = {"cvs": {"phi": {"kind": "dihedral", "atoms": [4, 6, 8, 12]}},
               "basins": {"A": {"phi": [-2.4, -0.6]}, "B": {"phi": [0.5, 1.8]}},
               "pdb": valine.pdb}
    with pytest.raises(ConfigError, match=r"pdb: .*nowhere.pdb: no such file"):
        OpenMMSystem(**{**options, "pdb": str(tmp_path / "nowhere.pdb")})
    with pytest.raises(ConfigError, match=r"forcefield\[0\]: 'nope.xml' is neither a file"):
        OpenMMSystem(**{**options, "forcefield": ["nope.xml"]})
    with pytest.raises(ConfigError, match=r"forcefield: .*cannot parametrise"):
        OpenMMSystem(**{**options, "forcefield": ["tip3p.xml"]})
    with pytest.raises(ConfigError, match=r"forcefield: expected a list"):
        OpenMMSystem(**{**options, "forcefield": "amber99sb.xml"})
    with pytest.raises(ConfigError, match=r"platform: expected"):
        OpenMMSystem(**{**options, "platform": "CUDA"})
    bad = tmp_path / "bad.pdb"
    bad.write_text("this is not a PDB file\n")
    with pytest.raises(ConfigError, match=r"pdb: .*bad.pdb"):
        OpenMMSystem(**{**options, "pdb": str(bad)})
