"""OPES-metaD and well-tempered metadynamics (mtcv_opes, issue #21): the
reweighted PMF against an analytic F, the ASE calculator's purity between
updates, multiple walkers, resume after a kill, the schema contract."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr

sys.path.insert(0, str(Path(__file__).parent))
from opes_systems import (  # noqa: E402
    DoubleWell,
    XCoordinate,
    exact_delta_f,
    exact_f,
    start_frames,
)

from mtcv_core.interfaces import CollectiveVariable, MDSettings  # noqa: E402
from mtcv_opes import (  # noqa: E402
    HistoryBiasCalculator,
    MetadBias,
    MetadSampler,
    OpesBias,
    OpesSampler,
    ReweightEstimator,
    deposit_callback,
)
from mtcv_opes.bias import kernel_sum  # noqa: E402

MD = MDSettings(temperature_K=300.0, timestep_fs=2.0, friction_per_fs=0.01)
from mtcv_core.units import kT_eV  # noqa: E402

KT = kT_eV(300.0)


def _cv() -> CollectiveVariable:
    return CollectiveVariable(torch.jit.script(XCoordinate()), ("x",), "angstrom")


def _basins(s: np.ndarray) -> np.ndarray:
    return (s[:, 0] > 0).astype(int)


# OPES in the default suite; metaD and OPES-explore (10 s each) with the slow tests
# (benchmarks/slow_tests.py), to keep the default suite near 10 minutes
@pytest.mark.parametrize("sampler", [
    OpesSampler(n_walkers=4, n_steps=40000, pace=100, stride=10, barrier_eV=0.2),
    pytest.param(MetadSampler(n_walkers=4, n_steps=40000, pace=100, stride=10,
                              biasfactor=6.0), marks=pytest.mark.slow),
    pytest.param(OpesSampler(n_walkers=4, n_steps=40000, pace=100, stride=10, barrier_eV=0.2,
                             biasfactor=6.0, explore=True), marks=pytest.mark.slow),
], ids=["opes", "metad", "opes_explore"])
def test_reweighted_pmf_matches_the_analytic_double_well(sampler):
    """F(x) of the tilted double well by reweighting agrees with V(x) within
    the block-bootstrap errors; dF between the wells within 3 sigma of
    quadrature."""
    ds = sampler.run(DoubleWell(), _cv(), frames=start_frames(), transitions=[(0, 1)], md=MD,
                     seed=3)
    fes = ReweightEstimator(n_bins=40).estimate(ds, basin_of=_basins, basin_names=["A", "B"])
    x, f, err = fes["bin_center"].values, fes["pmf"].values, fes["pmf_err"].values
    exact = exact_f(x)
    # bins up to the barrier top (the lowest bin is the zero: no error)
    low = np.isfinite(f) & (exact - exact.min() < 0.15) & (err > 0)
    assert low.sum() >= 25
    offset = np.average(f[low] - exact[low], weights=1.0 / err[low] ** 2)
    z = (f[low] - exact[low] - offset) / err[low]
    assert np.mean(np.abs(z) < 2) >= 0.8, np.round(z, 1)
    assert np.median(np.abs(z)) < 1.3
    sel = {"basin_from": "A", "basin_to": "B"}
    d_f, d_err = float(fes["delta_F"].sel(sel)), float(fes["delta_F_err"].sel(sel))
    assert abs(d_f - exact_delta_f(300.0)) < 3 * d_err + 0.003, (d_f, d_err)
    assert 0 < d_err < 0.02
    # the convergence record ends at the full estimate
    assert float(fes["convergence_delta_F"].sel(sel)[-1]) == pytest.approx(d_f, abs=1e-9)


def test_ase_calculator_bias_changes_only_at_the_step_callback():
    system = DoubleWell()
    bias = OpesBias(dim=1, kT=KT, barrier_eV=0.2, sigma=0.1)
    bias.update(np.array([[-1.0], [-0.9]]))
    atoms = system.make_atoms("A")
    atoms.calc = HistoryBiasCalculator(atoms.calc, torch.jit.script(XCoordinate()), bias)
    atoms.positions[0, 0] = -0.8
    e1, f1 = atoms.get_potential_energy(), atoms.get_forces().copy()
    for _ in range(3):  # asking again changes nothing
        assert atoms.get_potential_energy() == e1
        np.testing.assert_array_equal(atoms.get_forces(), f1)
    # forces are -dE/dx (finite differences on the biased energy)
    from mtcv_ase.testing import check_forces_finite_difference

    check_forces_finite_difference(atoms.calc, atoms)
    version = bias.version
    deposit_callback(bias, atoms)()                   # the explicit update step
    assert bias.version == version + 1
    e2, f2 = atoms.get_potential_energy(), atoms.get_forces()
    assert e2 != e1 and not np.allclose(f2, f1)       # the calculator saw the new bias
    v, _ = bias.evaluate(np.array([[-0.8]]))
    assert atoms.calc.results["bias_energy"] == pytest.approx(float(v[0]), abs=1e-12)
    assert atoms.calc.results["unbiased_energy"] == pytest.approx(e2 - float(v[0]), abs=1e-12)


def test_ase_engine_runs_the_same_algorithm():
    """The ASE path (each walker an Atoms with the calculator, the bias
    updated by the callback) deposits as many kernels and gives the same
    dF within errors as the batched path."""
    kw = dict(n_walkers=2, n_steps=3000, pace=100, stride=10, barrier_eV=0.2)
    ase = OpesSampler(engine="ase", **kw).run(DoubleWell(), _cv(), frames=start_frames(),
                                              transitions=[(0, 1)], md=MD, seed=4)
    assert int(ase.attrs["kernels_deposited"]) == 2 * 3000 // 100
    assert np.isfinite(ase["log_weight"].values).all()
    # the bias recorded is the bias of the final kernels' history: rebuilding it
    # from the recorded CV at each deposit gives the same kernels
    fast = OpesSampler(engine="fast", **kw).run(DoubleWell(), _cv(), frames=start_frames(),
                                                transitions=[(0, 1)], md=MD, seed=4)
    assert int(fast.attrs["kernels_deposited"]) == int(ase.attrs["kernels_deposited"])
    assert {k: v for k, v in ase.sizes.items() if k != "kernel"} == \
        {k: v for k, v in fast.sizes.items() if k != "kernel"}


@pytest.mark.parametrize("make", [
    lambda: OpesBias(dim=1, kT=KT, barrier_eV=0.2, sigma=0.1),
    lambda: MetadBias(dim=1, kT=KT, height_eV=0.01, sigma=0.1, biasfactor=6.0,
                      grid_min=-2, grid_max=2)], ids=["opes", "metad"])
def test_multiple_walkers_deposit_what_each_walker_would(make):
    """N walkers sharing a bias deposit N kernels per pace, each at its own
    walker's CV: replaying the recorded CV of every walker at the deposit
    steps into a fresh bias gives the run's final kernels exactly."""
    n_walkers, pace, stride = 4, 100, 50
    cls = OpesSampler if isinstance(make(), OpesBias) else MetadSampler
    kw = dict(barrier_eV=0.2) if cls is OpesSampler else dict(biasfactor=6.0, height_eV=0.01,
                                                               sigma=0.1)
    if cls is OpesSampler:
        kw["sigma"] = 0.1
    ds = cls(n_walkers=n_walkers, n_steps=2000, pace=pace, stride=stride, **kw).run(
        DoubleWell(), _cv(), frames=start_frames(), transitions=[(0, 1)], md=MD, seed=5)
    assert int(ds.attrs["kernels_deposited"]) == n_walkers * 2000 // pace
    deposit_rows = (np.arange(ds.sizes["sample"]) + 1) * stride % pace == 0
    replay = make()
    for row in np.flatnonzero(deposit_rows):
        replay.update(ds["cv_values"].values[:, row, :])
    np.testing.assert_allclose(replay.centers, ds["kernel_center"].values, rtol=0, atol=1e-12)
    # metaD heights read V off the sampler's grid (its range from the frames), the
    # replay off its own: equal to the interpolation error
    np.testing.assert_allclose(replay.heights, ds["kernel_height"].values,
                               rtol=1e-10 if cls is OpesSampler else 2e-3)
    # and one walker's bias is not the shared bias: the others' kernels are in it
    single = make()
    for row in np.flatnonzero(deposit_rows):
        single.update(ds["cv_values"].values[:1, row, :])
    assert single.n_deposited * n_walkers == replay.n_deposited


