"""The fast batched Langevin path against ASE's own Langevin."""

from __future__ import annotations

import numpy as np
import pytest

from mtcv_ase.md import (
    BatchLangevin,
    BlowUpError,
    LangevinParams,
    maxwell_boltzmann,
    run_ase_langevin,
)
from mtcv_systems import MullerBrown5D, ThreeWell5D

PARAMS = LangevinParams(temperature_K=300.0, timestep_fs=1.0, friction_per_fs=0.01)


@pytest.mark.parametrize("system_cls", [MullerBrown5D, ThreeWell5D])
def test_one_walker_reproduces_ase_trajectory(system_cls):
    """Same generator, same draws: the fast path is ASE's trajectory to round-off."""
    system = system_cls()
    atoms = system.make_atoms("A")
    v0 = maxwell_boltzmann(atoms.get_masses(), 300.0, np.random.default_rng(1),
                           dof_mask=system.dof_mask)
    atoms.set_velocities(v0)
    x0 = atoms.get_positions()
    ref = run_ase_langevin(atoms, 300, PARAMS, np.random.default_rng(7), stride=3)
    integ = BatchLangevin(system.energy_and_forces, atoms.get_masses(), PARAMS,
                          np.random.default_rng(7), dof_mask=system.dof_mask)
    fast = integ.run(x0[None], v0[None], 300, stride=3)
    np.testing.assert_array_equal(ref["step"], fast["step"])
    np.testing.assert_allclose(fast["positions"][:, 0], ref["positions"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(fast["energy"][:, 0], ref["energy"], rtol=0, atol=1e-9)
    # the inactive coordinate never moves
    assert np.all(fast["positions"][:, 0, 1, 2] == x0[1, 2])


def test_batch_walkers_are_independent():
    """Walker k of a batch follows the same law as a lone walker: check
    equipartition and that walkers decorrelate."""
    system = MullerBrown5D()
    n = 256
    rng = np.random.default_rng(3)
    x0 = system.start_positions("A", n, rng=rng)
    masses = system.make_atoms().get_masses()
    v0 = maxwell_boltzmann(masses, 300.0, rng, n=n, dof_mask=system.dof_mask)
    integ = BatchLangevin(system.energy_and_forces, masses, PARAMS, rng, dof_mask=system.dof_mask)
    out = integ.run(x0, v0, 400, stride=400)
    v = out["v"]
    kinetic = 0.5 * (masses[:, None] * v**2).sum(axis=(1, 2))
    from ase import units

    # 5 active degrees of freedom: <K> = 5/2 kT
    expected = 2.5 * units.kB * 300.0
    assert abs(kinetic.mean() - expected) < 4 * kinetic.std() / np.sqrt(n)


def test_blow_up_detected_with_walker_and_step():
    def exploding(x):
        e = np.where(np.arange(len(x)) == 2, np.inf, 0.0)
        return e, np.zeros_like(x)

    integ = BatchLangevin(exploding, np.ones(2), PARAMS, np.random.default_rng(0))
    with pytest.raises(BlowUpError, match="walker 2 blew up at step 1") as info:
        integ.run(np.zeros((4, 2, 3)), np.zeros((4, 2, 3)), 5)
    assert info.value.walker == 2 and info.value.step == 1
