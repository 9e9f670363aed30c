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


def test_rates_along_x_tilde_put_together():
    """RatesAlongCV on the reduced-barrier Muller-Brown (energy_scale 0.2)
    along x~ with its PMF by quadrature: k = kappa k_TST both ways, kappa a fraction, detailed
    balance of the TST rates, a committor histogram over the shot
    configurations."""
    from mtcv_core.units import kT_eV
    from mtcv_rates.along_cv import RatesAlongCV

    system = MullerBrown5D(energy_scale=0.2)
    kt = kT_eV(300.0)
    edges = np.linspace(15.0, 50.0, 71)
    centers = 0.5 * (edges[1:] + edges[:-1])
    y = np.linspace(0.5, 45.0, 900)
    v = system.potential.energy(centers[:, None], y[None, :])
    pmf = -kt * np.log(centers * np.trapezoid(y * np.exp(-(v - v.min()) / kt), y, axis=1))
    xa, xb = system.minimum("A")[0], system.minimum("B")[0]
    top = centers[(centers > xa) & (centers < xb)][np.argmax(pmf[(centers > xa) & (centers < xb)])]
    y_top = y[np.argmin(system.potential.energy(np.full_like(y, top), y))]
    starts = system.embed(top, y_top)
    res = RatesAlongCV(temperature_K=300.0, max_configs=16,
                       surface={"walkers": 8, "equilibration_steps": 200, "n_steps": 1000,
                                "stride": 20},
                       shots={"shots": 4, "n_steps": 1000, "record_every": 20}).run(
        system, _XTilde(), pmf, centers, xa, xb, starts,
        product=system.basins.index("B"), reactant=system.basins.index("A"))
    assert res["xi_star"] == pytest.approx(top)
    assert res["mean_grad_norm"] == pytest.approx(1.0, abs=1e-6)
    for tag in ("forward", "backward"):
        assert np.isfinite(res[f"kappa_{tag}_err"]) and res[f"kappa_{tag}"] <= 1.05
        assert res[f"k_{tag}_per_s"] == pytest.approx(res[f"kappa_{tag}"]
                                                      * res[f"k_tst_{tag}_per_s"])
    assert sum(res["committor_histogram"]) <= 16
    assert 0.0 <= res["committor_mean"] <= 1.0