def test_opes_bias_follows_the_definition():
    """V = (1 - 1/gamma) kT ln(P/Z + eps) with P the weighted kernel density
    and Z its mean over the kernels; the gradient matches finite differences;
    compression merges a kernel within one width."""
    bias = OpesBias(dim=1, kT=KT, barrier_eV=0.3, sigma=0.2, compression_threshold=1.0)
    bias.update(np.array([[0.0]]))
    bias.update(np.array([[0.05]]))        # within a width: merged
    assert len(bias.heights) == 1 and bias.n_deposited == 2
    bias.update(np.array([[1.0]]))         # far: a second kernel
    assert len(bias.heights) == 2
    s = np.linspace(-1, 2, 31)[:, None]
    k, _ = kernel_sum(s, bias.centers, bias.sigmas, bias.heights, bias.periods, bias.cutoff)
    p = k / bias.sum_w
    pc, _ = kernel_sum(bias.centers, bias.centers, bias.sigmas, bias.heights, bias.periods,
                       bias.cutoff)
    z = np.mean(pc / bias.sum_w)
    v, dv = bias.evaluate(s)
    np.testing.assert_allclose(v, bias.prefactor * np.log(p / z + bias.epsilon), rtol=1e-12)
    h = 1e-6
    num = (bias.evaluate(s + h)[0] - bias.evaluate(s - h)[0]) / (2 * h)
    np.testing.assert_allclose(dv[:, 0], num, rtol=1e-5, atol=1e-7)
    assert v.min() >= -bias.barrier - 1e-9


