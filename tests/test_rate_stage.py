"""The rate stage (#20): ``[rate] enabled = true`` runs the rate estimator
after the estimate stage, writes ``rates.nc`` (``mtcv.rates/1``), the
summary rows, a report section and a figure; it resumes from its parts.

The CV is x~ of the reduced-barrier 5D Muller-Brown (``train.cv_file``), a
linear CV of unit gradient on atoms of mass 1 amu, so the flux factor
``<|grad xi|_M>`` is 1 exactly."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import xarray as xr
from test_imported_cv import TrueXTilde
from test_pipeline import TINY, mtcv

from mtcv_core.io import read_dataset
from mtcv_core.schema import SchemaError
from mtcv_core.schema_rates import rates_table, validate_rates
from mtcv_core.units import kT_eV
from mtcv_systems import MullerBrown5D

RATE = """
[rate]
enabled = true
[rate.options]
max_configs = 24
n_starts = 8
surface = { walkers = 8, equilibration_steps = 200, n_steps = 800, stride = 20 }
shots = { shots = 4, n_steps = 3000, record_every = 50 }
brute_force = { walkers = 64, n_steps = 4000, walkers_per_task = 32, check_every = 20 }
"""


@pytest.fixture(scope="module")
def rate_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("rate")
    system = MullerBrown5D(energy_scale=0.2)
    torch.jit.script(TrueXTilde(system.true_cv_module())).save(str(root / "xt.ts"))
    config = TINY.replace('system = "muller_brown_5d"', 'system = "muller_brown_5d"\n'
                          'system_options = { energy_scale = 0.2 }') + f"""
