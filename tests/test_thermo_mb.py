"""Nonlinear CG maps with the instantaneous collective force (mtcv_thermo.cgmap.
NonlinearCGMap) and the radial CG of the 5D Müller-Brown model
(mtcv_thermo.embedded): autograd against closed forms, bin averages of the
instantaneous force on exact samples against the analytic mean force within
Monte Carlo error (z-scores), and clear errors for bad maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mtcv_systems.embedded5d import MullerBrown5D
from mtcv_thermo import KB, CGMap, map_dataset
from mtcv_thermo.cgmap import NonlinearCGMap
from mtcv_thermo.embedded import (
    radial_cg_map,
    radial_free_energy,
    radial_instantaneous_force,
    radial_mean_force,
)
from mtcv_thermo.exact_model import bessel_ratio, log_i0

Z_MAX = 4.5
T = 300.0
KT = KB * T


@pytest.fixture(scope="module")
def system():
    return MullerBrown5D()


def random_5d(system, n, rng, x5_range=300.0):
    return system.embed(rng.uniform(18, 45, n), rng.uniform(4, 33, n),
                        rng.uniform(0, 2 * np.pi, n), rng.uniform(0, 2 * np.pi, n),
                        rng.uniform(-x5_range, x5_range, n))


def z_score(values: np.ndarray) -> float:
    return float(values.mean() / (values.std(ddof=1) / np.sqrt(len(values))))


# ------------------------------------------------------------ closed forms
def test_autograd_map_equals_closed_form_radial_force(system):
    rng = np.random.default_rng(0)
    pos = random_5d(system, 500, rng)
    _, forces = system.energy_and_forces(pos)
    cg = radial_cg_map(system)
    temps = rng.uniform(250, 550, len(pos))
    got = cg.mapped_forces(pos, forces, temps)
    assert got.shape == (500, 1, 3) and np.all(got[:, 0, 2] == 0)
    want = radial_instantaneous_force(pos, system.potential.gradient, temps)
    np.testing.assert_allclose(got[:, 0, :2], want, rtol=1e-10, atol=1e-13)
    # R = (x~, y~), and the force averages to -grad A (here: equal up to ~1e-7 kT/x~)
    r = cg.map_positions(pos)[:, 0]
    np.testing.assert_allclose(r[:, :2], system.true_cv(pos), rtol=1e-14)
    mean = radial_mean_force(system, r[:, 0], r[:, 1], temps)
    assert np.abs(got[:, 0, :2] - mean).max() < 1e-7 * KB * 550 / 18 * 2


def test_x5_terms_of_the_divergence_with_a_large_weight():
    """With w = 0.3 the x5 direction's share of div b is large: autograd
    matches the closed form and differs clearly from the polar 1/x~."""
    w = 0.3

    def cv(r: torch.Tensor) -> torch.Tensor:
        x = r.reshape(r.shape[0], 6)
        return torch.stack([torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2 + w * x[:, 4] ** 2),
                            torch.sqrt(x[:, 2] ** 2 + x[:, 3] ** 2)], 1)

    def grad(xt, yt):  # V = (x~ - 3)^2 + 0.5 (y~ - 2)^2
        return 2 * (xt - 3), (yt - 2.0)

    rng = np.random.default_rng(1)
    x = rng.normal(0, 2, (200, 5))
    pos = np.zeros((200, 6))
    pos[:, :5] = x
    pos = pos.reshape(200, 2, 3)
    xt = np.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2 + w * x[:, 4] ** 2)
    yt = np.sqrt(x[:, 2] ** 2 + x[:, 3] ** 2)
    gx, gy = grad(xt, yt)
    f = np.zeros((200, 6))
    f[:, 0], f[:, 1], f[:, 4] = -gx * x[:, 0] / xt, -gx * x[:, 1] / xt, -gx * w * x[:, 4] / xt
    f[:, 2], f[:, 3] = -gy * x[:, 2] / yt, -gy * x[:, 3] / yt
    cg = NonlinearCGMap(cv, 2, 2, dof_mask=np.array([[1, 1, 1], [1, 1, 0]], bool),
                        require_orthogonal=True)
    got = cg.mapped_forces(pos, f.reshape(200, 2, 3), T)[:, 0, :2]
    want = radial_instantaneous_force(pos, grad, T, x5_weight=w)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)
    polar = np.stack([-gx + KT / xt, -gy + KT / yt], 1)
    assert np.abs(got[:, 0] - polar[:, 0]).max() > 1e-3 * KT


def test_linear_function_gives_the_consistent_linear_force_map():
    """For a linear map b = (C C^T)^{-1} C (CGMap's default) and div b = 0."""
    rng = np.random.default_rng(2)
    c = np.zeros((6, 9))
    c[:4] = rng.normal(size=(4, 9))
    lin = CGMap(c, site_mask=np.array([[1, 1, 1], [1, 0, 0]], bool))
    ct = torch.as_tensor(c[:4])
    cg = NonlinearCGMap(lambda r: r.reshape(r.shape[0], 9) @ ct.T, 3, 4)
    pos, frc = rng.normal(size=(50, 3, 3)), rng.normal(size=(50, 3, 3))
    np.testing.assert_allclose(cg.map_positions(pos), lin.map_positions(pos), atol=1e-12)
    np.testing.assert_allclose(cg.mapped_forces(pos, frc, T), lin.mapped_forces(pos, frc, T),
                               atol=1e-10)
    _, div = cg.collective_force(pos, frc, T)
    assert np.all(div == 0)


# ------------------------------------------------------------ Monte Carlo: <f | R> = -grad A
K1, K2, K3 = 0.6, 1.4, 0.8  # eV/angstrom^2


def anisotropic_samples(n, rng):
    """Exact Boltzmann samples of V = (K1 x^2 + K2 y^2 + K3 z^2)/2, one atom."""
    pos = rng.standard_normal((n, 1, 3)) * np.sqrt(KT / np.array([K1, K2, K3]))
    return pos, -pos * np.array([K1, K2, K3])


def mean_force_r(r):
    """-dA/dr for A(r) = r^2 (K1+K2)/4 - kT ln I0(r^2 (K1-K2)/(4 kT)) - kT ln r."""
    kappa = r**2 * (K1 - K2) / (4 * KT)
    return -r * (K1 + K2) / 2 + bessel_ratio(kappa) * r * (K1 - K2) / 2 + KT / r


def free_energy_r(r):
    return r**2 * (K1 + K2) / 4 - KT * log_i0(r**2 * (K1 - K2) / (4 * KT)) - KT * np.log(r)


def cv_r_z(r: torch.Tensor) -> torch.Tensor:
    x = r[:, 0]
    return torch.stack([torch.sqrt(x[:, 0] ** 2 + x[:, 1] ** 2), x[:, 2]], 1)


def test_closed_form_mean_force_is_minus_dA_dr():
    r = np.linspace(0.1, 1.0, 7)
    h = 1e-5
    fd = -(free_energy_r(r + h) - free_energy_r(r - h)) / (2 * h)
    np.testing.assert_allclose(mean_force_r(r), fd, rtol=1e-7)


def bin_z_scores(cv, f, mean_force, n_bins=8):
    """z-scores per quantile bin of cv of the mean of f - mean_force(samples):
    by the tower property its expectation is 0 in every bin, for any bin width."""
    edges = np.quantile(cv, np.linspace(0, 1, n_bins + 1))
    idx = np.clip(np.searchsorted(edges, cv, side="right") - 1, 0, n_bins - 1)
    return np.array([z_score((f - mean_force)[idx == b]) for b in range(n_bins)])


def test_instantaneous_force_averages_to_the_mean_force_in_bins():
    """Anisotropic harmonic well, CG (r = |(x, y)|, z): the instantaneous force
    b . F + kT/r varies with the angle at fixed r; its bin means equal the
    analytic -dA/dr (Bessel-function A) within Monte Carlo error."""
    pos, frc = anisotropic_samples(60_000, np.random.default_rng(3))
    cg = NonlinearCGMap(cv_r_z, 1, 2, require_orthogonal=True, name="r, z")
    f = cg.mapped_forces(pos, frc, T)[:, 0]
    rz = cg.map_positions(pos)[:, 0]
    ref = mean_force_r(rz[:, 0])
    assert np.std(f[:, 0] - ref) > 0.1 * np.std(ref)  # a noisy label, not a function of r
    assert np.abs(bin_z_scores(rz[:, 0], f[:, 0], ref)).max() < Z_MAX
    np.testing.assert_allclose(f[:, 1], -K3 * rz[:, 1], atol=1e-12)
    # without the divergence term the bin means are off by kT/r (many sigma)
    b_dot_f, _ = cg.collective_force(pos, frc, T)
    assert np.abs(bin_z_scores(rz[:, 0], b_dot_f[:, 0], ref)).max() > 50


def test_non_orthogonal_map_uses_the_dual_basis():
    """CG (r, q = z + r/2): gradients not orthogonal; b = G^{-1} J still gives
    -dA'/dr = -dA/dr - K3 z / 2 and -dA'/dq = -K3 z (A'(r, q) = A(r, q - r/2))."""
    def cv(r: torch.Tensor) -> torch.Tensor:
        rz = cv_r_z(r)
        return torch.stack([rz[:, 0], rz[:, 1] + 0.5 * rz[:, 0]], 1)

    pos, frc = anisotropic_samples(40_000, np.random.default_rng(4))
    cg = NonlinearCGMap(cv, 1, 2)
    f = cg.mapped_forces(pos, frc, T)[:, 0]
    r, z = np.hypot(pos[:, 0, 0], pos[:, 0, 1]), pos[:, 0, 2]
    assert np.abs(bin_z_scores(r, f[:, 0], mean_force_r(r) - 0.5 * K3 * z)).max() < Z_MAX
    assert np.abs(bin_z_scores(r, f[:, 1], -K3 * z)).max() < Z_MAX
    with pytest.raises(ValueError, match="not orthogonal at frame 0"):
        NonlinearCGMap(cv, 1, 2, require_orthogonal=True).mapped_forces(pos[:3], frc[:3], T)


def test_mb_exact_samples_force_and_energy_labels(system):
    """Exact samples of p(x~, y~) ∝ x~ y~ exp(-V2d/kT) around minimum A (grid
    inverse CDF), random angles and x5: the mapped dataset's forces are the
    analytic -grad_R A and its energies V2d(R) = d(beta A)/d beta."""
    rng = np.random.default_rng(5)
    xg, yg = np.linspace(17, 30, 261), np.linspace(27, 35, 161)
    xx, yy = np.meshgrid(xg, yg, indexing="ij")
    a = radial_free_energy(system, xx, yy, T)
    p = np.exp(-(a - a.min()) / KT).ravel()
    cell = rng.choice(p.size, 4000, p=p / p.sum())
    xt = xx.ravel()[cell] + rng.uniform(-0.025, 0.025, 4000)
    yt = yy.ravel()[cell] + rng.uniform(-0.025, 0.025, 4000)
    pos = system.embed(xt, yt, rng.uniform(0, 2 * np.pi, 4000), rng.uniform(0, 2 * np.pi, 4000),
                       rng.normal(0, 50, 4000))
    e, f = system.energy_and_forces(pos)
    temps = np.where(np.arange(4000) % 2, 300.0, 450.0)
    ds = map_dataset(radial_cg_map(system), pos, f, e, temps)
    assert ds["site_mask"].values.tolist() == [[1, 1, 0]]
    r = ds["coordinates"].values[:, 0, :2]
    np.testing.assert_allclose(r, np.stack([xt, yt], 1), rtol=1e-12)
    want = radial_mean_force(system, xt, yt, temps)
    np.testing.assert_allclose(ds["forces"].values[:, 0, :2], want, rtol=0, atol=1e-9)
    np.testing.assert_allclose(ds["energy"].values, system.potential.energy(xt, yt), atol=1e-12)
    assert "nonlinear" in ds.attrs["cg_map"]


# ------------------------------------------------------------ bad maps
def test_bad_maps_raise_clear_errors():
    pos, frc = anisotropic_samples(5, np.random.default_rng(6))
    with pytest.raises(ValueError, match="shape \\(n, 2\\)"):
        NonlinearCGMap(lambda r: r[:, 0, :1], 1, 2).map_positions(pos)
    with pytest.raises(ValueError, match="do not depend on the positions"):
        NonlinearCGMap(lambda r: torch.ones(r.shape[0], 2, dtype=r.dtype), 1, 2
                       ).mapped_forces(pos, frc, T)
    with pytest.raises(ValueError, match="linearly dependent at frame 0"):
        NonlinearCGMap(lambda r: torch.stack([r[:, 0, 0], 2 * r[:, 0, 0]], 1), 1, 2
                       ).mapped_forces(pos, frc, T)
    with pytest.raises(ValueError, match="vanishes on the moving coordinates"):
        NonlinearCGMap(lambda r: r[:, 0, 2:3] ** 2 + r[:, 0, 0:1], 1, 1,
                       dof_mask=np.array([[0, 1, 1]], bool)).mapped_forces(
            np.zeros((2, 1, 3)), np.zeros((2, 1, 3)), T)
    at_origin = pos.copy()
    at_origin[2, 0, :2] = 0.0
    with pytest.raises(ValueError, match="non-finite gradient .* at frame 2"):
        NonlinearCGMap(cv_r_z, 1, 2).mapped_forces(at_origin, frc, T)
    with pytest.raises(ValueError, match="non-finite CG coordinates at frame 1"):
        NonlinearCGMap(lambda r: torch.log(r[:, 0, :2]), 1, 2).map_positions(
            np.array([[[1.0, 1, 1]], [[-1.0, 1, 1]]]))
    with pytest.raises(ValueError, match="expected shape \\(n, 1, 3\\)"):
        NonlinearCGMap(cv_r_z, 1, 2).mapped_forces(pos[:, 0], frc, T)
    with pytest.raises(ValueError, match="temperature"):
        NonlinearCGMap(cv_r_z, 1, 2).mapped_forces(pos, frc, -1.0)
    with pytest.raises(ValueError, match="callable"):
        NonlinearCGMap("x", 1, 1)
    with pytest.raises(ValueError, match="dof_mask"):
        NonlinearCGMap(cv_r_z, 1, 2, dof_mask=np.ones((2, 3), bool))
    with pytest.raises(ValueError, match="cannot have linearly independent"):
        NonlinearCGMap(cv_r_z, 1, 2, dof_mask=np.array([[1, 0, 0]], bool))
