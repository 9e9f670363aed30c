"""Whole runs (issue #9): the same config and seed give the same results with
1 and 2 Dask workers; ``mtcv run`` killed (SIGKILL to its process group,
Dask workers included) at seeded random moments in every stage never leaves
a partial file under a final name, and ``--resume`` ends with the outputs of
an uninterrupted run.

The fault-injection campaign is the one of ``benchmarks/reliability_faults.py``
(which writes ``docs/reliability.md``), here with one kill per stage.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from test_pipeline import _without_timings, mtcv

ROOT = Path(__file__).resolve().parents[1]


def _benchmark():
    spec = importlib.util.spec_from_file_location("reliability_benchmark",
                                                  ROOT / "benchmarks" / "reliability_faults.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: every stage, several Dask tasks in each parallel one, seconds per run
TINY = """
name = "det"
system = "muller_brown_5d"
seed = 11
[execution]
workers = 1
[sample]
test_fraction = 0.25
[sample.sources.basin_md]
trajectories_per_basin = 4
n_steps = 100
stride = 10
equilibration_steps = 10
walkers_per_task = 2
[train]
epochs = 3
warmup_epochs = 1
batch_size = 128
hidden = [8]
heads = { classifier = {}, energy = { n_bins = 1 } }
[umbrella]
sampler_options = { n_windows = 4, max_refinements = 1, walkers_per_window = 2, n_steps = 100, \
equilibration_steps = 10, stride = 10, windows_per_task = 1 }
reference_sampler_options = { grid_spacing = 8.0 }
[estimate]
options = { n_bins = 8, n_bootstraps = 0 }
"""


def _compare(a: Path, b: Path) -> None:
    one = json.loads((a / "summary.json").read_text())
    two = json.loads((b / "summary.json").read_text())
    from mtcv_core.pipeline import STAGES

    assert one["stages_done"] == list(STAGES)
    assert _without_timings(one) == _without_timings(two)
    assert _benchmark().compare_outputs(a, b) == []


def test_same_results_with_1_and_2_workers(tmp_path):
    """summary.json (timings aside), data.nc, umbrella.nc and fes.nc are the
    same on a Dask cluster of 1 and of 2 workers (in-process thread workers,
    so the test costs two runs and no process start-ups; the slow test below
    runs ``mtcv run --workers 1/2``)."""
    from dask.distributed import LocalCluster

    from mtcv_core.pipeline import run_pipeline

    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=False,
                          dashboard_address=None) as cluster:
            run_pipeline(cfg, out=tmp_path / f"w{workers}", scheduler=cluster.scheduler_address,
                         progress=False)
    _compare(tmp_path / "w1", tmp_path / "w2")


@pytest.mark.slow
def test_same_results_with_workers_option(tmp_path):
    """The same with ``mtcv run --workers 1`` and ``--workers 2`` (local
    clusters of worker processes)."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY)
    for workers in (1, 2):
        res = mtcv("run", str(cfg), "--out", str(tmp_path / f"w{workers}"), "--workers",
                   str(workers), "--quiet")
        assert res.returncode == 0, res.stderr[-3000:]
    _compare(tmp_path / "w1", tmp_path / "w2")


@pytest.mark.slow
def test_killed_at_random_moments_in_every_stage(tmp_path, reliability_counts):
    """One SIGKILL in each stage (seeded moments): after every kill every file
    under its final name is whole and no process of the run survives; the
    resumed run ends with the outputs of an uninterrupted one."""
    result = _benchmark().fault_campaign(tmp_path, kills_per_stage=1, seed=1)
    counts = result["counts"]
    reliability_counts["faults_injected"] += counts.get("faults_injected", 0)
    assert result["problems"] == []
    assert counts["faults_injected"] >= 3
    assert counts.get("partial_files", 0) == 0 and counts.get("outputs_differing", 0) == 0
    assert counts.get("surviving_processes", 0) == 0
    assert not list(tmp_path.glob("killed_*/**/.*.tmp"))  # removed on resume


@pytest.mark.slow
@pytest.mark.parametrize("sig", ["SIGTERM", "SIGINT"])
def test_a_signal_in_every_stage_stops_cleanly_and_resumes(tmp_path, sig, reliability_counts):
    """SIGTERM to the mtcv process (a batch scheduler) and SIGINT to the whole
    process group (Ctrl-C) once in each stage, a CV ensemble of two included:
    exit 143 / 130 within 30 s naming the stage and the resume command, no
    process of the run left, no temporary file, every file whole; the run
    resumed to the end has the uninterrupted run's summary (timings aside)
    and arrays."""
    from mtcv_core.pipeline import STAGES

    result = _benchmark().signal_campaign(tmp_path, sig, seed=2)
    records = result["per_stage"]
    reliability_counts[f"{sig.lower()}_clean"] += result["clean"]
    reliability_counts["orphan_processes"] += sum(r["processes_left"] for r in records)
    assert result["problems"] == []
    assert [r["stage"] for r in records] == list(STAGES)  # every stage interrupted
    assert all(r["clean"] for r in records) and result["outputs_differing"] == 0


def test_damaged_intermediate_files_are_recomputed(tmp_path):
    """A stored umbrella window or sample part damaged after it was written
    (mtcv's own writes are atomic, so by something else) is computed again on
    resume, with a warning, to the same result."""
    import numpy as np
    from test_reliability_md import TanhCV, _windows

    from mtcv_core import stages
    from mtcv_core.io import write_dataset
    from mtcv_core.schema import make_frames
    from mtcv_systems import MullerBrown5D
    from mtcv_umbrella import UmbrellaSampler

    mb = MullerBrown5D()
    sampler = UmbrellaSampler(temperature_K=300.0, walkers_per_window=1, n_steps=40,
                              equilibration_steps=0, stride=10, windows_per_task=1)
    first = sampler.run_windows(mb, TanhCV(), seed=2, store=tmp_path / "w", **_windows(mb))
    path = tmp_path / "w" / "window_0001.nc"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.warns(RuntimeWarning, match="window_0001.nc: not a readable netCDF file.*"
                                            "running the window again"):
        again = sampler.run_windows(mb, TanhCV(), seed=2, store=tmp_path / "w", **_windows(mb))
    np.testing.assert_array_equal(first.cv_values.values, again.cv_values.values)

    part = tmp_path / "basin_md_train.nc"
    write_dataset(make_frames(np.zeros((2, 2, 3)), np.zeros(2), np.zeros((2, 2, 3)),
                              numbers=[1, 1], masses=[1.0, 1.0], basins=["A", "B"]), part)
    assert stages.stored_part(part).sizes["frame"] == 2
    part.write_bytes(part.read_bytes()[:-8])
    with pytest.warns(RuntimeWarning, match="basin_md_train.nc: not a readable.*sampling it "
                                            "again"):
        assert stages.stored_part(part) is None
