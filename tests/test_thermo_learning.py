"""Free-energy models, the thermodynamic loss heads, the kernel regressor and
the CG calculator: loss minimisers are conditional means, derivative
predictions match finite differences, forces match finite differences,
the fast CG-MD path is ASE's Langevin, bad input raises clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from mtcv_ase.md import LangevinParams, maxwell_boltzmann, run_ase_langevin
from mtcv_ase.testing import check_forces_finite_difference
from mtcv_core.plugins import PluginError
from mtcv_thermo import (
    KB,
    FreeEnergyCalculator,
    KernelFreeEnergy,
    NeuralFreeEnergy,
    ThermoExactModel,
    make_cg_atoms,
    make_cg_dataset,
    run_cg_md,
    thermo_derivatives,
    train_free_energy,
)
from mtcv_thermo.models import dataset_tensors, make_batch
from mtcv_thermo.training import build_heads

T0 = 300.0
BETA0 = 1.0 / (KB * T0)
MASK_X = np.array([[True, False, False]])


@pytest.fixture(scope="module")
def system():
    return ThermoExactModel()


@pytest.fixture(scope="module")
def exact_data(system):
    return system.sample_cg_dataset(400, T0, np.random.default_rng(5))


# ------------------------------------------------------------------ loss minimisers
class BasisModel(nn.Module):
    """beta A(x, beta) = sum_k [c0_k + c1_k (beta - b0) + c2_k (beta - b0)^2 / 2] x^k,
    so that at beta0: F = -(1/beta0) sum_k k c0_k x^(k-1), E = sum_k c1_k x^k,
    W = -sum_k c2_k x^k. Linear in its coefficients: every loss below has a
    unique minimiser in the span."""

    def __init__(self, degree: int = 4):
        super().__init__()
        self.c = nn.Parameter(torch.zeros(3, degree + 1, dtype=torch.float64))
        self.register_buffer("site_mask", torch.as_tensor(MASK_X))

    def powers(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([x**k for k in range(self.c.shape[1])], 1)

    def forward(self, positions, temperature):
        beta = 1.0 / (KB * temperature)
        db = (beta - BETA0)[:, None]
        coef = self.c[0] + self.c[1] * db + 0.5 * self.c[2] * db**2
        return (self.powers(positions[:, 0, 0]) * coef).sum(1) / beta


def synthetic(n: int, rng: np.random.Generator, mean_force, mean_energy, variance):
    """x ~ U(-1.2, 1.2) at T0; labels = conditional means + heteroscedastic,
    skewed (centred exponential) noise."""
    x = rng.uniform(-1.2, 1.2, n)
    pos = np.zeros((n, 1, 3))
    pos[:, 0, 0] = x
    forces = np.zeros((n, 1, 3))
    forces[:, 0, 0] = mean_force(x) + (0.5 + np.abs(x)) * (rng.exponential(size=n) - 1.0)
    u = mean_energy(x) + np.sqrt(variance(x)) * (rng.exponential(size=n) - 1.0)
    return make_cg_dataset(pos, forces, u, T0, site_mask=MASK_X)


def minimise(model: nn.Module, data, heads: dict[str, float]) -> None:
    tensors = dataset_tensors(data)
    built = build_heads(heads)
    for head in built:
        head.prepare(tensors, fit=True)
    opt = torch.optim.LBFGS(model.parameters(), lr=1.0, max_iter=400, history_size=50,
                            tolerance_grad=1e-12, tolerance_change=1e-15,
                            line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        batch = make_batch(tensors)
        a = model(batch["positions"], batch["temperature"])
        loss = torch.stack([h.loss(a, batch) for h in built]).sum()
        loss.backward()
        return loss

    for _ in range(3):
        opt.step(closure)


def predictions(model, x, variance=False):
    pos = torch.zeros(len(x), 1, 3, dtype=torch.float64)
    pos[:, 0, 0] = torch.as_tensor(x)
    out = thermo_derivatives(model, pos, torch.full((len(x),), T0, dtype=torch.float64),
                             variance=variance)
    return {k: v.numpy() for k, v in out.items()}


def mf(x):
    return 0.4 - 0.8 * x + 0.3 * x**3


def me(x):
    return 0.3 + 0.2 * x - 0.1 * x**2


def mv(x):
    return 0.01 * (1 + 0.5 * x) ** 2


@pytest.fixture(scope="module")
def synth():
    return synthetic(40_000, np.random.default_rng(3), mf, me, mv)


def test_force_matching_minimiser_is_the_mean_force(synth):
    model = BasisModel()
    minimise(model, synth, {"force_matching": 1.0})
    x = np.linspace(-1.0, 1.0, 21)
    err = predictions(model, x)["forces"][:, 0, 0] - mf(x)
    assert np.abs(err).max() < 0.05      # label noise std ~ 1 eV/A, 40k samples


def test_energy_matching_minimiser_is_the_mean_energy(synth):
    model = BasisModel()
    minimise(model, synth, {"energy_matching": 1.0})
    x = np.linspace(-1.0, 1.0, 21)
    err = predictions(model, x)["energy"] - me(x)
    assert np.abs(err).max() < 0.005     # label noise std ~ 0.1 eV


def test_second_cumulant_minimiser_is_the_conditional_variance(synth):
    """Energy + second-cumulant terms recover <u|x> and Var(u|x) (skewed noise)."""
    model = BasisModel()
    minimise(model, synth, {"energy_matching": 1.0, "second_cumulant": 1.0})
    x = np.linspace(-1.0, 1.0, 21)
    out = predictions(model, x, variance=True)
    assert np.abs(out["energy"] - me(x)).max() < 0.005
    rel = np.abs(out["variance"] - mv(x)) / mv(x)
    assert rel.max() < 0.15
    # without the cumulant term the variance is not learned at all
    plain = BasisModel()
    minimise(plain, synth, {"energy_matching": 1.0})
    assert np.abs(predictions(plain, x, variance=True)["variance"]).max() < 1e-12


# ------------------------------------------------------------------ kernel regressor
@pytest.fixture(scope="module")
def kernel(system):
    """Kernel fitted on exact data at two temperatures, smooth remainder in T on."""
    rng = np.random.default_rng(8)
    temps = np.repeat([270.0, 330.0], 80)
    data = system.sample_cg_dataset(len(temps), temps, rng)
    return KernelFreeEnergy(MASK_X, length_scale=0.5, rbf_amplitude=0.3,
                            rbf_length=0.4).fit(data)


def test_kernel_derivative_predictions_match_finite_differences(kernel):
    x = np.array([-1.3, -0.6, 0.1, 0.7, 1.2])
    pos = np.zeros((len(x), 1, 3))
    pos[:, 0, 0] = x
    for T in (250.0, 310.0, 360.0):
        pred = kernel.predict(pos, T)

        def a(p, t):
            with torch.no_grad():
                return kernel(torch.as_tensor(p), torch.full((len(p),), t,
                                                             dtype=torch.float64)).numpy()

        h = 1e-5
        dp = np.zeros_like(pos)
        dp[:, 0, 0] = h
        np.testing.assert_allclose(pred["free_energy"], a(pos, T), rtol=1e-12, atol=1e-12)
        fd_force = -(a(pos + dp, T) - a(pos - dp, T)) / (2 * h)
        np.testing.assert_allclose(pred["forces"][:, 0, 0], fd_force, rtol=1e-6, atol=1e-8)
        assert np.all(pred["forces"][:, 0, 1:] == 0)
        ht = 1e-3
        fd_energy = a(pos, T) - T * (a(pos, T + ht) - a(pos, T - ht)) / (2 * ht)
        np.testing.assert_allclose(pred["energy"], fd_energy, rtol=1e-6, atol=1e-8)
        # autograd through the value prediction agrees with the closed form
        auto = thermo_derivatives(kernel, torch.as_tensor(pos),
                                  torch.full((len(x),), T, dtype=torch.float64))
        np.testing.assert_allclose(auto["forces"].numpy(), pred["forces"], atol=1e-10)
        np.testing.assert_allclose(auto["energy"].numpy(), pred["energy"], atol=1e-10)


def test_kernel_learns_mean_force_and_force_only_fit_is_temperature_independent(
        system, exact_data):
    x = np.linspace(-1.2, 1.0, 12)
    pos = np.zeros((len(x), 1, 3))
    pos[:, 0, 0] = x
    both = KernelFreeEnergy(MASK_X, length_scale=[0.4, 0.8]).fit(exact_data)
    err = both.predict(pos, T0)["forces"][:, 0, 0] - system.mean_force(x, T0)
    assert np.sqrt(np.mean(err**2)) < 0.3 * np.sqrt(np.mean(system.mean_force(x, T0) ** 2))
    assert both.selection["length_scale"] in (0.4, 0.8)
    forces_only = KernelFreeEnergy(MASK_X, length_scale=0.6).fit(exact_data, energy_weight=0.0)
    a_lo = forces_only.predict(pos, 210.0)["free_energy"]
    a_hi = forces_only.predict(pos, 390.0)["free_energy"]
    np.testing.assert_allclose(a_lo - a_lo.mean(), a_hi - a_hi.mean(), atol=1e-10)


# ------------------------------------------------------------------ CG calculator
def two_site_data(n: int = 64):
    rng = np.random.default_rng(2)
    pos = rng.normal(size=(n, 2, 3))
    return make_cg_dataset(pos, -pos + 0.1 * rng.normal(size=pos.shape),
                           (pos**2).sum((1, 2)), rng.uniform(250, 350, n))


def test_calculator_forces_equal_finite_differences(kernel):
    data = two_site_data()
    neural = NeuralFreeEnergy(np.ones((2, 3), bool), hidden=(16, 16), form="mlp", seed=3)
    neural.fit_scaling(data)
    atoms = make_cg_atoms(data["coordinates"].values[0], np.ones((2, 3), bool))
    check_forces_finite_difference(FreeEnergyCalculator(neural, temperature_K=280.0), atoms,
                                   delta=1e-5, rtol=1e-6, atol=1e-9)
    pos = np.array([[0.35, 0.0, 0.0]])
    cg = make_cg_atoms(pos, MASK_X)
    calc = FreeEnergyCalculator(kernel, temperature_K=320.0)
    analytic, _ = check_forces_finite_difference(calc, cg, delta=1e-5, rtol=1e-6, atol=1e-9,
                                                 mask=MASK_X)
    assert np.all(analytic[0, 1:] == 0)
    # the batched fast path gives the calculator's numbers
    e, f = calc.energy_and_forces(pos[None])
    cg.calc = calc
    assert e[0] == pytest.approx(cg.get_potential_energy(), abs=1e-12)
    np.testing.assert_allclose(f[0], cg.get_forces(apply_constraint=False), atol=1e-12)


class Distance(nn.Module):
    """Featurizer: the distance between the two sites, (n, 2, 3) -> (n, 1)."""

    def n_features(self, n_sites: int) -> int:
        return 1

    def forward(self, positions):
        return (positions[:, 0] - positions[:, 1]).norm(dim=1, keepdim=True)


def test_neural_model_with_a_featurizer():
    data = two_site_data()
    model = NeuralFreeEnergy(np.ones((2, 3), bool), hidden=(8,), featurizer=Distance(), seed=1)
    model.fit_scaling(data)
    assert model.n_features == 1
    pos = data["coordinates"].values[:3]
    temp = torch.full((3,), 300.0, dtype=torch.float64)
    a = model(torch.as_tensor(pos), temp)
    shifted = model(torch.as_tensor(pos + np.array([0.3, -1.0, 2.0])), temp)
    np.testing.assert_allclose(a.detach().numpy(), shifted.detach().numpy(), atol=1e-12)
    atoms = make_cg_atoms(pos[0], np.ones((2, 3), bool))
    analytic, _ = check_forces_finite_difference(
        FreeEnergyCalculator(model, temperature_K=300.0), atoms, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(analytic.sum(0), 0.0, atol=1e-12)   # no net force


def test_cg_md_fast_path_reproduces_ase_langevin(system):
    """One walker, same generator: run_cg_md's integrator is ASE's Langevin on
    the calculator (exact A at 250 K)."""
    model = system.exact_free_energy()
    params = LangevinParams(temperature_K=250.0, timestep_fs=2.0, friction_per_fs=0.05)
    start = np.array([[-0.8, 0.0, 0.0]])
    atoms = make_cg_atoms(start, MASK_X,
                          calculator=FreeEnergyCalculator(model, temperature_K=250.0))
    v0 = maxwell_boltzmann(atoms.get_masses(), 250.0, np.random.default_rng(4),
                           dof_mask=MASK_X)
    atoms.set_velocities(v0)
    ref = run_ase_langevin(atoms, 60, params, np.random.default_rng(9), stride=5)
    # run_cg_md draws its velocities from the same generator first
    fast = run_cg_md(model, 250.0, start[None], 60, rng=_Prepend(v0, 9), stride=5,
                     timestep_fs=2.0, friction_per_fs=0.05)
    np.testing.assert_allclose(fast[:, 0], ref["positions"], rtol=0, atol=1e-9)
    assert np.all(fast[:, 0, 0, 1:] == 0)


class _Prepend:
    """A generator stand-in: the first standard_normal call returns the velocity
    draw that reproduces ``v0`` (mass 1, T 250 K); later calls come from
    ``default_rng(seed)``."""

    def __init__(self, v0: np.ndarray, seed: int):
        sigma = np.sqrt(KB * 250.0 / 1.0)
        self.first = (v0 / sigma)[None]
        self.rng = np.random.default_rng(seed)

    def standard_normal(self, shape):
        if self.first is not None:
            out, self.first = self.first.reshape(shape), None
            return out
        return self.rng.standard_normal(shape)


# ------------------------------------------------------------------ training and errors
def test_training_with_registered_heads_reduces_losses(system):
    data = system.sample_cg_dataset(1500, T0, np.random.default_rng(6))
    model = NeuralFreeEnergy(MASK_X, hidden=(16, 16))
    hist = train_free_energy(model, data, {"force_matching": 1.0, "energy_matching": 1.0},
                             epochs=40, batch_size=100)
    assert {"loss", "loss_force_matching", "loss_energy_matching"} <= set(hist.data_vars)
    assert float(hist.loss[-1]) < 0.8 * float(hist.loss[0])
    assert float(model.temperature_ref) == pytest.approx(T0)
    x = np.linspace(-1.2, 1.0, 12)
    err = predictions(model, x)["forces"][:, 0, 0] - system.mean_force(x, T0)
    assert np.sqrt(np.mean(err**2)) < 0.5 * np.sqrt(np.mean(system.mean_force(x, T0) ** 2))


def test_bad_model_inputs_raise_clear_errors(kernel, exact_data):
    model = NeuralFreeEnergy(MASK_X, hidden=(4,))
    pos = torch.zeros(3, 1, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="temperature"):
        model(pos, torch.tensor([300.0, 0.0, 300.0], dtype=torch.float64))
    with pytest.raises(ValueError, match="temperature"):
        kernel(pos, torch.full((3,), -1.0, dtype=torch.float64))
    with pytest.raises(ValueError, match="positions"):
        model(torch.zeros(3, 2, 3, dtype=torch.float64), torch.full((3,), 300.0))
    with pytest.raises(ValueError, match="temperature_K"):
        FreeEnergyCalculator(model, temperature_K=0.0)
    with pytest.raises(ValueError, match="site_mask"):
        NeuralFreeEnergy(np.ones((2, 3), bool)).fit_scaling(exact_data)
    with pytest.raises(ValueError, match="length_scale"):
        KernelFreeEnergy(MASK_X, length_scale=-0.1)
    with pytest.raises(ValueError, match="energy_weight"):
        KernelFreeEnergy(MASK_X).fit(exact_data, force_weight=0.0, energy_weight=0.0)
    with pytest.raises(ValueError, match="form"):
        NeuralFreeEnergy(MASK_X, form="spline")
    with pytest.raises(PluginError, match="force_matchin"):
        train_free_energy(model, exact_data, {"force_matchin": 1.0}, epochs=1)
    with pytest.raises(ValueError, match="heads"):
        train_free_energy(model, exact_data, {}, epochs=1)
    bad = exact_data.copy()
    bad["temperature"] = bad["temperature"].copy(data=np.full(bad.sizes["frame"], -300.0))
    with pytest.raises(ValueError, match="temperature"):
        train_free_energy(model, bad, {"force_matching": 1.0}, epochs=1)
    with pytest.raises(ValueError, match="weight"):
        build_heads({"energy_matching": -1.0})
