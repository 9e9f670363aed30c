"""The exact thermodynamic test model (SCIENCE.md §4), the CG maps and the
CG dataset: closed forms against finite differences, exact samples against
the closed forms within Monte Carlo error (z-scores), and input checks."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import xarray as xr

from mtcv_ase.testing import check_forces_finite_difference
from mtcv_core import load_plugins
from mtcv_core.schema import SchemaError
from mtcv_thermo import (
    KB,
    CGMap,
    ThermoExactModel,
    make_cg_dataset,
    thermo_derivatives,
    validate_cg_dataset,
)

Z_MAX = 4.5  # |z| bound of the Monte Carlo checks (two-sided p ~ 7e-6 each)
TEMPS = (210.0, 300.0, 390.0)


@pytest.fixture(scope="module")
def system():
    return ThermoExactModel()


@pytest.fixture(scope="module")
def samples(system):
    """Exact samples at each temperature: {T: (x, mapped force, u)}."""
    rng = np.random.default_rng(11)
    out = {}
    for T in TEMPS:
        ds = system.sample_cg_dataset(40_000, T, rng)
        out[T] = (ds["coordinates"].values[:, 0, 0], ds["forces"].values[:, 0, 0],
                  ds["energy"].values)
    return out


def z_score(values: np.ndarray) -> float:
    return float(values.mean() / (values.std(ddof=1) / np.sqrt(len(values))))


def test_registered_as_system_plugin():
    registry = load_plugins()
    system = registry.create("system", "thermo_exact", temperature_K=250.0)
    assert isinstance(system, ThermoExactModel) and system.temperature_K == 250.0
    assert {"force_matching", "energy_matching", "second_cumulant"} <= set(
        registry.names("thermo_head"))
    assert not {"force_matching", "energy_matching"} & set(registry.names("loss_head"))


@pytest.mark.parametrize("T", TEMPS)
def test_closed_forms_are_derivatives_of_a(system, T):
    """-dA/dx, d(beta A)/d beta and -d^2(beta A)/d beta^2 by finite differences."""
    x = np.linspace(-1.8, 1.6, 9)
    h = 1e-5
    fd_force = -(system.free_energy(x + h, T) - system.free_energy(x - h, T)) / (2 * h)
    np.testing.assert_allclose(system.mean_force(x, T), fd_force, rtol=1e-6, atol=1e-9)
    beta = 1.0 / (KB * T)
    db = 1e-3 * beta

    def g(b):
        return b * system.free_energy(x, 1.0 / (KB * b))

    e1 = 1e-5 * beta
    np.testing.assert_allclose(system.mean_energy(x, T), (g(beta + e1) - g(beta - e1)) / (2 * e1),
                               rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(system.energy_variance(x, T),
                               -(g(beta + db) - 2 * g(beta) + g(beta - db)) / db**2,
                               rtol=1e-4, atol=1e-9)


@pytest.mark.parametrize("T", TEMPS)
def test_marginal_of_exact_samples(system, samples, T):
    """Bin counts of x against the closed-form marginal: per-bin z-scores."""
    x = samples[T][0]
    edges = np.linspace(-2.2, 2.0, 22)
    counts = np.histogram(x, edges)[0]
    p = system.bin_probabilities(edges, T)
    n = len(x)
    z = (counts - n * p) / np.sqrt(n * p * (1 - p))
    assert np.abs(z[p * n > 20]).max() < Z_MAX
    assert system.marginal(np.linspace(-4, 4, 4001), T).sum() * 0.002 == pytest.approx(1, abs=1e-3)


@pytest.mark.parametrize("T", TEMPS)
def test_conditional_identities_hold_on_exact_samples(system, samples, T):
    """<g(x) (f_map - <f|x>)> = 0, <g(x) (u - <u|x>)> = 0 and
    <g(x) ((u - <u|x>)^2 - Var(u|x))> = 0 for test functions g, within MC error."""
    x, f, u = samples[T]
    mean_u = system.mean_energy(x, T)
    for g in (np.ones_like(x), x, x**2 - 1.0):
        assert abs(z_score(g * (f - system.mean_force(x, T)))) < Z_MAX
        assert abs(z_score(g * (u - mean_u))) < Z_MAX
        assert abs(z_score(g * ((u - mean_u) ** 2 - system.energy_variance(x, T)))) < Z_MAX
    # the biased label: (u - E)^2 differs from u^2 - E^2 only by its mean, but the
    # conditional-mean check fails for a wrong variance (sensitivity of the test)
    wrong = 1.2 * system.energy_variance(x, T)
    assert abs(z_score((u - mean_u) ** 2 - wrong)) > Z_MAX


def test_fine_grained_forces_and_map(system):
    rng = np.random.default_rng(0)
    atoms = system.make_atoms("right")
    pos = system.sample(1, 300.0, rng)[0]
    atoms.set_positions(pos, apply_constraint=False)
    check_forces_finite_difference(atoms.calc, atoms, mask=system.dof_mask, rtol=1e-6,
                                   atol=1e-8)
    cg = system.cg_map()
    e, f = system.energy_and_forces(pos[None])
    assert cg.map_positions(pos)[0, 0] == pos.ravel()[0]
    assert cg.map_forces(f)[0, 0, 0] == f[0].ravel()[0]
    assert system.basin_index(pos[None])[0] == int(pos.ravel()[0] >= 0)


def test_exact_free_energy_module_and_autograd_derivatives(system):
    """The torch closed form and thermo_derivatives reproduce A, <f|x>, <u|x>, Var."""
    x = np.linspace(-1.5, 1.5, 7)
    pos = torch.zeros(len(x), 1, 3, dtype=torch.float64)
    pos[:, 0, 0] = torch.as_tensor(x)
    model = system.exact_free_energy()
    for T in TEMPS:
        out = thermo_derivatives(model, pos, torch.full((len(x),), T, dtype=torch.float64),
                                 variance=True)
        np.testing.assert_allclose(out["free_energy"].numpy(), system.free_energy(x, T),
                                   rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(out["forces"].numpy()[:, 0, 0], system.mean_force(x, T),
                                   rtol=1e-8, atol=1e-12)
        assert np.all(out["forces"].numpy()[:, 0, 1:] == 0)
        np.testing.assert_allclose(out["energy"].numpy(), system.mean_energy(x, T),
                                   rtol=1e-8, atol=1e-12)
        np.testing.assert_allclose(out["variance"].numpy(), system.energy_variance(x, T),
                                   rtol=1e-7, atol=1e-12)


# ---------------------------------------------------------------- CG maps
def test_slice_and_center_of_mass_maps_are_consistent():
    masses = np.array([12.0, 1.0, 1.0, 16.0, 1.0])
    com = CGMap.center_of_mass([[0, 1, 2], [3, 4]], masses)
    active = com.site_mask.ravel()
    np.testing.assert_allclose(com.force_matrix[active] @ com.coord_matrix[active].T,
                               np.eye(6), atol=1e-12)
    rng = np.random.default_rng(1)
    r = rng.normal(size=(4, 5, 3))
    f = rng.normal(size=(4, 5, 3))
    R = com.map_positions(r)
    np.testing.assert_allclose(R[:, 1], (16 * r[:, 3] + r[:, 4]) / 17)
    np.testing.assert_allclose(com.map_forces(f)[:, 0], f[:, :3].sum(1))
    # a rigid translation moves every site with it
    np.testing.assert_allclose(com.map_positions(r + 0.7) - R, 0.7, atol=1e-12)
    sl = CGMap.slice([3, 0], 5)
    np.testing.assert_array_equal(sl.map_positions(r), r[:, [3, 0]])
    np.testing.assert_array_equal(sl.map_forces(f), f[:, [3, 0]])
    # the default force map of a general linear map is consistent too
    gen = CGMap.from_atom_weights(np.array([[0.5, 0.5, 0, 0, 0], [0, 0.2, 0.3, 0.5, 0]]))
    a = gen.site_mask.ravel()
    np.testing.assert_allclose(gen.force_matrix[a] @ gen.coord_matrix[a].T, np.eye(6),
                               atol=1e-12)


def test_inconsistent_force_map_and_bad_shapes_raise():
    w = np.array([[0.5, 0.5, 0.0]])
    with pytest.raises(ValueError, match="force_matrix"):
        CGMap.from_atom_weights(w, w)     # D C^T = 1/2, not 1
    with pytest.raises(ValueError, match="groups"):
        CGMap.center_of_mass([[0, 1], [1, 2]], [1.0, 1.0, 1.0])
    with pytest.raises(ValueError, match="positions"):
        CGMap.slice([0], 3).map_positions(np.zeros((2, 4, 3)))


# ---------------------------------------------------------------- dataset checks
def small_dataset(**overrides):
    n = 5
    args = {"coordinates": np.zeros((n, 2, 3)), "forces": np.zeros((n, 2, 3)),
            "energy": np.zeros(n), "temperature": 300.0}
    args.update(overrides)
    return make_cg_dataset(args["coordinates"], args["forces"], args["energy"],
                           args["temperature"])


@pytest.mark.parametrize("field, value, match", [
    ("coordinates", np.zeros((5, 2)), "coordinates"),
    ("forces", np.zeros((5, 3, 3)), "forces"),
    ("energy", np.zeros(4), "energy"),
    ("temperature", np.zeros(5) + 300.0 * np.array([1, 1, 0, 1, 1]), "temperature"),
    ("temperature", -5.0, "temperature"),
    ("energy", np.array([0.0, np.nan, 0.0, 0.0, 0.0]), "energy"),
])
def test_bad_dataset_fields_raise_naming_the_field(field, value, match):
    with pytest.raises(SchemaError, match=match):
        small_dataset(**{field: value})
    assert issubclass(SchemaError, ValueError)


def test_dataset_netcdf_round_trip(system, tmp_path):
    ds = system.sample_cg_dataset(50, np.array([250.0] * 25 + [350.0] * 25),
                                  np.random.default_rng(2))
    assert ds["coordinates"].attrs["units"] == "angstrom"
    assert ds["forces"].attrs["units"] == "eV/angstrom"
    assert ds["energy"].attrs["units"] == "eV" and ds["temperature"].attrs["units"] == "K"
    path = tmp_path / "cg.nc"
    ds.to_netcdf(path)
    back = validate_cg_dataset(xr.load_dataset(path))
    xr.testing.assert_identical(back, ds)


def test_validate_names_missing_or_mislabelled_variables():
    ds = small_dataset()
    with pytest.raises(ValueError, match="'energy' is missing"):
        validate_cg_dataset(ds.drop_vars("energy"))
    bad = ds.copy()
    bad["forces"].attrs["units"] = "kcal/mol/A"
    with pytest.raises(ValueError, match="'forces' has units"):
        validate_cg_dataset(bad)


def test_system_rejects_bad_temperatures_and_parameters(system):
    rng = np.random.default_rng(0)
    for bad in (0.0, -10.0, np.nan):
        with pytest.raises(ValueError, match="temperature_K"):
            system.sample(3, bad, rng)
        with pytest.raises(ValueError, match="temperature_K"):
            system.free_energy(np.zeros(2), bad)
    with pytest.raises(ValueError, match="J0"):
        ThermoExactModel(J0=0.01, J1=0.03)
    with pytest.raises(ValueError, match="positions"):
        system.energy_and_forces(np.zeros((2, 3, 3)))
