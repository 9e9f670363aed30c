"""`mtcv run` end to end on tiny settings."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtcv_core.io import read_frames
from mtcv_core.pipeline import load_config
from mtcv_umbrella.schema import read_window

TINY = """
name = "tiny"
system = "muller_brown_5d"
seed = 5
[execution]
workers = 1
[sample]
test_fraction = 0.25
[sample.sources.basin_md]
trajectories_per_basin = 4
n_steps = 200
stride = 10
equilibration_steps = 50
walkers_per_task = 2
[sample.sources.tps]
chains = 2
shots_per_chain = 2
burn_in_shots = 1
stride = 20
walkers_per_task = 1
shooting_energy_width_eV = 0.05
max_segment_steps = 5000
"""


def mtcv(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mtcv_core.cli", *args], capture_output=True,
                          text=True, timeout=600, cwd=cwd)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("run")
    (root / "tiny.toml").write_text(TINY)
    out = mtcv("run", str(root / "tiny.toml"), "--out", str(root / "out"), "--until", "sample",
               "--quiet")
    assert out.returncode == 0, out.stderr
    return root


def test_sample_stage_outputs(tiny_run):
    out = tiny_run / "out"
    summary = json.loads((out / "summary.json").read_text())
    assert summary["system"] == "muller_brown_5d" and summary["temperature_K"] == 300.0
    assert summary["stages_done"] == ["sample"]
    data = read_frames(out / "data.nc")
    assert summary["n_train"] + summary["n_test"] == data.sizes["frame"]
    assert summary["n_test"] > 0 and summary["n_train"] > 0
    assert set(summary["frame_counts"]["train"]) == {"basin_md", "tps"}
    assert (out / "figures" / "data.png").stat().st_size > 10000
    assert json.loads(data.attrs["config"])["seed"] == 5
    # no temporary files are left behind
    assert not list(out.rglob("*.tmp"))


def test_existing_run_needs_resume(tiny_run):
    out = mtcv("run", str(tiny_run / "tiny.toml"), "--out", str(tiny_run / "out"),
               "--until", "sample", "--quiet")
    assert out.returncode == 2
    assert "pass --resume" in out.stderr
    again = mtcv("run", str(tiny_run / "tiny.toml"), "--out", str(tiny_run / "out"),
                 "--until", "sample", "--resume", "--quiet")
    assert again.returncode == 0, again.stderr
    first = read_frames(tiny_run / "out" / "data.nc")
    assert first.sizes["frame"] == json.loads(again.stdout)["n_train"] + json.loads(
        again.stdout)["n_test"]


def test_resume_reuses_finished_parts(tiny_run, tmp_path):
    """A run interrupted after some source parts were saved reuses them."""
    import shutil

    out = tmp_path / "out"
    shutil.copytree(tiny_run / "out" / "sample", out / "sample")
    (out / "sample" / "tps_test.nc").unlink()
    res = mtcv("run", str(tiny_run / "tiny.toml"), "--out", str(out), "--until", "sample",
               "--quiet")
    assert res.returncode == 0, res.stderr
    a = read_frames(out / "data.nc")
    b = read_frames(tiny_run / "out" / "data.nc")
    np.testing.assert_array_equal(a.coordinates.values, b.coordinates.values)


@pytest.mark.parametrize("text,message", [
    ('system = "muller_brown_5d"\nseed = "one"', "seed: expected an integer, got 'one'"),
    ('system = "muller_brown_5d"\ntemperature_K = -3.0', "temperature_K: must be > 0"),
    ('system = "muller_brown_5d"\ntemprature_K = 3.0', "temprature_K: unknown key"),
    ('system = "nope"\n[sample.sources.basin_md]', "no system named 'nope'"),
    ('system = "muller_brown_5d"\n[sample.sources.basin_mdd]', "no data_source named"),
    ('system = "muller_brown_5d"\n[sample.sources.basin_md]\nn_steps = -1',
     "sample.sources.basin_md.n_steps: must be > 0"),
    ('system = "muller_brown_5d"\n[sample.sources.basin_md]\nnsteps = 1',
     "sample.sources.basin_md.nsteps: unknown key"),
    ("system = [", "not valid TOML"),
    # later stages' tables are checked before the first stage runs
    ('system = "muller_brown_5d"\n[sample.sources.basin_md]\n[umbrella]\nn_windowz = 3',
     "umbrella.n_windowz: unknown key"),
    ('system = "muller_brown_5d"\n[sample.sources.basin_md]\n[estimate]\n'
     'options = { n_binz = 3 }', "estimate.options.n_binz: unknown key"),
    # a sampler option in the stage table (the layout before the sampler owned planning)
    ('system = "muller_brown_5d"\n[sample.sources.basin_md]\n[umbrella]\nn_windows = 3',
     "umbrella.n_windows: an option of the sampler 'umbrella', not of the stage; put it in "
     "[umbrella] sampler_options"),
    ('system = "muller_brown_5d"\n[sample.sources.basin_md]\n[umbrella]\n'
     'sampler_options = { walkers = 3 }', "umbrella.sampler_options.walkers: unknown key"),
    ('system = "alanine_dipeptide"\n[sample.sources.basin_md]\n[umbrella]\n'
     'transitions = [["C7eq", "C7ax"]]\nreference_cvs = ["omega"]',
     "umbrella.reference_cvs: ['omega'] are not true CVs"),
])
def test_bad_config_clear_error(tmp_path, capsys, text, message):
    from mtcv_core.cli import main

    cfg = tmp_path / "bad.toml"
    cfg.write_text(text)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert str(cfg) in err or "no system named" in err or "no data_source" in err


_EXAMPLES = Path(__file__).parents[1] / "examples"


@pytest.mark.parametrize("example", sorted(_EXAMPLES.glob("*.toml"))
                         + [_EXAMPLES / "valine_dipeptide" / "valine_dipeptide.toml"],
                         ids=lambda p: p.name)
def test_example_configs_validate(example, tmp_path, monkeypatch):
    """Every shipped example passes the up-front check of all its tables
    (run from the repository root, as their paths say)."""
    monkeypatch.chdir(_EXAMPLES.parent)
    from mtcv_core import stages
    from mtcv_core.pipeline import RunContext
    from mtcv_core.plugins import load_plugins

    cfg, _ = load_config(example)
    registry = load_plugins()
    ctx = RunContext(config=cfg, out=tmp_path, registry=registry,
                     system=registry.create("system", cfg.system, **cfg.system_options),
                     client_factory=None, progress=False, summary={})
    stages.validate(ctx)


def test_builtin_quick_config_is_the_example():
    quick = Path(__file__).parents[1] / "examples" / "quick.toml"
    cfg, where = load_config(None)
    assert cfg == load_config(quick)[0]
    assert cfg.system == "muller_brown_5d"


def test_existing_scheduler_by_address(tiny_run, tmp_path):
    """--scheduler ADDR uses an existing cluster; the data equal the local run's."""
    from dask.distributed import LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:
        res = mtcv("run", str(tiny_run / "tiny.toml"), "--out", str(tmp_path / "o"),
                   "--until", "sample", "--scheduler", cluster.scheduler_address, "--quiet")
    assert res.returncode == 0, res.stderr
    a = read_frames(tmp_path / "o" / "data.nc")
    b = read_frames(tiny_run / "out" / "data.nc")
    np.testing.assert_array_equal(a.coordinates.values, b.coordinates.values)
    np.testing.assert_array_equal(a.label.values, b.label.values)


