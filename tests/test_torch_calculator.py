"""The torch-backed ASE calculator base class and the reusable force check."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase import Atoms
from ase.calculators.calculator import Calculator, all_changes

from mtcv_ase.testing import check_forces_finite_difference, numeric_forces
from mtcv_ase.torch_calculator import TorchCalculator


class MorseCluster(TorchCalculator):
    """Toy energy: Morse pairs plus an external anharmonic well, eV."""

    def __init__(self, d: float = 0.5, a: float = 1.3, r0: float = 1.1, **kwargs):
        super().__init__(**kwargs)
        self.d, self.a, self.r0 = d, a, r0

    def energy_fn(self, positions: torch.Tensor):
        i, j = torch.triu_indices(len(positions), len(positions), offset=1)
        r = (positions[i] - positions[j]).norm(dim=1)
        morse = self.d * (1.0 - torch.exp(-self.a * (r - self.r0))) ** 2
        well = 0.01 * (positions ** 4).sum() + 0.05 * torch.sin(positions[:, 0]).sum()
        energy = morse.sum() + well
        return energy, {"pair_energy": morse.sum(), "distances": r}


def reference_energy(pos: np.ndarray, d=0.5, a=1.3, r0=1.1) -> float:
    e = 0.01 * (pos ** 4).sum() + 0.05 * np.sin(pos[:, 0]).sum()
    for i in range(len(pos)):
        for j in range(i + 1, len(pos)):
            r = np.linalg.norm(pos[i] - pos[j])
            e += d * (1 - np.exp(-a * (r - r0))) ** 2
    return float(e)


@pytest.fixture
def atoms():
    rng = np.random.default_rng(0)
    return Atoms("H4", positions=rng.normal(0.0, 0.8, (4, 3)))


def test_energy_forces_and_extras(atoms):
    atoms.calc = MorseCluster()
    energy = atoms.get_potential_energy()
    assert isinstance(energy, float)
    assert energy == pytest.approx(reference_energy(atoms.positions), rel=1e-12)
    forces = atoms.get_forces()
    assert forces.shape == (4, 3) and forces.dtype == np.float64
    assert isinstance(atoms.calc.results["pair_energy"], float)
    assert atoms.calc.results["distances"].shape == (6,)
    assert set(MorseCluster.implemented_properties) == {"energy", "free_energy", "forces"}


def test_forces_match_finite_differences(atoms):
    analytic, numeric = check_forces_finite_difference(MorseCluster(), atoms, delta=1e-5,
                                                       rtol=1e-6, atol=1e-8)
    assert np.abs(analytic).max() > 1e-3  # a non-trivial check


def test_force_check_catches_wrong_forces(atoms):
    class Wrong(MorseCluster):
        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            self.results["forces"] = self.results["forces"] * 1.01

    with pytest.raises(AssertionError, match="finite differences"):
        check_forces_finite_difference(Wrong(), atoms)


def test_mask_skips_inactive_coordinates(atoms):
    class Plain(Calculator):
        implemented_properties = ["energy", "forces"]

        def calculate(self, atoms=None, properties=("energy",), system_changes=all_changes):
            super().calculate(atoms, properties, system_changes)
            p = self.atoms.positions
            self.results = {"energy": float((p[:, 0] ** 2).sum()),
                            "forces": np.column_stack([-2 * p[:, 0], np.zeros((len(p), 2))])}

    mask = np.zeros((4, 3), bool)
    mask[:, 0] = True
    forces = numeric_forces(Plain(), atoms, mask=mask)
    assert (forces[:, 1:] == 0).all()
    check_forces_finite_difference(Plain(), atoms, mask=mask, rtol=1e-6)


def test_constant_energy_has_zero_forces(atoms):
    class Constant(TorchCalculator):
        def energy_fn(self, positions):
            return torch.tensor(1.5, dtype=positions.dtype)

    atoms.calc = Constant()
    assert atoms.get_potential_energy() == 1.5
    assert (atoms.get_forces() == 0).all()


def test_energy_fn_must_be_scalar_and_implemented(atoms):
    class Vector(TorchCalculator):
        def energy_fn(self, positions):
            return positions.sum(dim=1)

    atoms.calc = Vector()
    with pytest.raises(ValueError, match="scalar"):
        atoms.get_potential_energy()
    atoms.calc = TorchCalculator()
    with pytest.raises(NotImplementedError, match="energy_fn"):
        atoms.get_potential_energy()


def test_results_follow_position_changes(atoms):
    calc = MorseCluster()
    atoms.calc = calc
    e0 = atoms.get_potential_energy()
    atoms.positions[0, 0] += 0.1
    e1 = atoms.get_potential_energy()
    assert e1 != e0
    assert e1 == pytest.approx(reference_energy(atoms.positions), rel=1e-12)
    assert calc.dtype == torch.float64 and calc.device.type == "cpu"
