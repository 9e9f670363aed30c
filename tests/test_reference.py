"""Exact quadrature references of the 5D systems (mtcv_systems.reference)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from mtcv_systems import MullerBrown5D
from mtcv_systems.reference import (
    KB_EV_PER_K,
    basin_free_energies,
    fes_2d,
    pmf_along,
    reference_transitions,
)

T = 300.0
KT = KB_EV_PER_K * T


@dataclass(frozen=True)
class TwoHarmonicWells:
    """V = min_i [kx_i/2 (x - x_i)^2 + ky_i/2 (y - y_i)^2 + c_i] (eV, angstrom)."""

    wells: tuple[tuple[float, float, float, float, float], ...] = (
        (20.0, 10.0, 0.2, 0.1, 0.0),    # (x0, y0, kx, ky, c)
        (30.0, 25.0, 0.4, 0.8, 0.05),
    )
    bounds: tuple[tuple[float, float], tuple[float, float]] = ((0.0, 50.0), (0.0, 40.0))

    def terms(self, x, y):
        x, y = np.broadcast_arrays(np.asarray(x, float), np.asarray(y, float))
        return np.stack([0.5 * kx * (x - x0) ** 2 + 0.5 * ky * (y - y0) ** 2 + c
                         for x0, y0, kx, ky, c in self.wells])

    def energy(self, x, y):
        return self.terms(x, y).min(axis=0)


class HarmonicSystem:
    """Duck-typed stand-in for an Embedded5DSystem."""

    basins = ("A", "B")
    temperature_K = T

    def __init__(self) -> None:
        self.potential = TwoHarmonicWells()

    def basin_index_2d(self, x, y):
        terms = self.potential.terms(x, y)
        return np.where(terms.min(axis=0) < 1.0, np.argmin(terms, axis=0), -1)


def test_harmonic_quadrature_matches_gaussian_integral_with_jacobian():
    """Z_i = int x y exp(-V_i/kT) dx dy = x_i y_i 2 pi kT / sqrt(kx ky) e^{-c/kT}
    (the mean of x y under independent Gaussians is x_i y_i)."""
    system = HarmonicSystem()
    f = basin_free_energies(system, T, n=400)
    z = [x0 * y0 * 2 * np.pi * KT / np.sqrt(kx * ky) * np.exp(-c / KT)
         for x0, y0, kx, ky, c in system.potential.wells]
    exact = -KT * np.log(z[1] / z[0])
    assert f["B"] - f["A"] == pytest.approx(exact, abs=1e-6)
    # without the Jacobian the answer would differ by kT ln(x_B y_B / x_A y_A)
    assert abs(exact - (-KT * np.log(z[1] / z[0] * 200 / 750))) > 0.03
    p = np.exp(-np.array([f["A"], f["B"]]) / KT)
    assert p.sum() == pytest.approx(1.0, abs=1e-9)
    # the FES is V - kT ln(x y) up to a constant
    grid = (np.linspace(15, 25, 11), np.linspace(5, 15, 9))
    fes = fes_2d(system, T, grid)
    xx, yy = np.meshgrid(*grid, indexing="ij")
    direct = system.potential.energy(xx, yy) - KT * np.log(xx * yy)
    np.testing.assert_allclose(fes.values, direct - direct.min(), atol=1e-12)
    assert fes.attrs["units"] == "eV" and fes.dims == ("x_tilde", "y_tilde")


def test_pmf_along_matches_one_dimensional_quadrature():
    system = HarmonicSystem()
    edges = np.linspace(16.0, 24.0, 17)
    pmf = pmf_along(system, T, lambda x, y: x, edges, n=2000)
    # well A alone along x: p(x) ∝ x exp(-kx (x - x0)^2 / 2kT) (well B is far away)
    x0, _, kx, _, _ = system.potential.wells[0]
    exact = []
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        s = np.linspace(lo, hi, 2001)
        exact.append(-KT * np.log(np.trapezoid(s * np.exp(-0.5 * kx * (s - x0) ** 2 / KT), s)))
    exact = np.array(exact) - min(exact)
    low = exact < 0.3  # the midpoint rule's relative error grows in the far tails
    assert low.sum() >= 8
    np.testing.assert_allclose(pmf["pmf"].values[low], exact[low], atol=2e-4)
    np.testing.assert_allclose(pmf["pmf"].values, exact, rtol=0.01)
    assert float(np.nanmin(pmf["pmf"])) == 0.0


@pytest.fixture(scope="module")
def muller_brown():
    return MullerBrown5D()


def test_basin_free_energies_converge(muller_brown):
    coarse = basin_free_energies(muller_brown, T, n=300, check=False)
    fine = basin_free_energies(muller_brown, T, n=600, check=False)
    for name in ("A", "B"):
        assert abs(coarse[name] - fine[name]) < 1e-3
    assert abs((coarse["B"] - coarse["A"]) - (fine["B"] - fine["A"])) < 1e-3


def test_muller_brown_reference_numbers(muller_brown):
    rows = {(r["from"], r["to"]): r for r in reference_transitions(muller_brown, T, n=300)}
    ab, ba = rows["A", "B"], rows["B", "A"]
    assert 0.3 < ab["delta_F_eV"] < 0.7
    assert ba["delta_F_eV"] == pytest.approx(-ab["delta_F_eV"])
    assert 0.8 < ab["barrier_eV"] < 1.0
    # the A->B barrier crosses the same saddles as the energy barrier (0.920 eV),
    # shifted by the Jacobian; B->A likewise (0.586 eV)
    assert ab["barrier_eV"] - ba["barrier_eV"] == pytest.approx(ab["delta_F_eV"], abs=0.02)
    assert ab["barrier_err_eV"] < 2e-3 and ab["delta_F_err_eV"] < 1e-3
    f = basin_free_energies(muller_brown, T, n=300)
    assert f["B"] - f["A"] == pytest.approx(ab["delta_F_eV"], abs=1e-3)