FULL = TINY.replace('name = "tiny"', 'name = "tiny_full"') + """
[train]
epochs = 6
warmup_epochs = 2
batch_size = 256
heads = { classifier = {}, energy = { n_bins = 1 } }
[umbrella]
sampler_options = { n_windows = 6, max_refinements = 1, walkers_per_window = 2, n_steps = 400, \
equilibration_steps = 50, stride = 10, windows_per_task = 1 }
reference_sampler_options = { grid_spacing = 4.0 }
[estimate]
options = { n_bins = 12, n_bootstraps = 0 }
"""


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("full")
    (root / "full.toml").write_text(FULL)
    res = mtcv("run", str(root / "full.toml"), "--out", str(root / "o"), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    return root


def test_every_dimension_of_every_file_has_a_coordinate(full_run):
    """Issue #24: data.nc and the sample parts (frame, atom and the AMBER axis
    names), umbrella windows (the CV names), fes, training: no unlabelled
    dimension anywhere; ASE still reads data.nc as an AMBER trajectory."""
    import xarray as xr
    from ase.io import read

    out = full_run / "o"
    files = sorted(out.rglob("*.nc"))
    assert len(files) > 10 and any("umbrella_windows" in str(f) for f in files)
    for path in files:
        with xr.open_dataset(path) as ds:
            missing = [d for d in ds.dims if d not in ds.coords]
            assert not missing, f"{path.relative_to(out)}: dims {missing} have no coordinate"
    with xr.open_dataset(out / "data.nc") as data:
        assert list(data["spatial"].values) == ["x", "y", "z"]
        assert list(data["cell_angular"].values) == ["alpha", "beta", "gamma"]
        np.testing.assert_array_equal(data["frame"].values, np.arange(data.sizes["frame"]))
        atoms = read(out / "data.nc", index=-1, format="netcdftrajectory")
        np.testing.assert_allclose(atoms.positions, data["coordinates"].values[-1])
    window = next(f for f in files if f.name.startswith("window_") and "xi" in str(f))
    with xr.open_dataset(window) as win:
        assert list(win["cv"].values) == win.attrs["cv_names"].split()


def test_all_stages_smoke(full_run):
    """Every stage runs and leaves the files of the CLI contract."""
    out = full_run / "o"
    for name in ("data.nc", "model.pt", "cv.ts", "training.nc", "umbrella.nc",
                 "umbrella_reference.nc", "fes.nc", "fes_reference.nc", "fes_exact.nc",
                 "summary.json",
                 "report.md", "figures/fes.png", "figures/data.png"):
        assert (out / name).exists(), name
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages_done"] == ["sample", "train", "umbrella", "estimate", "rate", "ensemble",
                                      "report"]
    assert "ensemble" not in summary  # one CV: no ensemble
    for key in ("test_accuracy", "test_energy_mae_eV", "n_train", "n_test", "transitions",
                "timings_s", "peak_rss_GB"):
        assert key in summary, key
    assert set(summary["peak_rss_GB"]) == set(summary["stages_done"])
    assert all(0.05 < v < 24 for v in summary["peak_rss_GB"].values())
    row = summary["transitions"][0]
    assert (row["from"], row["to"]) == ("A", "B")
    assert row["reference_barrier_eV"] == pytest.approx(0.939, abs=0.01)
    assert row["reference_delta_F_eV"] == pytest.approx(0.352, abs=0.01)
    # the exact value along the same xi beside MBAR's, and the CV's spectator sensitivity
    # (six epochs: the classifier may not separate the basins yet, so values may be None)
    assert "exact_delta_F_eV" in row and "exact_spectators_at_zero_delta_F_eV" in row
    from mtcv_core.io import read_dataset

    exact = read_dataset(out / "fes_exact.nc")
    assert np.isfinite(exact["pmf"].values).sum() >= 3
    assert exact.sizes["bin"] == read_dataset(out / "fes.nc").sizes["bin"]
    sens = summary["spectator_sensitivity"]
    assert {"A", "B"} <= set(sens["landmarks"])
    assert 0.0 <= sens["misclassified_fraction"] <= 1.0
    report = (out / "report.md").read_text()
    assert "exact along xi" in report and "Spectator sensitivity" in report
    # the convergence verdict of the transition along xi
    assert isinstance(row["converged"], bool)
    assert {"overlap", "walkers_agree", "no_drift", "halves_agree", "solver"} <= set(
        row["convergence"])
    assert isinstance(summary["drifting_windows"], list)
    assert "Convergence along xi" in report


