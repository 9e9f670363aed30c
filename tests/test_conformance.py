"""The plugin-author conformance checks (mtcv_core.testing, mtcv_ase.testing)
on mtcv's own heads, systems and calculators, and on broken ones they must catch."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes
from ase.calculators.emt import EMT

from mtcv_ase.testing import (
    check_calculator_contract,
    check_forces_finite_difference,
    check_system,
)
from mtcv_core.interfaces import ENERGY, LossHead
from mtcv_core.plugins import load_plugins
from mtcv_core.testing import check_loss_head, check_registered_heads, example_batch

#: the heads on the latent CV (the thermodynamic heads take A(R, T) instead, see mtcv_thermo)
CV_HEADS = ["classifier", "energy", "pairwise", "reconstruction"]


@pytest.fixture(scope="module")
def registry():
    return load_plugins()


# ---------------------------------------------------------------- loss heads
@pytest.mark.parametrize("n_classes", [2, 3])
@pytest.mark.parametrize("latent_dim", [1, 2])
def test_builtin_heads_conform(registry, latent_dim, n_classes):
    results = check_registered_heads(registry, CV_HEADS, latent_dim=latent_dim,
                                     n_features=5, n_classes=n_classes)
    assert set(results) == set(CV_HEADS)
    for name, res in results.items():
        assert np.isfinite(res["loss"]), name
        assert res["grad_latent"].shape == (64, latent_dim)
        assert len(res["entries"]) == min(4, 64 * latent_dim)
    assert results["pairwise"]["n_parameters"] == 0  # no network of its own
    assert results["energy"]["n_parameters"] > 0


def test_head_options_reach_the_check(registry):
    head = registry.create("loss_head", "energy", latent_dim=2, n_features=3, n_classes=2,
                           hidden=[4], n_bins=3)
    batch = example_batch(40, n_features=3, n_classes=2, seed=3)
    res = check_loss_head(head, 2, batch)
    # the float32 original is untouched: the check works on a float64 copy
    assert next(head.parameters()).dtype == torch.float32
    assert res["n_parameters"] == 4


def test_example_batch_contents():
    b = example_batch(100, n_features=4, n_classes=3, seed=1, unlabelled_fraction=0.2)
    assert b["features"].shape == (100, 4) and b["energy"].shape == (100,)
    assert b["label"].dtype == torch.int64
    assert b["label"].min() >= -1 and b["label"].max() <= 2 and (b["label"] == -1).any()


class _Head(torch.nn.Module, LossHead):
    name = "broken"

    def __init__(self, mode: str):
        super().__init__()
        self.mode = mode
        self.linear = torch.nn.Linear(2, 1)
        self.unused = torch.nn.Linear(2, 1)

    def loss(self, latent, batch):
        y = self.linear(latent)[:, 0]
        if self.mode == "vector":
            return y
        if self.mode == "detached":
            return (self.linear(latent.detach()) ** 2).mean()
        if self.mode == "nan":
            return y.mean() * float("nan")
        if self.mode == "wrong_grad":  # a custom backward that halves the gradient
            return _HalfGrad.apply((y ** 2).mean()) + 0.0 * self.unused(latent).sum()
        loss = (y - batch["energy"]) ** 2
        if self.mode == "unused":
            return loss.mean()
        return loss.mean() + 0.0 * self.unused(latent).sum()


class _HalfGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.clone()

    @staticmethod
    def backward(ctx, g):
        return 0.5 * g


@pytest.mark.parametrize("mode,message", [
    ("vector", "scalar"),
    ("detached", "latent"),
    ("nan", "not finite"),
    ("unused", "unused.weight"),
    ("wrong_grad", "finite differences"),
])
def test_check_loss_head_catches_broken_heads(mode, message):
    batch = example_batch(16, n_features=3)
    with pytest.raises(AssertionError, match=message):
        check_loss_head(_Head(mode), 2, batch)
    check_loss_head(_Head("ok"), 2, batch)


class _PlainModule(torch.nn.Module):
    """Has loss() but does not subclass LossHead: prepare/predict undeclared."""

    def loss(self, latent, batch):
        return (latent ** 2).mean()


class _EnergyHead(_Head):
    prediction = ENERGY

    def predict(self, latent):
        return self.linear(latent)  # (n, 1): not the (n,) eV an energy head declares


def test_check_loss_head_holds_heads_to_the_interface():
    batch = example_batch(16, n_features=3)
    with pytest.raises(AssertionError, match="LossHead"):
        check_loss_head(_PlainModule(), 2, batch)
    with pytest.raises(AssertionError, match=r"must return \(n,\) eV"):
        check_loss_head(_EnergyHead("ok"), 2, batch)


# ------------------------------------------------------------------- systems
def _system_names(registry):
    names = registry.names("system")
    if importlib.util.find_spec("openmm") is None:
        names = [n for n in names if n != "alanine_dipeptide"]
    return names


@pytest.mark.parametrize("name", ["muller_brown_5d", "three_well_5d", "thermo_exact",
                                  "alanine_dipeptide"])
def test_builtin_systems_conform(registry, name):
    if name not in _system_names(registry):
        pytest.skip(f"{name} needs a dependency that is not installed (openmm)")
    system = registry.create("system", name)
    res = check_system(system, n_walkers=2)
    assert res["positions"].shape[1:] == (res["n_atoms"], 3)


def test_every_registered_system_is_covered(registry):
    covered = {"muller_brown_5d", "three_well_5d", "thermo_exact", "alanine_dipeptide"}
    builtin = {c.name for c in registry if c.kind == "system"
               and c.plugin in {"systems", "thermo", "alanine"}}
    assert builtin <= covered, f"add {sorted(builtin - covered)} to test_builtin_systems_conform"


# --------------------------------------------------------------- calculators
def test_umbrella_bias_calculator_conforms(registry):
    from mtcv_umbrella.bias import UmbrellaBias

    mb = registry.create("system", "muller_brown_5d")
    atoms = mb.make_atoms("A")
    atoms.set_positions(atoms.get_positions() + [[0.3, -0.2, 0.1], [0.2, 0.4, 0.0]],
                        apply_constraint=False)
    bias = UmbrellaBias(atoms.calc, mb.true_cv_module(), center=[30.0, 10.0], k=[0.5, 0.5])
    res = check_calculator_contract(bias, atoms)
    assert res["forces"][1, 2] == 0.0
    check_forces_finite_difference(bias, atoms, mask=mb.dof_mask)


def test_umbrella_bias_keeps_ases_contract_and_leaves_the_cv_alone():
    """Every result is a property ASE hands out (``get_property("cv")``),
    ``free_energy`` is the wrapped calculator's plus the bias, and a float32
    CV module is not converted in place."""
    from mtcv_umbrella.bias import UmbrellaBias

    atoms = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [1.2, 2.1, 0.1]])
    cv = torch.nn.Linear(9, 1).float()
    module = torch.nn.Sequential(torch.nn.Flatten(), cv)
    bias = UmbrellaBias(EMT(), module, center=[0.1], k=[2.0])
    assert cv.weight.dtype == torch.float32  # the caller's module is untouched
    check_calculator_contract(bias, atoms)
    probe = atoms.copy()
    probe.calc = bias
    xi = probe.calc.get_property("cv", probe)
    emt = atoms.copy()
    emt.calc = EMT()
    expected = float(module.double()(torch.as_tensor(atoms.positions[None]))[0, 0])
    assert float(xi[0]) == pytest.approx(expected, rel=1e-12)
    bias_e = 0.5 * 2.0 * (expected - 0.1) ** 2
    assert probe.calc.get_property("bias_energy", probe) == pytest.approx(bias_e, rel=1e-10)
    assert probe.calc.get_property("free_energy", probe) == pytest.approx(
        emt.calc.get_property("free_energy", emt) + bias_e, rel=1e-12)
    assert probe.calc.get_property("unbiased_energy", probe) == pytest.approx(
        emt.get_potential_energy(), rel=1e-12)


def test_check_calculator_contract_catches_unlisted_results():
    class Unlisted(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.results = {"energy": 0.0, "forces": np.zeros((len(self.atoms), 3)),
                            "secret": 1.0}

    with pytest.raises(AssertionError, match=r"results \['secret'\] are not in"):
        check_calculator_contract(Unlisted(), Atoms("H"))


def test_ase_emt_conforms():
    atoms = Atoms("Cu3", positions=[[0, 0, 0], [2.5, 0, 0], [1.2, 2.1, 0.1]])
    check_calculator_contract(EMT(), atoms)
    check_forces_finite_difference(EMT(), atoms, rtol=1e-4, atol=1e-5)


class _Stateful(Calculator):
    """Broken on purpose: its energy depends on how often it was called."""

    implemented_properties = ["energy", "forces"]

    def __init__(self, bad: str = "state"):
        super().__init__()
        self.bad = bad
        self.calls = 0

    def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
        super().calculate(atoms, properties, system_changes)
        self.calls += 1
        n = len(self.atoms)
        energy = float((self.atoms.positions ** 2).sum()) + 1e-3 * self.calls
        if self.bad == "array_energy":
            energy = np.array([energy])
        forces = -2 * self.atoms.positions
        if self.bad == "shape":
            forces = forces.ravel()
        self.results = {"energy": energy, "forces": forces[: 3 * n]}


@pytest.mark.parametrize("bad,message", [
    ("state", "another one was evaluated"),
    ("array_energy", "scalar float"),
    ("shape", "shape"),
])
def test_check_calculator_contract_catches(bad, message):
    atoms = Atoms("H2", positions=[[0, 0, 0], [1, 0, 0]])
    with pytest.raises(AssertionError, match=message):
        check_calculator_contract(_Stateful(bad), atoms)


def test_check_calculator_contract_needs_forces():
    class EnergyOnly(Calculator):
        implemented_properties = ["energy"]

    with pytest.raises(AssertionError, match="forces"):
        check_calculator_contract(EnergyOnly(), Atoms("H"))


class _Distance(torch.nn.Module):
    """|r_1 - r_0|, angstrom: a CV of the positions alone."""

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return (positions[:, 1] - positions[:, 0]).norm(dim=-1, keepdim=True)


def test_umbrella_bias_stress_is_emts_plus_the_bias_virial():
    """Periodic Al (EMT gives a stress): the biased stress equals the
    numerical strain derivative of the biased energy (atoms scaled with the
    cell), and without a bias it is EMT's own."""
    from ase.build import bulk
    from ase.calculators.calculator import PropertyNotImplementedError

    from mtcv_umbrella.bias import UmbrellaBias

    atoms = bulk("Al", "fcc", a=4.05, cubic=True)
    atoms.rattle(0.05, seed=1)
    atoms.calc = UmbrellaBias(EMT(), _Distance(), center=[2.6], k=[8.0])
    assert atoms.calc.get_property("bias_energy", atoms) > 1e-3  # the restraint is felt
    analytic = atoms.get_stress()
    numeric = atoms.calc.calculate_numerical_stress(atoms, d=1e-5)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-8)
    plain = atoms.copy()
    plain.calc = EMT()
    assert np.abs(analytic - plain.get_stress()).max() > 1e-4  # the bias adds to it
    free = atoms.copy()
    free.calc = UmbrellaBias(EMT(), _Distance(), center=[2.6], k=[0.0])
    np.testing.assert_allclose(free.get_stress(), plain.get_stress(), rtol=1e-12, atol=1e-14)
    molecule = Atoms("Cu2", positions=[[0, 0, 0], [2.5, 0, 0]])
    molecule.calc = UmbrellaBias(EMT(), _Distance(), center=[2.6], k=[8.0])
    with pytest.raises(PropertyNotImplementedError, match="no 3D cell"):
        molecule.get_stress()
