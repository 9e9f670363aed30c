"""Finished tasks kept on disk: an interrupted source resumes with the tasks
it had not finished (mtcv_core.execution.TaskStore)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from mtcv_core.execution import TaskStore, map_tasks


def _task(i: int) -> dict:
    ds = xr.Dataset({"x": ("n", np.arange(3.0) + i)}, attrs={"mtcv_schema": "test.task/1"})
    return {"data": ds, "count": i, "stats": {"a": np.int64(i)}, "blow_ups": []}


def test_a_resumed_map_runs_only_the_unfinished_tasks(tmp_path):
    calls = []

    def fn(i):
        calls.append(i)
        return _task(i)

    store = TaskStore(tmp_path / "tasks")
    first = map_tasks(fn, list(range(5)), store=store)
    assert calls == [0, 1, 2, 3, 4]
    (tmp_path / "tasks" / "task_00003.json").unlink()   # killed before task 3 was recorded
    (tmp_path / "tasks" / "task_00001.json").write_text("{")  # damaged record
    calls.clear()
    with pytest.warns(RuntimeWarning, match=r"task_00001.json: a finished task's result "
                                             r"cannot be read"):
        again = map_tasks(fn, list(range(5)), store=store)
    assert calls == [1, 3]
    for a, b in zip(first, again, strict=True):
        xr.testing.assert_identical(a["data"], b["data"])
        assert a["count"] == b["count"] and a["stats"] == b["stats"] == {"a": int(a["count"])}


def test_on_result_sees_every_task_as_it_finishes(tmp_path):
    seen = []
    map_tasks(_task, [4, 5, 6], on_result=lambda i, r: seen.append((i, r["count"])))
    assert seen == [(0, 4), (1, 5), (2, 6)]


@pytest.mark.parametrize("source", ["tps", "basin_md"])
def test_an_interrupted_source_resumes_to_the_same_frames(tmp_path, source):
    """TPS / basin MD with a store: tasks recorded before an interruption
    are not run again, and the frames equal those of an uninterrupted run
    without a store, value for value."""
    from mtcv_core.interfaces import MDSettings
    from mtcv_sampling import TPS, BasinMD
    from mtcv_systems import MullerBrown5D

    system = MullerBrown5D()
    md = MDSettings(temperature_K=300.0, timestep_fs=1.0, friction_per_fs=0.01, engine="fast")
    if source == "tps":
        src = TPS(chains=4, shots_per_chain=2, burn_in_shots=1, stride=20, walkers_per_task=1,
                  shooting_energy_width_eV=0.05, max_segment_steps=5000)
    else:
        src = BasinMD(trajectories_per_basin=4, n_steps=200, stride=10, equilibration_steps=50,
                      walkers_per_task=1)
    assert src.stores_partial_results
    plain = src.run(system, seed=3, md=md)
    store = tmp_path / "tasks"
    src.run(system, seed=3, md=md, store=store)
    records = sorted(store.glob("task_*.json"))
    assert len(records) >= 4
    for r in records[1::2]:
        r.unlink()
    resumed = src.run(system, seed=3, md=md, store=store)
    assert resumed.sizes["frame"] == plain.sizes["frame"] > 0
    for name in plain.data_vars:
        np.testing.assert_array_equal(resumed[name].values, plain[name].values, err_msg=name)