def test_a_cv_that_separates_nothing_is_said_out_loud(full_run, tmp_path):
    """The tiny run's six-epoch CV on eight basin trajectories: its test
    accuracy is below the sanity floor, so the run warned on one line, lists
    the warning in summary.json, puts a banner on the report, and --strict
    fails on it."""
    import shutil

    from mtcv_core.sanity import accuracy_floor, chance_accuracy

    out = full_run / "o"
    summary = json.loads((out / "summary.json").read_text())
    labels = read_frames(out / "data.nc")
    chance = chance_accuracy(labels["label"].values[labels["split"].values == 1])
    assert summary["test_accuracy"] < accuracy_floor(chance)
    codes = [w["code"] for w in summary["warnings"]]
    assert "cv_separates_nothing" in codes
    assert "> **Warning: numbers below are not to be trusted.**" in (out / "report.md").read_text()
    copy = tmp_path / "o"
    shutil.copytree(out, copy)
    res = mtcv("run", str(full_run / "full.toml"), "--out", str(copy), "--resume", "--quiet",
               "--strict")
    assert res.returncode == 2 and "sanity warning(s): train: the CV classifies" in res.stderr
    lenient = mtcv("run", str(full_run / "full.toml"), "--out", str(copy), "--resume",
                   "--quiet")
    assert lenient.returncode == 0 and "WARNING (train): train: the CV classifies" in \
        lenient.stderr


def test_strict_fails_on_a_failed_verdict_after_writing_everything(full_run, tmp_path):
    """`--strict` on a finished run whose verdict failed (planted in its
    summary: the check's outcome is the estimate stage's, tested above and in
    tests/test_convergence.py): exit 2 naming the transition and the failed
    check; every output stays; without --strict the same run exits 0."""
    import shutil

    out = tmp_path / "o"
    shutil.copytree(full_run / "o", out)
    summary = json.loads((out / "summary.json").read_text())
    row = summary["transitions"][0]
    row["converged"] = False
    row["convergence"]["overlap"] = {"min_neighbour": 0.001, "limit": 0.03, "ok": False}
    (out / "summary.json").write_text(json.dumps(summary))
    files = sorted(p.name for p in out.iterdir())
    res = mtcv("run", str(full_run / "full.toml"), "--out", str(out), "--resume", "--quiet",
               "--strict")
    assert res.returncode == 2, res.stderr[-2000:]
    assert "--strict: not converged along xi: A->B (overlap" in res.stderr
    assert sorted(p.name for p in out.iterdir()) == files
    lenient = mtcv("run", str(full_run / "full.toml"), "--out", str(out), "--resume",
                   "--quiet")
    assert lenient.returncode == 0, lenient.stderr[-2000:]
    assert "NOT converged: overlap" in lenient.stderr