@pytest.mark.parametrize("periods", [None, [0.0, 2 * np.pi]])
def test_metad_grid_matches_the_sum_over_kernels(periods):
    """The tabulated bias (sigma / 5 nodes, multilinear) against the exact sum
    over every kernel, in 2D, inside and outside the grid."""
    rng = np.random.default_rng(0)
    bias = MetadBias(dim=2, kT=KT, height_eV=0.01, sigma=[0.3, 0.25], biasfactor=8.0,
                     grid_min=[-2, -3], grid_max=[2, 3], periods=periods)
    for _ in range(20):
        bias.update(rng.uniform([-1.5, -2.5], [1.5, 2.5], size=(4, 2)))
    s = rng.uniform([-2.5, -3.2], [2.5, 3.2], size=(500, 2))
    v, g = bias.evaluate(s)
    ve, ge = bias.evaluate_exact(s)
    scale = np.abs(ve).max()
    np.testing.assert_allclose(v, ve, atol=2e-3 * scale)
    np.testing.assert_allclose(g, ge, atol=2e-2 * np.abs(ge).max())
    assert np.isfinite(bias.c_t) and bias.c_t > 0


def test_opes_explore_estimates_the_sampled_distribution():
    """OPES-explore: every kernel weighs 1 whatever the bias, the density is
    normalised by their number, and V = (gamma - 1) kT ln(P/Z + eps) with
    eps = exp(-dE / ((gamma - 1) kT))."""
    bias = OpesBias(dim=1, kT=KT, barrier_eV=0.3, sigma=0.2, biasfactor=5.0, explore=True,
                    compression_threshold=0.0)
    for x in (0.0, 0.4, 1.5):
        bias.update(np.array([[x]]))
    assert bias.sum_w == 3.0 and bias.n_deposited == 3
    assert bias.prefactor == pytest.approx(4.0 * KT)
    assert bias.epsilon == pytest.approx(np.exp(-0.3 / (4.0 * KT)))
    # heights: 1 times the width ratio of the moment of deposit, not exp(beta V)
    ratios = [np.prod(bias.sigma0 / s) for s in bias.sigmas]
    np.testing.assert_allclose(bias.heights, ratios, rtol=1e-12)
    s = np.linspace(-1, 2.5, 15)[:, None]
    k, _ = kernel_sum(s, bias.centers, bias.sigmas, bias.heights, bias.periods, bias.cutoff)
    v, _ = bias.evaluate(s)
    np.testing.assert_allclose(v, 4.0 * KT * np.log(k / 3.0 / bias.zed + bias.epsilon),
                               rtol=1e-12)


