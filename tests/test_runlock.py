"""One run per output directory (mtcv_core.runlock)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from mtcv_core.runlock import LOCK_NAME, RunLock, RunLockedError, read_lock

TINY = """
name = "lock"
system = "muller_brown_5d"
seed = 3
[execution]
workers = 1
[sample.sources.basin_md]
trajectories_per_basin = 2
n_steps = 100
stride = 10
equilibration_steps = 10
walkers_per_task = 2
"""

HOLD = """
import sys, time
from mtcv_core.runlock import RunLock
with RunLock(sys.argv[1]):
    print("locked", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def _holder(path, seconds=60):
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_held_directory_is_refused_naming_the_holder(tmp_path):
    proc = _holder(tmp_path)
    try:
        with pytest.raises(RunLockedError, match=rf"{tmp_path}.*pid {proc.pid} on "):
            RunLock(tmp_path).acquire()
    finally:
        proc.kill()
        proc.wait()
    # the kernel dropped the dead holder's lock: taken over, with a message
    with pytest.warns(RuntimeWarning, match=f"taking over the lock.*pid {proc.pid}"):
        lock = RunLock(tmp_path).acquire()
    info = json.loads((tmp_path / LOCK_NAME).read_text())
    assert info["pid"] == os.getpid() and "released" not in info
    lock.release()
    assert json.loads((tmp_path / LOCK_NAME).read_text())["released"] is True
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a released lock is taken without a word
        RunLock(tmp_path).acquire().release()


def test_second_mtcv_run_into_a_running_directory_is_refused(tmp_path, reliability_counts):
    """Two `mtcv run` into one --out at once: the second exits 2 at once with
    one line naming the directory and the holder (with or without --resume);
    the first finishes with a valid summary; afterwards --resume works."""
    cfg = tmp_path / "lock.toml"
    cfg.write_text(TINY)
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mtcv_core.cli", "run", str(cfg), "--out", str(out),
           "--until", "sample", "--quiet"]
    first = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while read_lock(out).get("pid") != first.pid or read_lock(out).get("stage") != "sample":
        assert first.poll() is None, first.stderr.read()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    for extra in ([], ["--resume"]):
        t0 = time.monotonic()
        second = subprocess.run(cmd + extra, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and str(out) in lines[0] and f"pid {first.pid}" in lines[0]
        assert "in stage sample" in lines[0]
        assert time.monotonic() - t0 < 60
        reliability_counts["concurrent_refused"] += 1
    assert first.wait(timeout=300) == 0, first.stderr.read()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages_done"] == ["sample"] and summary["n_train"] > 0
    again = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
