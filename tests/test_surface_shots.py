"""Shots from a dividing surface (mtcv_rates.surface_shots)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtcv_core.rates import transmission_coefficient
from mtcv_rates.surface_shots import SurfaceShots
from mtcv_systems.embedded5d import MullerBrown5D, true_cv_module


class _XTilde(torch.nn.Module):
    """x~ of the 5D models as a 1D CV."""

    def __init__(self) -> None:
        super().__init__()
        self.true_cv = true_cv_module()

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.true_cv(positions)[:, :1]


@pytest.fixture(scope="module")
def system():
    return MullerBrown5D(energy_scale=0.05)


def test_initial_cv_velocity_is_the_gradient_times_the_velocity(system):
    """Without friction, over one 0.01 fs step, (xi(dt) - xi(0)) / dt is
    xi_dot0 = grad xi . v(0) to the step's O(dt) error."""
    saddle = min(system.critical_points().saddles, key=lambda s: s.energy)
    x = system.embed(saddle.x, saddle.y, phi12=0.3, phi34=-0.7)
    shots = SurfaceShots(temperature_K=300.0, shots=20, n_steps=1, timestep_fs=0.01,
                         friction_per_fs=0.0, record_every=1).run(
        system, _XTilde(), np.repeat(x, 2, axis=0), seed=0)
    assert shots["xi0"].values == pytest.approx(saddle.x, abs=1e-9)
    rate = (shots["xi"].values[..., 0] - shots["xi0"].values[:, None]) / 0.01
    np.testing.assert_allclose(rate, shots["xi_dot0"].values, rtol=1e-3, atol=1e-6)
    assert np.all(np.abs(shots["xi_dot0"].values) > 0)


def test_shots_from_the_saddle_commit_and_start_with_kappa_one(system):
    """From the lowest saddle of a low-barrier Muller-Brown (between B and the
    unnamed intermediate minimum), 2 ps shots: some commit to B, some do
    not; from A's minimum every shot is in A at once; kappa(t) along x~
    starts near 1 and decays (x~ is not this saddle's reaction coordinate)."""
    saddle = min(system.critical_points().saddles, key=lambda s: s.energy)
    x = system.embed(saddle.x, saddle.y)
    minimum = system.embed(*system.minimum("A")[:2])
    shots = SurfaceShots(temperature_K=300.0, shots=64, n_steps=2000,
                         record_every=20).run(
        system, _XTilde(), np.concatenate([x, x, minimum]), seed=1)
    committed = shots["committed"].values
    assert np.all(committed[2] == 0)  # from A's minimum: A at once
    ab = system.basins.index("B")
    assert (committed[:2] == ab).any() and (committed[:2] != ab).any()
    towards = 1 if system.minimum("B")[0] > saddle.x else -1  # B's side of the surface
    kappa = transmission_coefficient(shots["xi_dot0"].values[:2].ravel(),
                                     shots["xi"].values[:2].reshape(128, -1), saddle.x,
                                     towards=towards)
    assert kappa[0] > 0.8 and kappa[-1] < kappa[0]
    with pytest.raises(ValueError, match="configurations"):
        SurfaceShots(temperature_K=300.0).run(system, _XTilde(), x[0], seed=0)


def test_antithetic_shots_pair_each_velocity_with_its_reverse(system):
    """Antithetic shots (the default) come in pairs v, -v: their initial CV
    velocities cancel exactly, so kappa(t) towards either side is the same
    curve (the Bennett-Chandler numerators differ by sum(w xi_dot0) = 0);
    without them the two estimates differ by that sum's noise. An odd
    number of antithetic shots is refused."""
    from mtcv_rates.analysis import kappa_from_shots

    saddle = min(system.critical_points().saddles, key=lambda s: s.energy)
    x = np.concatenate([system.embed(saddle.x, saddle.y, phi12=p, phi34=-p)
                        for p in (0.1, 0.5, 0.9)])
    shots = SurfaceShots(temperature_K=300.0, shots=6, n_steps=400, record_every=20).run(
        system, _XTilde(), x, seed=3)
    v = shots["xi_dot0"].values
    np.testing.assert_allclose(v[:, 0::2], -v[:, 1::2], rtol=1e-12, atol=1e-15)
    up = kappa_from_shots(shots, saddle.x, towards=1, n_bootstraps=0)["kappa"].values
    down = kappa_from_shots(shots, saddle.x, towards=-1, n_bootstraps=0)["kappa"].values
    np.testing.assert_allclose(up, down, rtol=1e-12)
    plain = SurfaceShots(temperature_K=300.0, shots=6, n_steps=400, record_every=20,
                         antithetic=False).run(system, _XTilde(), x, seed=3)
    assert abs(plain["xi_dot0"].values.sum()) > 1e-6
    with pytest.raises(ValueError, match="shots must be even"):
        SurfaceShots(temperature_K=300.0, shots=5).run(system, _XTilde(), x, seed=3)