def test_periodic_cv_kernels_wrap():
    bias = MetadBias(dim=1, kT=KT, height_eV=0.01, sigma=0.3, biasfactor=5.0, grid_min=0,
                     grid_max=1, periods=2 * np.pi)
    bias.update(np.array([[np.pi - 0.05]]))
    v1, _ = bias.evaluate(np.array([[-np.pi + 0.05]]))   # 0.1 away through the boundary
    v2, _ = bias.evaluate(np.array([[np.pi - 0.15]]))    # 0.1 away inside
    assert v1[0] == pytest.approx(v2[0], rel=1e-3)
    e1, _ = bias.evaluate_exact(np.array([[-np.pi + 0.05]]))
    e2, _ = bias.evaluate_exact(np.array([[np.pi - 0.15]]))
    assert e1[0] == pytest.approx(e2[0], rel=1e-10)


_RUN = """
import sys, numpy as np, torch
sys.path.insert(0, {tests!r})
from opes_systems import DoubleWell, XCoordinate, start_frames
from mtcv_core.interfaces import CollectiveVariable, MDSettings
from mtcv_core.io import write_dataset
from mtcv_opes import OpesSampler
cv = CollectiveVariable(torch.jit.script(XCoordinate()), ("x",), "angstrom")
s = OpesSampler(n_walkers=3, n_steps=12000, pace=100, stride=20, barrier_eV=0.2,
                checkpoint_every=1000)
ds = s.run(DoubleWell(), cv, frames=start_frames(), transitions=[(0, 1)],
           md=MDSettings(300.0, 2.0, 0.01), seed=11, store={store!r})
write_dataset(ds, {out!r})
"""


def test_a_killed_run_resumes_to_the_uninterrupted_result(tmp_path):
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONHASHSEED": "0"}

    def script(store: Path, out: Path) -> list[str]:
        return [sys.executable, "-c", _RUN.format(tests=tests, store=str(store), out=str(out))]

    ref = subprocess.run(script(tmp_path / "ref_store", tmp_path / "ref.nc"), env=env,
                         capture_output=True, text=True, timeout=600)
    assert ref.returncode == 0, ref.stderr[-2000:]
    store = tmp_path / "store"
    proc = subprocess.Popen(script(store, tmp_path / "killed.nc"), env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = store / "checkpoint.npz"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if checkpoint.exists():
            with np.load(checkpoint) as data:
                step = json.loads(str(data["meta"]))["step"]
            if step >= 4000:
                break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "killed.nc").exists()
    with np.load(checkpoint) as data:   # the checkpoint on disk is whole
        killed_at = json.loads(str(data["meta"]))["step"]
    assert 4000 <= killed_at < 12000
    again = subprocess.run(script(store, tmp_path / "resumed.nc"), env=env,
                           capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-2000:]
    with xr.open_dataset(tmp_path / "ref.nc") as a, xr.open_dataset(tmp_path / "resumed.nc") as b:
        xr.testing.assert_identical(a.load(), b.load())


def test_a_checkpoint_of_other_options_is_not_resumed(tmp_path):
    kw = dict(n_walkers=2, n_steps=400, pace=100, stride=20, checkpoint_every=200)
    OpesSampler(barrier_eV=0.2, **kw).run(DoubleWell(), _cv(), frames=start_frames(),
                                          transitions=[(0, 1)], md=MD, seed=1, store=tmp_path)
    assert (tmp_path / "checkpoint.npz").exists()
    with pytest.warns(RuntimeWarning, match="other options"):
        OpesSampler(barrier_eV=0.3, **kw).run(DoubleWell(), _cv(), frames=start_frames(),
                                              transitions=[(0, 1)], md=MD, seed=1,
                                              store=tmp_path)


