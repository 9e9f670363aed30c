"""Configurations on a dividing surface from restrained MD (mtcv_rates.surface)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtcv_rates.surface import SurfaceSampler
from mtcv_systems.embedded5d import MullerBrown5D, true_cv_module


class _XTilde(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.true_cv = true_cv_module()

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.true_cv(positions)[:, :1]


def test_surface_configurations_of_x_tilde():
    """Restrained at the lowest saddle's x~: the kept configurations lie
    within half a thermal width of it, their weights undo the restraint
    (largest where the restraint is largest), and |grad x~|_M is 1 for the
    unit-mass pseudo-atoms (x~ is a radius in the x1-x2 plane)."""
    system = MullerBrown5D(energy_scale=0.05)
    saddle = min(system.critical_points().saddles, key=lambda s: s.energy)
    starts = np.concatenate([system.embed(saddle.x, saddle.y, phi12=p) for p in (0.0, 1.0)])
    sampler = SurfaceSampler(temperature_K=300.0, spring=10.0, walkers=8,
                             equilibration_steps=200, n_steps=1000, stride=20)
    out = sampler.run(system, _XTilde(), saddle.x, starts, seed=3)
    width = np.sqrt(8.617330337217213e-05 * 300.0 / 10.0)
    xi, w = out["xi"].values, out["weight"].values
    assert out.attrs["n_recorded"] == 8 * 50 and 20 < out.attrs["n_kept"] < 400
    assert np.all(np.abs(xi - saddle.x) <= 0.5 * width + 1e-12)
    assert w.sum() == pytest.approx(1.0)
    far, near = np.argmax(np.abs(xi - saddle.x)), np.argmin(np.abs(xi - saddle.x))
    assert w[far] > w[near]
    np.testing.assert_allclose(out["grad_norm"].values, 1.0, atol=1e-6)
    assert out.attrs["mean_grad_norm"] == pytest.approx(1.0, abs=1e-6)
    with pytest.raises(ValueError, match="spring"):
        SurfaceSampler(temperature_K=300.0, spring=0.0).run(system, _XTilde(), saddle.x,
                                                            starts, seed=0)
