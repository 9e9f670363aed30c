"""The alanine throughput benchmark's pieces, at a tiny size."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("openmm")

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "alanine_throughput.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("alanine_throughput", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_benchmark_pieces(bench, tmp_path):
    from mtcv_core import load_plugins

    torch.set_num_threads(1)
    registry = load_plugins()
    system = registry.create("system", "alanine_dipeptide")
    opts = bench.featurizer_options()
    names = [bench.ATOMS[opts[o]][:2] for o in ("center", "axis", "plane")]
    assert names == [("ALA", "CA"), ("ALA", "C"), ("ALA", "CB")]

    frames, labels = bench.basin_frames(system, 1.0, walkers=2, n_steps=60)
    assert frames.shape[1:] == (22, 3) and {0, 1} <= set(labels.tolist())
    cv = bench.make_cv(system, registry, frames, tmp_path)
    assert bench.evaluate_cv(cv, frames).shape == (len(frames), 1)
    centers, k, start = bench.plan(system, cv, frames, labels, 4)
    assert centers.shape == k.shape == (4, 1) and start.shape == (4, 22, 3)

    omm = bench.OpenMMReference(system, 1.0, chunk=100)
    first = omm.run(0.02)
    omm.run(0.02)
    assert first.count >= 100 and first.per_s > 0 and first.per_cpu_s > 0
    assert omm.total.count == sum(r.count for r in omm.slices) and len(omm.slices) == 2
    assert bench.ase_rate(system, cv, centers[1], k[1], start[1], 1.0, 10).count == 10
    fast = bench.fast_rate(system, cv, centers, k, start, 2, 1.0, 20)
    assert fast.count == 4 * 2 * 20 and fast.per_s > 0
    prof = bench.profile(system, cv, centers, k, start, 2, 1.0, 5)
    parts = prof["force_field_us"] + prof["cv_bias_us"] + prof["random_us"]
    assert prof["walkers"] == 8
    assert np.isclose(parts + prof["integrator_us"], prof["total_us"])
    assert bench.steps_for(1e3, 8, 0.01) == 5 * bench.STRIDE