def test_reweighting_along_a_recorded_observable():
    """The true CV is recorded: reweighting along it (here the same x) gives
    the PMF along the CV; an unknown observable is named."""
    ds = OpesSampler(n_walkers=2, n_steps=4000, pace=100, stride=10, barrier_eV=0.2).run(
        DoubleWell(), _cv(), frames=start_frames(), transitions=[(0, 1)], md=MD, seed=2)
    assert list(ds["observable"].values) == ["x"]
    a = ReweightEstimator(n_bins=20, n_bootstraps=0).estimate(ds)
    b = ReweightEstimator(n_bins=20, n_bootstraps=0, along="x").estimate(ds)
    np.testing.assert_allclose(a["pmf"].values, b["pmf"].values, equal_nan=True)
    with pytest.raises(ValueError, match="'phi' is not a recorded observable"):
        ReweightEstimator(along="phi").estimate(ds)


def test_an_estimator_that_cannot_read_the_samples_is_refused_before_running(tmp_path):
    from mtcv_core.config import ConfigError
    from mtcv_core.pipeline import run_pipeline

    cfg = tmp_path / "c.toml"
    cfg.write_text('system = "muller_brown_5d"\n[umbrella]\nsampler = "opes"\n'
                   '[estimate]\nestimator = "mbar"\n')
    with pytest.raises(ConfigError, match=r"estimate.estimator: 'mbar' reads mtcv.umbrella/1 "
                                          r".*writes mtcv.biased/1.*'reweight'"):
        run_pipeline(cfg, out=tmp_path / "o", progress=False)
    assert not (tmp_path / "o" / "data.nc").exists()