[train]
cv_file = "{root / 'xt.ts'}"
[umbrella]
reference = false
sampler_options = {{ n_windows = 10, max_refinements = 1, walkers_per_window = 4, \
n_steps = 1000, equilibration_steps = 100, stride = 10, windows_per_task = 10 }}
[estimate]
options = {{ n_bins = 20, n_bootstraps = 10 }}
""" + RATE
    (root / "rate.toml").write_text(config)
    res = mtcv("run", str(root / "rate.toml"), "--out", str(root / "o"), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    return root


def test_rate_stage_writes_rates_summary_report_and_figure(rate_run):
    out = rate_run / "o"
    rates = validate_rates(read_dataset(out / "rates.nc"))
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages_done"][summary["stages_done"].index("estimate") + 1] == "rate"
    rows = summary["rates"]
    assert [(r["from"], r["to"]) for r in rows] == [("A", "B"), ("B", "A")]
    for r in rows:
        assert 0.0 < r["kappa"] <= 1.05 and r["kappa_err"] > 0
        assert r["rate_per_s"] == pytest.approx(r["kappa"] * r["rate_tst_per_s"], rel=1e-9)
        assert r["rate_err_per_s"] > 0 and r["mfpt_s"] == pytest.approx(1 / r["rate_per_s"])
        assert r["reference_rate_lo_per_s"] <= r["reference_rate_per_s"] \
            <= r["reference_rate_hi_per_s"]
        assert 0.0 <= r["committor_mean"] <= 1.0
    # forward and reverse committors see the same configurations from both ends
    assert rows[0]["committor_mean"] + rows[1]["committor_mean"] == pytest.approx(1.0)
    # the flux term of a linear CV of unit gradient on 1 amu atoms
    np.testing.assert_allclose(rates["mean_grad_norm"].values, 1.0, atol=1e-9)
    # TST detailed balance: k_AB P_A = k_BA P_B with P the PMF's weight on either side
    fes = read_dataset(out / "fes.nc")
    c, f = fes["bin_center"].values, fes["pmf"].values
    xs = float(rates["xi_star"].values[0])
    ok = np.isfinite(f)
    kt = kT_eV(300.0)
    w = np.exp(-(f[ok] - np.nanmin(f)) / kt)
    side_a = w[c[ok] < xs].sum()
    side_b = w[c[ok] > xs].sum()
    ratio = rows[0]["rate_tst_per_s"] / rows[1]["rate_tst_per_s"]
    assert ratio == pytest.approx(side_b / side_a, rel=1e-6)
    # recorded: the dynamics of the shots
    assert rates.attrs["thermostat"] == "Langevin"
    assert rates.attrs["friction_per_fs"] == 0.01 and rates.attrs["timestep_fs"] == 1.0
    report = (out / "report.md").read_text()
    assert "## Rates along xi" in report and "| A->B |" in report
    assert "Committor test: at xi*" in report
    assert (out / "figures" / "rates.png").stat().st_size > 10_000
    from mtcv_core.run import Run

    run = Run(out)
    xr.testing.assert_identical(run.rates, rates)
    assert run.rate_table == rows and "rates" in run.figures


def test_rate_stage_resumes_from_its_parts(rate_run, tmp_path):
    """rates.nc removed: the stage runs again from the stored transitions and
    brute-force reference, and gives the identical dataset."""
    out = tmp_path / "o"
    shutil.copytree(rate_run / "o", out)
    before = read_dataset(out / "rates.nc")
    parts = sorted(p.name for p in (out / "rate_parts").iterdir())
    assert [p.rsplit("_", 1)[0] for p in parts] == ["brute_force", "transition_A_B"]
    (out / "rates.nc").unlink()
    res = mtcv("run", str(rate_run / "rate.toml"), "--out", str(out), "--resume", "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    after = read_dataset(out / "rates.nc")
    xr.testing.assert_identical(before, after)
    assert sorted(p.name for p in (out / "rate_parts").iterdir()) == parts  # reused


def _run_inputs(rate_run):
    """The run's config, its CV (float64) and its training frames with xi, as
    the rate stage hands them to the estimator."""
    from mtcv_core.export import load_cv
    from mtcv_core.interfaces import StartFrames
    from mtcv_core.io import read_frames
    from mtcv_core.pipeline import load_config
    from mtcv_core.stages.common import evaluate_cv, split

    cfg, _ = load_config(rate_run / "rate.toml")
    train = split(read_frames(rate_run / "o" / "data.nc"), "train")
    cv = load_cv(rate_run / "o" / "cv.ts").to(torch.float64)
    frames = StartFrames(train["coordinates"].values,
                         evaluate_cv(cv, train["coordinates"].values),
                         train["label"].values, train["masses"].values)
    return cfg, cv, frames


def test_a_rate_part_from_other_inputs_is_not_reused(rate_run, tmp_path):
    """The stored parts are keyed by what they were computed from: the
    estimator called on the run's store with another PMF (shifted on one
    side of xi*) computes the transition afresh, k_TST changes by exactly the
    shift's Boltzmann factor one way, and the brute-force reference (which
    does not depend on the PMF) is reused."""
    from mtcv_core.interfaces import CollectiveVariable, MDSettings
    from mtcv_rates import ReactiveFluxRates

    store = tmp_path / "parts"
    shutil.copytree(rate_run / "o" / "rate_parts", store)
    before = read_dataset(rate_run / "o" / "rates.nc")
    fes = read_dataset(rate_run / "o" / "fes.nc")
    xs = float(before["xi_star"].values[0])
    shifted = fes.copy()
    shifted["pmf"] = fes["pmf"] - 0.01 * (fes["bin_center"] > xs + 1e-9)
    cfg, cv, frames = _run_inputs(rate_run)
    system = MullerBrown5D(energy_scale=0.2)
    after = ReactiveFluxRates(**cfg.rate["options"]).rates(
        system, CollectiveVariable(cv, ("xi",)), shifted, frames=frames,
        transitions=[(0, 1)], md=MDSettings(300.0), seed=cfg.seed, store=store)
    parts = sorted(p.name for p in store.iterdir())
    assert len([p for p in parts if p.startswith("transition_A_B")]) == 2
    assert len([p for p in parts if p.startswith("brute_force")]) == 1
    np.testing.assert_array_equal(after["reference_rate"].values,
                                  before["reference_rate"].values)
    # B's side lowered: the top (xi*) stays, the surface configurations too
    # (same seed), so k_TST(A->B) is unchanged and k_TST(B->A) drops by
    # exactly exp(-0.01 eV / kT)
    kt = kT_eV(300.0)
    assert float(after["xi_star"].values[0]) == xs
    assert after["rate_tst"].values[0] == pytest.approx(before["rate_tst"].values[0], rel=1e-12)
    assert after["rate_tst"].values[1] / before["rate_tst"].values[1] == pytest.approx(
        np.exp(-0.01 / kt), rel=1e-9)


def test_a_basin_the_pmf_does_not_reach_is_located_by_its_frames(rate_run, tmp_path):
    """A CV along which the estimator found no bin of basin A (basin_minimum
    NaN): the rate estimator places A at the median xi of its labelled
    frames, says so, and still gives rates."""
    from mtcv_core.interfaces import CollectiveVariable, MDSettings
    from mtcv_rates import ReactiveFluxRates

    fes = read_dataset(rate_run / "o" / "fes.nc")
    fes["basin_minimum"].values[0, 0] = np.nan
    cfg, cv, frames = _run_inputs(rate_run)
    options = {**cfg.rate["options"], "brute_force": None}
    xi = frames.cv_values
    with pytest.warns(RuntimeWarning, match=r"no bin in basin 'A'.*median over its labelled "
                                            r"frames"):
        rates = ReactiveFluxRates(**options).rates(
            MullerBrown5D(energy_scale=0.2), CollectiveVariable(cv, ("xi",)), fes,
            frames=frames, transitions=[(0, 1)], md=MDSettings(300.0), seed=cfg.seed,
            store=tmp_path)
    validate_rates(rates)
    assert np.all(rates["rate"].values > 0)
    median_a = np.median(xi[frames.labels == 0, 0])
    lo, hi = sorted((median_a, float(fes["basin_minimum"].values[1, 0])))
    assert lo < float(rates["xi_star"].values[0]) < hi


def test_a_disabled_rate_stage_does_nothing(tmp_path):
    from mtcv_core.pipeline import STAGES

    assert STAGES.index("rate") == STAGES.index("estimate") + 1


def test_rates_schema_names_what_is_wrong():
    ds = xr.Dataset({"rate": ("transition", [-1.0], {"units": "1/s"}),
                     "kappa": ("transition", [0.5], {"units": "1"})},
                    coords={"basin_from": ("transition", ["A"]),
                            "basin_to": ("transition", ["B"])})
    with pytest.raises(SchemaError) as err:
        validate_rates(ds, where="mine")
    text = str(err.value)
    for needle in ("mine", "mtcv_schema", "temperature_K", "'rate_err' is missing",
                   "'rate_tst' is missing", "1 negative entries"):
        assert needle in text, needle
    table = rates_table(ds)
    assert table[0]["rate_per_s"] == -1.0 and table[0]["kappa"] == 0.5
    assert table[0]["reference_rate_per_s"] is None and not math.isnan(table[0]["mfpt_s"])


def test_the_committor_verdict_reads_a_committor_of_zero():
    """A CV whose xi* sends every shot back to A (mean 0, spread 0: the
    autoencoder baseline of benchmarks/rates.py) is no reaction coordinate;
    a mean of 0 is a number, not a missing value."""
    from mtcv_core.stages.report import _rate_lines

    row = {"from": "A", "to": "B", "rate_per_s": 1.0, "rate_err_per_s": 0.1,
           "rate_tst_per_s": 2.0, "rate_tst_err_per_s": 0.2, "kappa": 0.5,
           "kappa_err": 0.1, "committor_mean": 0.0, "committor_std": 0.0}
    text = "\n".join(_rate_lines([row, {**row, "from": "B", "to": "A",
                                        "committor_mean": 1.0}]))
    assert "off 1/2 by 0.50" in text and "not an ideal reaction coordinate" in text
    good = "\n".join(_rate_lines([{**row, "committor_mean": 0.45, "committor_std": 0.1}]))
    assert "close to an ideal reaction coordinate" in good
