"""Tests of the example plugin, built on mtcv's reusable conformance checks.

Run from this folder with ``python -m pytest -q`` (the plugin need not be
installed: the registry test loads the module explicitly).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from ase.units import kB
from mtcv_ase.testing import (
    check_calculator_contract,
    check_forces_finite_difference,
    check_system,
)
from mtcv_core.plugins import build_registry, get_plugin_manager
from mtcv_core.testing import check_loss_head, example_batch

import mtcv_example
from mtcv_example import DoubleWell2D, EnergyHuberHead, huber


def test_system_conformance():
    """The System contract: calculator, basins, splits, batch path, true CVs, pickling."""
    check_system(DoubleWell2D())


@pytest.mark.parametrize("tilt", [0.0, 0.05])
def test_calculator_contract_and_forces(tilt):
    system = DoubleWell2D(tilt_eV=tilt)
    atoms = system.make_atoms("R")
    atoms.set_positions([[0.3, -0.4, 0.0]], apply_constraint=False)
    check_calculator_contract(atoms.calc, atoms)
    check_forces_finite_difference(atoms.calc, atoms, mask=system.dof_mask)


def test_minima_saddle_and_reference():
    system = DoubleWell2D()
    # dV/dx = 0 at the critical points, and the minima are in their basins
    for x in (system.x_left, system.x_saddle, system.x_right):
        assert abs(system.potential(x, 0.0)[1]) < 1e-10
    assert system.x_left < system.x_saddle < system.x_right
    # at low T the basin free-energy difference is harmonic:
    # dF = E_R - E_L + kT/2 ln(V''(x_R) / V''(x_L))  (the y stiffness cancels)
    temp = 50.0
    kt = kB * temp

    def curvature(x):
        return 4 * system.h * (3 * x**2 - system.a**2) / system.a**4

    harmonic = (system.minimum("R")[1] - system.minimum("L")[1]
                + 0.5 * kt * np.log(curvature(system.x_right) / curvature(system.x_left)))
    rows = {(r["from"], r["to"]): r for r in system.reference_transitions(temp)}
    assert rows["L", "R"]["delta_F_eV"] == pytest.approx(harmonic, abs=1e-4)
    assert rows["L", "R"]["barrier_eV"] == pytest.approx(
        system.saddle_energy_eV - system.minimum("L")[1])


def test_huber_function():
    e = torch.tensor([-3.0, -1.0, -0.5, 0.0, 0.5, 1.0, 3.0], dtype=torch.float64)
    expected = torch.tensor([2.5, 0.5, 0.125, 0.0, 0.125, 0.5, 2.5], dtype=torch.float64)
    torch.testing.assert_close(huber(e, 1.0), expected)


@pytest.mark.parametrize("latent_dim", [1, 3])
def test_head_conformance(latent_dim):
    head = EnergyHuberHead(latent_dim=latent_dim, n_features=2, n_classes=2, hidden=[8])
    check_loss_head(head, latent_dim, example_batch(48, n_features=2))


def test_head_loss_value():
    """Loss equals the documented formula on hand-computed targets."""
    head = EnergyHuberHead(latent_dim=1, delta=0.5).double()
    batch = example_batch(32, n_features=2)
    head.prepare(batch, fit=True)
    latent = torch.randn(32, 1, dtype=torch.float64)
    r = (batch["energy"] - batch["energy"].mean()) / batch["energy"].std()
    err = head.standardised(latent) - r
    expected = torch.where(err.abs() <= 0.5, 0.5 * err**2, 0.5 * (err.abs() - 0.25)).mean()
    torch.testing.assert_close(head.loss(latent, batch), expected)
    torch.testing.assert_close(head.predict(latent),
                               batch["energy"].mean() + batch["energy"].std()
                               * head.standardised(latent))


def test_head_rejects_bad_options():
    from mtcv_core.config import ConfigError

    with pytest.raises(ConfigError, match="energy_huber"):
        EnergyHuberHead(latent_dim=1, delta=-1.0)
    with pytest.raises(ConfigError, match="energy_huber"):
        EnergyHuberHead(latent_dim=1, typo=1)


def test_registers_through_the_hooks():
    pm, versions, broken = get_plugin_manager(extra_plugins=[("example", mtcv_example)])
    registry = build_registry(pm, versions, broken)
    assert not [b for b in registry.broken if b.plugin == "example"]
    system = registry.get("system", "double_well_2d")
    head = registry.get("loss_head", "energy_huber")
    assert system.plugin == head.plugin == "example"
    assert isinstance(registry.create("system", "double_well_2d", tilt_eV=0.01), DoubleWell2D)