def test_the_pipeline_runs_opes_through_the_interfaces(tmp_path):
    """`[umbrella] sampler = "opes"` with `[estimate] estimator = "reweight"`
    end to end on tiny settings: biased samples, a free-energy dataset with
    the transitions, the PLUMED input and a PYTORCH_MODEL file that gives
    the run's CV from flat positions in nm."""
    from test_pipeline import TINY, mtcv

    from mtcv_core.io import read_dataset
    from mtcv_core.schema_biased import BIASED_SCHEMA

    cfg = tmp_path / "opes.toml"
    cfg.write_text(TINY + """
[train]
epochs = 6
warmup_epochs = 2
batch_size = 256
heads = { classifier = {}, energy = { n_bins = 1 } }
[umbrella]
sampler = "opes"
reference = false
sampler_options = { n_walkers = 4, n_steps = 2000, pace = 100, stride = 20, barrier_eV = 1.0 }
[estimate]
estimator = "reweight"
options = { n_bins = 20, n_bootstraps = 10 }
""")
    res = mtcv("run", str(cfg), "--out", str(tmp_path / "o"), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    out = tmp_path / "o"
    samples = read_dataset(out / "umbrella.nc")
    assert samples.attrs["mtcv_schema"] == BIASED_SCHEMA and samples.sizes["walker"] == 4
    fes = read_dataset(out / "fes.nc")
    assert fes.attrs["estimator"] == "reweight" and "convergence_delta_F" in fes
    summary = json.loads((out / "summary.json").read_text())
    assert summary["umbrella_walkers"] == 4 and "umbrella_windows" not in summary
    assert sorted(summary["umbrella_files"]) == ["cv_plumed.pt", "plumed.dat"]
    row = summary["transitions"][0]
    # 2000 steps do not cross: a basin without samples has no dF (nor has the
    # exact PMF on the bins the samples cover)
    assert {"delta_F_eV", "exact_delta_F_eV", "barrier_eV"} <= set(row)
    plumed = (out / "plumed.dat").read_text()
    assert "OPES_METAD ARG=cv.node-0 PACE=100" in plumed and "PYTORCH_MODEL" in plumed
    assert "p2: POSITION ATOM=2 NOPBC" in plumed
    wrapped = torch.jit.load(str(out / "cv_plumed.pt"))
    cv = torch.jit.load(str(out / "cv.ts")).to(torch.float64)
    pos = torch.as_tensor(read_dataset(out / "data.nc")["coordinates"].values[:5])
    flat_nm = (pos / 10.0).reshape(5, -1)
    np.testing.assert_allclose(np.concatenate([wrapped(flat_nm[i:i + 1]).detach().numpy()
                                               for i in range(5)]),
                               cv(pos).detach().numpy(), rtol=1e-10, atol=1e-12)
    assert (out / "report.md").exists()
    assert (out / "figures" / "fes_convergence.png").stat().st_size > 10000
    assert "fes_convergence.png" in (out / "report.md").read_text()


def test_spectator_moves_need_periodic_spectators_and_the_batched_engine():
    from mtcv_core.config import ConfigError

    with pytest.raises(ConfigError, match="spectator_moves: system 'double_well_1d' declares "
                                          "no periodic spectator"):
        OpesSampler(spectator_moves=10).check(DoubleWell())
    from mtcv_core.plugins import build_component, load_plugins

    mb = build_component(load_plugins(), "system", "muller_brown_5d", {}, "system")
    OpesSampler(spectator_moves=10).check(mb)   # the 5D models have two periodic angles


def test_run_bias_names_a_walker_run_instead_of_failing_on_windows(tmp_path):
    """`Run.bias(window=...)` on a run sampled by walkers says so."""
    from mtcv_core.io import write_dataset
    from mtcv_core.run import Run

    ds = OpesSampler(n_walkers=2, n_steps=400, pace=100, stride=20, barrier_eV=0.2).run(
        DoubleWell(), _cv(), frames=start_frames(), transitions=[(0, 1)], md=MD, seed=1)
    write_dataset(ds, tmp_path / "umbrella.nc")
    (tmp_path / "summary.json").write_text(json.dumps({"config": {"system": "muller_brown_5d"},
                                                       "stages_done": ["umbrella"]}))
    run = Run(tmp_path)
    with pytest.raises(ValueError, match="sampled with 'opes': walkers under one "
                                         "history-dependent bias"):
        run.bias(window=0)


def test_biased_schema_round_trip_and_named_problems(tmp_path):
    """mtcv.biased/1 survives netCDF unchanged; a broken dataset is refused
    on reading with every problem named."""
    from mtcv_core.io import read_dataset, write_dataset
    from mtcv_core.schema import SchemaError
    from mtcv_core.schema_biased import make_biased_dataset

    rng = np.random.default_rng(0)
    ds = make_biased_dataset(rng.normal(size=(3, 10, 1)), rng.normal(size=(3, 10)),
                             rng.normal(size=(3, 10)), np.arange(1, 11) * 5.0,
                             temperature_K=300.0, method="test", cv_names=["xi"],
                             energy=rng.normal(size=(3, 10)),
                             observables=rng.normal(size=(3, 10, 2)),
                             observable_names=["phi", "psi"], observable_units="radian",
                             observable_periods=[2 * np.pi, 2 * np.pi], transient_fs=10.0)
    write_dataset(ds, tmp_path / "b.nc")
    xr.testing.assert_identical(read_dataset(tmp_path / "b.nc").load(), ds)
    bad = ds.drop_vars("log_weight")
    bad["bias"].attrs["units"] = "kJ/mol"
    bad = bad.assign_coords(time=("sample", ds["time"].values[::-1]))
    write_dataset(bad, tmp_path / "bad.nc")
    with pytest.raises(SchemaError) as err:
        read_dataset(tmp_path / "bad.nc")
    text = str(err.value)
    assert "bad.nc" in text and "'log_weight' is missing" in text
    assert "'bias' has units 'kJ/mol', expected 'eV'" in text and "'time' must increase" in text