def _without_timings(summary: dict) -> dict:
    # the outputs' checksums differ: every netCDF file records when it was created
    return {k: v for k, v in summary.items() if k not in ("timings_s", "outputs",
                                                          "peak_rss_GB")}


@pytest.mark.slow  # 47 s; benchmarks/reliability_faults.py runs it (and kills every stage)
def test_killed_during_umbrella_resumes_to_the_same_summary(full_run, tmp_path):
    """SIGKILL the whole run (CLI and Dask workers) once the first umbrella
    window is on disk; ``--resume`` finishes it, and summary.json equals the
    uninterrupted run's (timings aside)."""
    import os
    import signal
    import time

    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "mtcv_core.cli", "run", str(full_run / "full.toml"), "--out",
           str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    store = out / "umbrella_windows" / "xi"
    deadline = time.monotonic() + 300
    try:
        while not (store.exists() and any(store.glob("window_*.nc"))):
            assert proc.poll() is None, "the run ended before any umbrella window was saved"
            assert time.monotonic() < deadline, "no umbrella window after 300 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    killed = json.loads((out / "summary.json").read_text())
    assert "umbrella" not in killed["stages_done"], "killed too late to test anything"
    assert not (out / "umbrella.nc").exists()
    for path in store.glob("window_*.nc"):  # whatever carries a final name is whole
        read_window(path)
    res = mtcv("run", str(full_run / "full.toml"), "--out", str(out), "--resume", "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    resumed = json.loads((out / "summary.json").read_text())
    uninterrupted = json.loads((full_run / "o" / "summary.json").read_text())
    assert _without_timings(resumed) == _without_timings(uninterrupted)


def test_cli_ends_with_a_summary_block_and_one_line_warnings(tmp_path, capsys):
    """stdout keeps the summary JSON; stderr gets the numbers a user wants and
    warnings as single `mtcv: warning:` lines (no source lines)."""
    import warnings

    from mtcv_core.cli import _one_line_warning, summary_block

    summary = {"stages_done": ["sample", "train", "umbrella", "estimate", "report"],
               "test_accuracy": 0.99184,
               "transitions": [{"from": "A", "to": "B", "barrier_eV": 0.9182,
                                "barrier_err_eV": 0.0062, "exact_barrier_eV": 0.9265,
                                "reference_barrier_eV": 0.9391, "delta_F_eV": 0.3479,
                                "delta_F_err_eV": 0.0099, "exact_delta_F_eV": None,
                                "reference_delta_F_eV": 0.3518}]}
    (tmp_path / "report.md").write_text("x")
    text = "\n".join(summary_block(summary, str(tmp_path)))
    assert "test accuracy 0.9918" in text
    assert ("A->B: barrier along xi 0.918 ± 0.006 (exact along xi 0.926, reference 0.939); "
            "dF 0.348 ± 0.010 (exact n/a, reference 0.352) eV") in text
    assert f"report: {tmp_path / 'report.md'}" in text
    with warnings.catch_warnings():
        warnings.showwarning = _one_line_warning
        warnings.simplefilter("always")
        warnings.warn("mbar: poor overlap\n  between windows", RuntimeWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err.strip() == "mtcv: warning: mbar: poor overlap between windows"


def test_a_component_must_implement_its_interface():
    """A registered factory that builds something outside the interface is
    refused naming the interface, before any stage calls into it."""
    from mtcv_core.interfaces import Sampler
    from mtcv_core.plugins import PluginError
    from mtcv_core.stages.common import require_interface

    class NotASampler:
        def run(self, *args, **kwargs):
            return None

    with pytest.raises(PluginError, match=r"sampler 'plain' is a NotASampler, not a "
                                          r"mtcv_core.interfaces.Sampler"):
        require_interface(NotASampler(), Sampler, "sampler", "plain")


def test_cv_ensemble_member_runs_resumes_and_is_combined(full_run, tmp_path):
    """``[ensemble] members = 2`` on a finished run: member 1 retrains the CV
    with its own seed on the run's data, runs umbrella + estimate in
    ensemble/member_1, and the transitions get mean ± total with the
    statistical and CV-to-CV parts; a second call reuses the member."""
    import dataclasses
    import shutil

    from mtcv_core.execution import dask_client
    from mtcv_core.plugins import build_component, load_plugins
    from mtcv_core.stages import RunContext, run_ensemble, run_report, validate

    out = tmp_path / "o"
    shutil.copytree(full_run / "o", out)
    config, _ = load_config(full_run / "full.toml")
    config = dataclasses.replace(config, ensemble={"members": 2})
    registry = load_plugins()
    system = build_component(registry, "system", config.system, config.system_options, "s")
    summary = json.loads((out / "summary.json").read_text())
    ctx = RunContext(config=config, out=out, registry=registry, system=system,
                     client_factory=lambda: dask_client(None, 1), progress=False,
                     summary=summary)
    validate(ctx)
    try:
        run_ensemble(ctx)
        member = out / "ensemble" / "member_1"
        m_summary = json.loads((member / "summary.json").read_text())
        assert m_summary["stages_done"] == ["train", "umbrella", "estimate"]
        assert not (member / "umbrella_reference.nc").exists()  # the run's is the reference
        assert m_summary["train_seed"] != config.seed
        assert (member / "data.nc").stat().st_ino == (out / "data.nc").stat().st_ino
        assert (member / "cv.ts").read_bytes() != (out / "cv.ts").read_bytes()
        ens = summary["ensemble"]
        assert ens["members"] == 2 and [s["member"] for s in ens["member_seeds"]] == [0, 1]
        row, m_row = summary["transitions"][0], m_summary["transitions"][0]
        barrier = ens["transitions"][0]["barrier"]
        assert barrier["values"] == [row["barrier_eV"], m_row["barrier_eV"]]
        if barrier["members_used"] == 2:  # a six-epoch CV may not separate the basins
            assert barrier["mean"] == pytest.approx(
                (row["barrier_eV"] + m_row["barrier_eV"]) / 2, abs=1e-4)
            assert barrier["total"] ** 2 == pytest.approx(
                barrier["statistical"] ** 2 + barrier["cv"] ** 2, rel=1e-3, abs=1e-8)
            assert row["ensemble_barrier_total_err_eV"] == barrier["total"]
        stamp = (member / "fes.nc").stat().st_mtime_ns
        again = dict(summary, ensemble=None)
        ctx.summary = again
        run_ensemble(ctx)  # resumes: member 1 is done
        assert (member / "fes.nc").stat().st_mtime_ns == stamp
        assert again["ensemble"] == ens
        run_report(ctx)
        assert "## CV ensemble" in (out / "report.md").read_text()
    finally:
        ctx.close_client()


@pytest.mark.parametrize("name, how", [
    ("data.nc", "truncate"), ("model.pt", "alter"), ("cv.ts", "delete"),
    ("umbrella.nc", "truncate"), ("fes.nc", "alter"), ("report.md", "alter")])
def test_resume_detects_a_changed_output_and_reruns_from_its_stage(full_run, tmp_path, name,
                                                                   how, reliability_counts):
    """Every stage's output recorded by size and SHA-256: one truncated,
    altered or deleted is found on --resume, its stage and the later ones
    are dropped from stages_done (with a warning naming the file)."""
    _changed_output_case(full_run / "o", tmp_path, name, how, reliability_counts)


@pytest.mark.slow
def test_resume_detects_a_changed_ensemble_output(ensemble_run, tmp_path, reliability_counts):
    """The same for the ensemble stage's record of its members."""
    _changed_output_case(ensemble_run / "o", tmp_path, "ensemble/members.json", "alter",
                         reliability_counts)


def _changed_output_case(run_out, tmp_path, name, how, reliability_counts):
    import shutil

    from mtcv_core.integrity import STAGE_OUTPUTS, verify_stages
    from mtcv_core.pipeline import STAGES

    out = tmp_path / "o"
    shutil.copytree(run_out, out)
    summary = json.loads((out / "summary.json").read_text())
    assert verify_stages(summary, out, STAGES) is None  # untouched: every stage trusted
    path = out / name
    if how == "truncate":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "alter":
        data = bytearray(path.read_bytes())
        data[len(data) // 2] ^= 0xFF
        path.write_bytes(bytes(data))
    else:
        path.unlink()
    stage = next(s for s, files in STAGE_OUTPUTS.items() if name in files)
    reliability_counts["corruptions_tried"] += 1
    with pytest.warns(RuntimeWarning, match=rf"{name}.*running {stage}"):
        assert verify_stages(summary, out, STAGES) == stage
    assert summary["stages_done"] == list(STAGES[: STAGES.index(stage)])
    reliability_counts["corruptions_detected"] += 1


def test_resume_after_a_corrupted_fes_reruns_to_the_same_summary(full_run, tmp_path,
                                                                  reliability_counts):
    import shutil

    out = tmp_path / "o"
    shutil.copytree(full_run / "o", out)
    (out / "fes.nc").write_bytes(b"not a netCDF file")
    reliability_counts["corruptions_tried"] += 1
    res = mtcv("run", str(full_run / "full.toml"), "--out", str(out), "--resume", "--quiet")
    assert res.returncode == 0, res.stderr[-2000:]
    assert "fes.nc" in res.stderr and "running estimate, rate, ensemble, report again" in res.stderr
    reliability_counts["corruptions_detected"] += 1
    resumed = json.loads((out / "summary.json").read_text())
    uninterrupted = json.loads((full_run / "o" / "summary.json").read_text())
    assert _without_timings(resumed) == _without_timings(uninterrupted)


@pytest.mark.parametrize("sig, code", [("SIGTERM", 143),
                                       pytest.param("SIGINT", 130, marks=pytest.mark.slow)])
def test_a_signal_stops_the_run_cleanly_and_it_resumes(tiny_run, tmp_path, sig, code,
                                                       reliability_counts):
    """SIGTERM / SIGINT to `mtcv run` during the sample stage: it exits with
    143 / 130 within seconds, says how to resume, leaves no process of its
    session (Dask workers included) and no temporary file; --resume then
    finishes with the uninterrupted run's data."""
    import os
    import signal
    import time

    import psutil

    out = tmp_path / "o"
    cmd = [sys.executable, "-m", "mtcv_core.cli", "run", str(tiny_run / "tiny.toml"), "--out",
           str(out), "--until", "sample", "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    deadline = time.monotonic() + 120
    part = out / "sample" / "basin_md_train.nc"  # mid-stage: the TPS parts are still to come
    while not part.exists():
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.02)
    assert proc.poll() is None, "finished before the signal"
    assert psutil.Process(proc.pid).children(), "no Dask worker running"
    t0 = time.monotonic()
    os.kill(proc.pid, getattr(signal, sig))
    try:
        assert proc.wait(timeout=60) == code, proc.stderr.read()[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert time.monotonic() - t0 < 30
    # our line, wherever library shutdown messages (Dask, the multiprocessing
    # resource tracker at interpreter exit) put theirs
    ours = [ln for ln in proc.stderr.read().strip().splitlines() if f"({sig})" in ln]
    assert len(ours) == 1 and f"--out {out} --resume" in ours[0], ours
    time.sleep(1.0)
    left = [p for p in psutil.process_iter(["pid", "status"]) if _pgid(p.pid) == proc.pid
            and p.info["status"] != psutil.STATUS_ZOMBIE]  # dead, not yet reaped by init
    reliability_counts["orphan_processes"] += len(left)
    assert not left, f"processes left behind: {left}"
    assert not list(out.rglob("*.tmp"))
    res = mtcv(*cmd[3:], "--resume")
    assert res.returncode == 0, res.stderr[-2000:]
    a, b = read_frames(out / "data.nc"), read_frames(tiny_run / "out" / "data.nc")
    np.testing.assert_array_equal(a.coordinates.values, b.coordinates.values)
    reliability_counts[f"{sig.lower()}_clean"] += 1


def _pgid(pid):
    import os

    try:
        return os.getpgid(pid)
    except OSError:
        return None


def test_resume_accepts_a_run_recorded_before_a_config_key_existed(tiny_run, tmp_path):
    """A key added to the schema later (e.g. [ensemble]) is its default in
    a run recorded without it: --resume continues that run."""
    import shutil

    out = tmp_path / "o"
    shutil.copytree(tiny_run / "out", out)
    summary = json.loads((out / "summary.json").read_text())
    del summary["config"]["ensemble"]
    (out / "summary.json").write_text(json.dumps(summary))
    res = mtcv("run", str(tiny_run / "tiny.toml"), "--out", str(out), "--until", "sample",
               "--resume", "--quiet")
    assert res.returncode == 0, res.stderr[-2000:]
    summary["config"]["seed"] = 6  # a real difference is still refused
    (out / "summary.json").write_text(json.dumps(summary))
    res = mtcv("run", str(tiny_run / "tiny.toml"), "--out", str(out), "--until", "sample",
               "--resume", "--quiet")
    assert res.returncode == 2 and "config different" in res.stderr


@pytest.mark.parametrize("stage", ["sample", "train", "umbrella", "estimate", "report"])
def test_a_full_disk_in_any_stage_is_one_clear_error_and_resumes(full_run, tmp_path,
                                                                  monkeypatch, stage,
                                                                  reliability_counts):
    """ENOSPC injected at the first file a stage writes: one error naming the
    stage, the file and the free space; no temporary file and no final file
    changed; --resume with room completes with the uninterrupted summary."""
    _full_disk_case(full_run / "o", full_run / "full.toml", tmp_path, monkeypatch, stage)
    reliability_counts["disk_full_clean"] += 1


@pytest.fixture(scope="module")
def ensemble_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("ensemble")
    (root / "ensemble.toml").write_text(FULL + "\n[ensemble]\nmembers = 2\n")
    res = mtcv("run", str(root / "ensemble.toml"), "--out", str(root / "o"), "--quiet")
    assert res.returncode == 0, res.stderr[-3000:]
    return root


@pytest.mark.slow
def test_a_full_disk_in_the_ensemble_stage_is_one_clear_error_and_resumes(
        ensemble_run, tmp_path, monkeypatch, reliability_counts):
    """The same in the ensemble stage of a run with a CV ensemble of two (the
    members' outputs are its writes)."""
    _full_disk_case(ensemble_run / "o", ensemble_run / "ensemble.toml", tmp_path, monkeypatch,
                    "ensemble")
    reliability_counts["disk_full_clean"] += 1


def _full_disk_case(run_out, config, tmp_path, monkeypatch, stage):
    import errno
    import hashlib
    import os
    import shutil

    from mtcv_core.errors import DiskFullError
    from mtcv_core.pipeline import STAGES, run_pipeline

    out = tmp_path / "o"
    shutil.copytree(run_out, out)
    summary = json.loads((out / "summary.json").read_text())
    summary["stages_done"] = list(STAGES[: STAGES.index(stage)])
    (out / "summary.json").write_text(json.dumps(summary))
    if stage == "ensemble":  # the members' outputs are to be written again
        shutil.rmtree(out / "ensemble")

    def digests():
        return {p.relative_to(out): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in out.rglob("*") if p.is_file()
                and p.name not in ("summary.json", ".mtcv.lock")}

    before = digests()
    real_fsync = os.fsync

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(DiskFullError, match=rf"stage {stage}: .*no space left on the device; "
                                            r".* free there\).*--resume"):
        run_pipeline(config, out=out, resume=True, progress=False)
    monkeypatch.setattr(os, "fsync", real_fsync)
    assert not list(out.rglob("*.tmp"))
    after = digests()
    assert {k: v for k, v in after.items() if k in before} == before
    run_pipeline(config, out=out, resume=True, progress=False)
    resumed = json.loads((out / "summary.json").read_text())
    uninterrupted = json.loads((run_out / "summary.json").read_text())
    assert _without_timings(resumed) == _without_timings(uninterrupted)


def test_a_resampled_cv_ensemble_member_draws_its_own_data(full_run, tmp_path):
    """``resample = true``: member 1 runs its own sample stage (new seed)
    into ensemble/member_1/data.nc, whose provenance carries the member's
    config, not the run's."""
    import dataclasses
    import shutil

    import xarray as xr

    from mtcv_core.execution import dask_client
    from mtcv_core.plugins import build_component, load_plugins
    from mtcv_core.stages import RunContext, validate
    from mtcv_core.stages.ensemble import member_seed, run_member

    out = tmp_path / "o"
    shutil.copytree(full_run / "o", out)
    config, _ = load_config(full_run / "full.toml")
    config = dataclasses.replace(config, ensemble={"members": 2, "resample": True})
    registry = load_plugins()
    system = build_component(registry, "system", config.system, config.system_options, "s")
    summary = json.loads((out / "summary.json").read_text())
    ctx = RunContext(config=config, out=out, registry=registry, system=system,
                     client_factory=lambda: dask_client(None, 1), progress=False,
                     summary=summary)
    validate(ctx)
    try:
        m_summary = run_member(ctx, 1, resample=True)
    finally:
        ctx.close_client()
    member = out / "ensemble" / "member_1"
    assert m_summary["stages_done"] == ["sample", "train", "umbrella", "estimate"]
    assert (member / "data.nc").stat().st_ino != (out / "data.nc").stat().st_ino
    with xr.open_dataset(member / "data.nc") as data, \
            xr.open_dataset(out / "data.nc") as run_data:
        provenance = json.loads(data.attrs["config"])
        assert provenance["seed"] == member_seed(config.seed, 1) != config.seed
        assert not data["coordinates"].equals(run_data["coordinates"])


def test_the_python_api_reads_a_run_and_biases_a_window(full_run, tmp_path):
    """``from mtcv import Run``: the summary, datasets equal to the files, the
    CV equal to cv.ts, and a window's bias as an ASE calculator on top of the
    system's: energy = E + k/2 (xi - c)^2, forces = -dE/dx by finite
    differences; ``mtcv.run`` runs the pipeline and returns the Run; a
    missing file names the stage that writes it."""
    import torch
    import xarray as xr

    import mtcv
    from mtcv import Run
    from mtcv_core.io import MissingFileError

    run = Run(full_run / "o")
    assert run.summary == json.loads((full_run / "o" / "summary.json").read_text())
    assert run.config.name == "tiny_full" and "report" in run.stages_done
    with xr.open_dataset(full_run / "o" / "fes.nc") as fes:
        xr.testing.assert_identical(run.fes, fes.load())
    xr.testing.assert_identical(run.data, read_frames(full_run / "o" / "data.nc"))
    pos = run.data["coordinates"].values[:6]
    cv = torch.jit.load(str(full_run / "o" / "cv.ts"))
    np.testing.assert_allclose(run.xi(pos), cv.double()(torch.as_tensor(pos)).detach().numpy(),
                               rtol=1e-12)
    assert {"fes", "data"} <= set(run.figures)
    w = 2
    c = run.umbrella["center"].values[w]
    k = run.umbrella["spring_constant"].values[w]
    atoms = run.system.make_atoms(run.system.basins[0])
    plain = atoms.calc
    e0 = plain.get_potential_energy(atoms)
    atoms.calc = run.bias(window=w, calculator=plain)
    xi = run.xi(atoms.get_positions()[None])[0]
    assert atoms.get_potential_energy() == pytest.approx(
        e0 + 0.5 * np.sum(k * (xi - c) ** 2), rel=1e-10)
    f = atoms.get_forces()
    h = 1e-5
    for i, j in [(0, 0), (1, 1), (0, 2)]:
        p = atoms.get_positions()
        e = []
        for s in (h, -h):
            q = p.copy()
            q[i, j] += s
            atoms.set_positions(q)
            e.append(atoms.get_potential_energy())
        atoms.set_positions(p)
        assert f[i, j] == pytest.approx(-(e[0] - e[1]) / (2 * h), rel=1e-5, abs=1e-7)
    ref = run.bias(window=0, reference=True)
    assert np.asarray(ref.center).shape == (2,)
    with pytest.raises(IndexError, match=r"window 999: .* has windows 0\.\."):
        run.bias(window=999)
    # mtcv.run: the pipeline from Python, up to a stage; files of later stages
    # are named with the stage that writes them
    (tmp_path / "t.toml").write_text(TINY)
    partial = mtcv.run(tmp_path / "t.toml", out=tmp_path / "p", until="sample",
                       progress=False)
    assert partial.stages_done == ["sample"] and partial.data.sizes["frame"] > 0
    with pytest.raises(MissingFileError, match=r"cv.ts: no such file \(written by the train "
                                               r"stage; this run has done: sample\)"):
        _ = partial.cv
    with pytest.raises(MissingFileError, match=r"not an mtcv run directory"):
        Run(tmp_path)


def test_the_fes_figure_shows_basins_barrier_and_references(full_run):
    """The report's PMF figure: error band, basins shaded by the run's
    assignment, the first transition's barrier and dF as text, the reference
    levels; report.md captions every figure."""
    from mtcv import Run
    from mtcv_core.plots import plot_fes

    run = Run(full_run / "o")
    row = dict(run.transitions[0], barrier_eV=0.5, barrier_err_eV=0.01, delta_F_eV=0.2,
               delta_F_err_eV=0.02, reference_barrier_eV=0.55, true_cv_barrier_eV=0.52)
    mid = float(np.median(run.fes["bin_center"].values))
    fig = plot_fes(run.fes, None, exact=run.fes_exact,
                   basin_of=lambda xi: (np.asarray(xi)[:, 0] > mid).astype(int),
                   transitions=[row])
    ax = fig.axes[0]
    texts = " ".join(t.get_text() for t in ax.texts)
    assert "barrier 0.500 ± 0.010 eV" in texts and "F_B - F_A = 0.200 ± 0.020 eV" in texts
    labels = ax.get_legend_handles_labels()[1]
    assert {"basin A", "basin B", "MBAR ± 1σ", "exact along the same CV", "quadrature barrier",
            "barrier along the true CVs"} <= set(labels)
    report = (full_run / "o" / "report.md").read_text()
    assert "![fes](figures/fes.png)" in report and "*Free energy along the learned CV xi" in report


def test_freed_heap_memory_goes_back_to_the_system():
    """What a stage freed into the C heap stays resident until
    release_free_memory (run after every stage) hands it back."""
    from mtcv_core.resources import release_free_memory, tree_rss

    blocks = [np.ones(8000) for _ in range(2000)]  # 128 MB in 64 kB heap blocks
    guard = np.ones(8000)  # noqa: F841 - above them: free() alone cannot trim the heap
    del blocks
    held = tree_rss()
    assert release_free_memory()
    assert held - tree_rss() > 64e6
