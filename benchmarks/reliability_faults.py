"""Reliability of ``mtcv run`` (issues #9 and #24): writes ``docs/reliability.md``.

Two parts, both counted on the page:

1. Bad input and failures, by the test suite (slow tests included): runs
   ``pytest`` on ``tests/test_reliability_input.py`` (hypothesis-fuzzed
   configs, frame datasets, trajectory files, model files),
   ``tests/test_reliability_md.py`` (injected blow-ups),
   ``tests/test_reliability_plugins.py`` (failing third-party plugins) and the
   second round: concurrent runs (``tests/test_runlock.py``), a full disk in
   every stage, SIGTERM / SIGINT in every stage (:func:`signal_campaign`),
   outputs altered behind a run's back, absurd sizes
   (``tests/test_footprint.py``) and the sanity gates; collects how many
   inputs and faults each tried (``MTCV_RELIABILITY_COUNTS``).
2. Fault injection: an uninterrupted run of a tiny config, then the same
   config run again with ``SIGKILL`` sent to its whole process group (the CLI
   and its Dask workers) at seeded random moments in each stage, ``--resume``
   after every kill. After every kill every file under its final name in the
   run directory must be whole (each ``.nc`` reads with mtcv's validating
   readers, ``.json`` parses, ``model.pt`` loads weights-only, ``cv.ts``
   loads, each ``.png`` decodes) and no process of the group may survive; at
   the end ``summary.json`` (timings aside), ``data.nc``, ``umbrella.nc`` and
   ``fes.nc`` must equal the uninterrupted run's.

Usage: python benchmarks/reliability_faults.py [--kills-per-stage N] [--seed S] [--no-tests]
Last line: JSON with the counts: ``faults_injected``, ``inputs_tried``,
``data_lost``, ``concurrent_refused``, ``disk_full_clean``, ``sigterm_clean``,
``sigint_clean``, ``orphan_processes``, ``absurd_refused``,
``corruptions_detected``, ``corruptions_tried``.
``tests/test_reliability_pipeline.py`` runs part 2 at a smaller setting
(``-m slow``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import emit, machine  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "reliability.md"
from mtcv_core.pipeline import STAGES  # noqa: E402

#: the run the faults are injected into: every stage, tiny settings
CONFIG = """
name = "reliability"
system = "muller_brown_5d"
seed = 9
[execution]
workers = 2
[sample]
test_fraction = 0.25
[sample.sources.basin_md]
trajectories_per_basin = 4
n_steps = 200
stride = 10
equilibration_steps = 20
walkers_per_task = 2
[train]
epochs = 5
warmup_epochs = 2
batch_size = 128
hidden = [16, 8]
heads = { classifier = {}, energy = { n_bins = 1 } }
[umbrella]
sampler_options = { n_windows = 5, max_refinements = 1, walkers_per_window = 2, n_steps = 300, \
equilibration_steps = 30, stride = 10, windows_per_task = 2 }
reference_sampler_options = { grid_spacing = 8.0 }
[estimate]
options = { n_bins = 10, n_bootstraps = 0 }
"""

TEST_FILES = ["tests/test_reliability_input.py", "tests/test_reliability_md.py",
              "tests/test_reliability_plugins.py", "tests/test_runlock.py",
              "tests/test_footprint.py", "tests/test_sanity.py",
              "tests/test_pipeline.py::test_a_full_disk_in_any_stage_is_one_clear_error_and_resumes",
              "tests/test_pipeline.py::"
              "test_a_full_disk_in_the_ensemble_stage_is_one_clear_error_and_resumes",
              "tests/test_pipeline.py::test_a_signal_stops_the_run_cleanly_and_it_resumes",
              "tests/test_pipeline.py::test_killed_during_umbrella_resumes_to_the_same_summary",
              "tests/test_pipeline.py::test_resume_detects_a_changed_output_and_reruns_from_its_stage",
              "tests/test_pipeline.py::test_resume_detects_a_changed_ensemble_output",
              "tests/test_pipeline.py::test_resume_after_a_corrupted_fes_reruns_to_the_same_summary",
              "tests/test_pipeline.py::test_a_cv_that_separates_nothing_is_said_out_loud",
              "tests/test_reliability_pipeline.py::"
              "test_a_signal_in_every_stage_stops_cleanly_and_resumes"]
#: counts of the second round (issue #24) reported on the page and the last line
ROUND_TWO = ("concurrent_refused", "disk_full_clean", "sigterm_clean", "sigint_clean",
             "orphan_processes", "absurd_refused", "corruptions_detected", "corruptions_tried")


# ------------------------------------------------------------------ runs
def launch(config: Path, out: Path, *, resume: bool) -> subprocess.Popen:
    """``mtcv run`` in its own session (process group), quiet; its stderr
    goes to ``OUT.log`` (a pipe could fill up and stall it)."""
    cmd = [sys.executable, "-m", "mtcv_core.cli", "run", str(config), "--out", str(out),
           "--quiet"] + (["--resume"] if resume else [])
    with open(out.parent / f"{out.name}.log", "ab") as log:
        return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log,
                                start_new_session=True, cwd=ROOT)


def log_tail(out: Path, n: int = 2000) -> str:
    path = out.parent / f"{out.name}.log"
    return path.read_text(errors="replace")[-n:] if path.exists() else ""


def group_members(pgid: int) -> list[int]:
    """Live processes (not zombies) of process group ``pgid``."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            pids.append(int(stat.parent.name))
    return pids


def kill_group(proc: subprocess.Popen, timeout: float = 20.0) -> int:
    """SIGKILL the whole process group of ``proc``; wait until none of it is
    left. Returns the number of processes that outlived ``timeout`` s."""
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait()
    deadline = time.monotonic() + timeout
    while group_members(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return len(group_members(proc.pid))


def stages_done(out: Path) -> list[str]:
    try:
        return list(json.loads((out / "summary.json").read_text()).get("stages_done", []))
    except (OSError, ValueError):
        return []


def current_stage(out: Path) -> str | None:
    done = stages_done(out)
    return next((s for s in STAGES if s not in done), None)


def before(out: Path, target: str) -> bool:
    """Whether the run in ``out`` has not reached stage ``target`` yet."""
    stage = current_stage(out)
    return stage is not None and STAGES.index(stage) < STAGES.index(target)


def uninterrupted(config: Path, out: Path) -> tuple[dict[str, Any], float]:
    """The reference run: its summary and wall time (s)."""
    t0 = time.perf_counter()
    proc = launch(config, out, resume=False)
    proc.wait()
    if proc.returncode:
        raise RuntimeError(f"the uninterrupted run failed:\n{log_tail(out)}")
    return json.loads((out / "summary.json").read_text()), time.perf_counter() - t0


# ---------------------------------------------------------- whole files
def check_whole(out: Path) -> tuple[int, list[str]]:
    """Open every file under its final name in the run directory with the
    reader meant for it; returns (files checked, problems)."""
    import matplotlib.image
    import torch

    from mtcv_core.export import load_cv
    from mtcv_core.io import read_dataset
    from mtcv_core.model import MultitaskCV
    from mtcv_core.plugins import load_plugins
    from mtcv_umbrella.schema import read_window

    problems, n = [], 0
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        if path.name.startswith(".") and path.name.endswith(".tmp"):
            continue  # a temporary file never carries a final name
        n += 1
        try:
            if path.suffix == ".nc":
                if path.parent.parent.name == "umbrella_windows":
                    read_window(path)
                else:
                    read_dataset(path)  # checks netCDF-3 length, validates the schema
            elif path.suffix == ".json":
                json.loads(path.read_text())
            elif path.name == "model.pt":
                MultitaskCV.load(path, load_plugins())
                torch.load(path, weights_only=True)
            elif path.suffix == ".ts":
                load_cv(path)
            elif path.suffix == ".png":
                matplotlib.image.imread(path)
            elif path.suffix == ".md":
                path.read_text()
        except Exception as exc:  # any failure is a partial or corrupt file
            problems.append(f"{path.relative_to(out)}: {type(exc).__name__}: {exc}")
    return n, problems


def without_timings(summary: dict[str, Any]) -> dict[str, Any]:
    # checksums differ between runs: netCDF files record when they were created
    return {k: v for k, v in summary.items() if k not in ("timings_s", "outputs",
                                                          "peak_rss_GB")}


def compare_outputs(a: Path, b: Path) -> list[str]:
    """Differences between two finished run directories: summary (timings
    aside) and the arrays of data.nc, umbrella.nc and fes.nc."""
    import numpy as np

    from mtcv_core.io import read_dataset

    diffs = []
    sa = without_timings(json.loads((a / "summary.json").read_text()))
    sb = without_timings(json.loads((b / "summary.json").read_text()))
    if sa != sb:
        keys = sorted(k for k in set(sa) | set(sb) if sa.get(k) != sb.get(k))
        diffs.append(f"summary.json differs in {keys}")
    for name in ("data.nc", "umbrella.nc", "fes.nc"):
        da, db = read_dataset(a / name), read_dataset(b / name)
        for var in da.data_vars:
            if var not in db or not np.array_equal(da[var].values, db[var].values,
                                                   equal_nan=True):
                diffs.append(f"{name}: variable {var!r} differs")
    return diffs


# ------------------------------------------------------------ campaign
def fault_campaign(workdir: Path, *, kills_per_stage: int = 2, seed: int = 0,
                   config_text: str = CONFIG, max_passes: int = 3,
                   log: Any = print) -> dict[str, Any]:
    """Kill ``mtcv run`` ``kills_per_stage`` times in each stage at seeded
    random moments, resuming after each kill; check the files after every
    kill and the final outputs against an uninterrupted run. A kill meant for
    one stage may land in a later one (stages take longer or shorter than in
    the uninterrupted run); stages left short get another pass in a fresh
    run directory, up to ``max_passes``.

    Returns counts (``faults_injected``, ``kills_by_stage``,
    ``files_checked``, ``partial_files``, ``surviving_processes``,
    ``outputs_differing``), the problems found and the timings (s)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.toml"
    config.write_text(config_text)
    t_start = time.perf_counter()
    reference, wall = uninterrupted(config, workdir / "reference")
    timings = reference["timings_s"]
    overhead = max(1.0, wall - sum(timings.values()))  # start-up: imports, plugins, cluster
    log(f"uninterrupted run: {wall:.1f} s ({timings}, start-up {overhead:.1f} s)")
    rng = random.Random(seed)
    counts: Counter = Counter()
    problems: list[str] = []
    kills: list[dict[str, Any]] = []
    quota = dict.fromkeys(STAGES, kills_per_stage)
    for n_pass in range(max_passes):
        if not any(quota.values()):
            break
        # a fresh run directory per pass: a kill that lands in a later stage
        # than its target leaves the earlier stages to the next pass
        out = workdir / f"killed_{n_pass}"
        started = False
        for target in STAGES:
            while quota[target] > 0 and not (started and current_stage(out) is None):
                if started and not before(out, target) and current_stage(out) != target:
                    break  # the run is past the target: the next pass gets it
                waits = before(out, target)  # earlier stages to run first in this launch
                proc = launch(config, out, resume=started)
                started = True
                t0 = time.monotonic()
                while before(out, target) and proc.poll() is None:
                    time.sleep(0.02)  # until the stages before the target are recorded
                if target == "sample":  # from the launch: start-up included
                    t_kill = t0 + rng.uniform(0.0, overhead + 0.8 * timings["sample"])
                else:  # within the stage's own work (after the start-up if it runs first)
                    t_kill = (time.monotonic() + (0.0 if waits else overhead)
                              + rng.uniform(0.0, 0.8 * timings.get(target, 1.0)))
                while time.monotonic() < t_kill and proc.poll() is None:
                    time.sleep(0.01)
                at = current_stage(out)
                if proc.poll() is not None:  # finished (or failed) before the kill
                    if proc.returncode:
                        problems.append(f"run failed before a kill: {log_tail(out)}")
                        break
                    counts["runs_finished_before_kill"] += 1
                    continue
                survivors = kill_group(proc)
                counts["faults_injected"] += 1
                counts[f"kills_in_{at or 'finished_run'}"] += 1
                if at in quota:
                    quota[at] = max(0, quota[at] - 1)
                counts["surviving_processes"] += survivors
                n, bad = check_whole(out)
                counts["files_checked"] += n
                counts["partial_files"] += len(bad)
                problems += bad
                kills.append({"kill": counts["faults_injected"], "pass": n_pass,
                              "target": target, "stage": at,
                              "after_launch_s": round(time.monotonic() - t0, 1),
                              "files_whole": n - len(bad), "partial": len(bad),
                              "survivors": survivors})
                log(f"kill {counts['faults_injected']} (pass {n_pass}): target {target}, in "
                    f"stage {at}, {time.monotonic() - t0:.1f} s after launch; {n} files whole"
                    + (f"; PROBLEMS {bad}" if bad else "")
                    + (f"; {survivors} processes survived" if survivors else ""))
        proc = launch(config, out, resume=started)
        proc.wait()
        counts["resumed_runs_compared"] += 1
        if proc.returncode:
            problems.append(f"the final --resume of pass {n_pass} failed: {log_tail(out)}")
            diffs = ["no final outputs"]
        else:
            n, bad = check_whole(out)
            counts["files_checked"] += n
            counts["partial_files"] += len(bad)
            problems += bad
            diffs = compare_outputs(workdir / "reference", out)
        counts["outputs_differing"] += len(diffs)
        problems += [f"pass {n_pass}: {d}" for d in diffs]
        log(f"pass {n_pass}: resumed to the end; outputs "
            + ("equal the uninterrupted run's" if not diffs else f"DIFFER: {diffs}"))
    return {"counts": dict(counts), "problems": problems, "kills": kills,
            "reference_wall_s": round(wall, 1), "overhead_s": round(overhead, 1),
            "campaign_s": round(time.perf_counter() - t_start, 1),
            "stage_timings_s": timings}


def stack_dump(pid: int) -> str:
    """The Python stacks of process ``pid`` by ``py-spy dump`` (if installed)."""
    import shutil

    if shutil.which("py-spy") is None:
        return "(py-spy not installed: pip install py-spy for the stacks)"
    res = subprocess.run(["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True)
    return (res.stdout or res.stderr)[-6000:]


#: the run the signals are sent into: CONFIG with a CV ensemble of two, so
#: that the ensemble stage has work to interrupt
SIGNAL_CONFIG = CONFIG + "[ensemble]\nmembers = 2\n"
EXIT_CODES = {"SIGTERM": 143, "SIGINT": 130}


#: what each stage leaves besides its main outputs (integrity.STAGE_OUTPUTS)
STAGE_DIRS = {"sample": ("sample",), "umbrella": ("umbrella_windows",),
              "ensemble": ("ensemble",), "report": ("figures",)}


def truncated_copy(reference: Path, out: Path, stage: str) -> None:
    """A copy of the finished run ``reference`` at ``out`` as it was before
    ``stage`` began: that stage's and the later stages' outputs removed and
    ``stages_done`` cut, so that ``--resume`` starts at ``stage``."""
    import shutil

    from mtcv_core.integrity import STAGE_OUTPUTS

    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(reference, out)
    later = STAGES[STAGES.index(stage):]
    for name in later:
        for rel in STAGE_OUTPUTS.get(name, ()):
            (out / rel).unlink(missing_ok=True)
        for rel in STAGE_DIRS.get(name, ()):
            shutil.rmtree(out / rel, ignore_errors=True)
    summary = json.loads((out / "summary.json").read_text())
    summary["stages_done"] = [s for s in summary["stages_done"] if s not in later]
    for key in ("timings_s", "peak_rss_GB", "outputs"):
        for name in later:
            summary.get(key, {}).pop(name, None)
    (out / "summary.json").write_text(json.dumps(summary))


def signal_campaign(workdir: Path, sig: str, *, seed: int = 0, config_text: str = SIGNAL_CONFIG,
                    stages: tuple[str, ...] = STAGES, to_group: bool | None = None,
                    log: Any = print) -> dict[str, Any]:
    """Send ``sig`` (``"SIGTERM"`` or ``"SIGINT"``) to ``mtcv run`` in each
    of ``stages``: for each, a copy of an uninterrupted run cut back to just
    before the stage (:func:`truncated_copy`) is resumed, and the signal
    comes at a seeded moment within the first 80 % of the stage's duration in
    the uninterrupted run, counted from the moment the run notes the stage in
    its lock record (:func:`mtcv_core.runlock.read_lock`); a stage that ends
    before its signal is tried again from a fresh copy, sooner. Checked per
    signal: the exit status (143 / 130) within 30 s, one line naming the
    signal and the stage with the resume command, no process of the run's
    session left, no temporary file, every file whole; then the run is
    resumed to the end and its summary (timings aside) and arrays must equal
    the uninterrupted run's. ``to_group`` (default: for SIGINT) sends the
    signal to the run's whole process group, Dask workers included, as Ctrl-C
    in a terminal does; otherwise to the ``mtcv`` process alone, as a batch
    scheduler or ``kill`` does.

    Returns ``clean`` (signals with every check passed and the resumed run
    equal), ``per_stage`` records, ``problems`` and ``outputs_differing``."""
    from mtcv_core.runlock import read_lock

    workdir.mkdir(parents=True, exist_ok=True)
    config = workdir / "config.toml"
    config.write_text(config_text)
    reference, _ = uninterrupted(config, workdir / "reference")
    timings = reference["timings_s"]
    rng = random.Random(seed)
    group = to_group if to_group is not None else sig == "SIGINT"
    problems: list[str] = []
    records: list[dict[str, Any]] = []
    differing = 0
    for target in stages:
        out = workdir / f"{sig.lower()}_{target}"
        rec: dict[str, Any] | None = None
        for attempt in range(5):  # the stage may end before its signal: sooner each time
            truncated_copy(workdir / "reference", out, target)
            proc = launch(config, out, resume=True)
            mark = len(log_tail(out, 10**7))
            while proc.poll() is None and not (read_lock(out).get("pid") == proc.pid
                                               and read_lock(out).get("stage") == target):
                time.sleep(0.005)  # until this run notes the stage
            time.sleep(rng.uniform(0.0, 0.8 * timings.get(target, 0.1)) / (1 + 2 * attempt))
            if proc.poll() is not None:
                if proc.returncode:
                    problems.append(f"{sig} {target}: run failed before the signal: "
                                    f"{log_tail(out)}")
                continue
            t0 = time.monotonic()
            if group:
                os.killpg(proc.pid, getattr(signal, sig))
            else:
                os.kill(proc.pid, getattr(signal, sig))
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                code = None
                problems.append(f"{sig} in {target}: no exit after 30 s; where it hung:\n"
                                + stack_dump(proc.pid))
            seconds = time.monotonic() - t0
            deadline = time.monotonic() + 10
            while group_members(proc.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            left = kill_group(proc, timeout=5) if group_members(proc.pid) else 0
            lines = [ln for ln in log_tail(out, 10**7)[mark:].splitlines() if f"({sig})" in ln]
            stage = (lines[0].split(" in stage ", 1)[1].split(":", 1)[0]
                     if lines and " in stage " in lines[0] else None)
            if code == 0 or (code is not None and stage != target):
                continue  # the stage ended before the signal came
            temporaries = [str(p.relative_to(out)) for p in out.rglob(".*.tmp")]
            n, bad = check_whole(out)
            checks = {"exit_code": code == EXIT_CODES[sig], "within_30_s": code is not None,
                      "one_line_with_resume": len(lines) == 1 and "--resume" in lines[0],
                      "no_process_left": left == 0, "no_temporary_file": not temporaries,
                      "files_whole": not bad}
            rec = {"signal": sig, "target": target, "stage": stage, "attempt": attempt,
                   "exit_code": code, "seconds": round(seconds, 2), "processes_left": left,
                   "temporaries": temporaries, "files_checked": n,
                   "clean": all(checks.values())}
            failed = [k for k, ok in checks.items() if not ok]
            if failed:
                problems.append(f"{sig} in {target}: failed {failed}; {bad}"
                                f"{log_tail(out, 1500) if not lines else ''}")
            break
        if rec is None:
            problems.append(f"{sig}: no signal landed in stage {target} in 5 attempts")
            continue
        proc = launch(config, out, resume=True)
        proc.wait()
        diffs = (compare_outputs(workdir / "reference", out) if proc.returncode == 0
                 else [f"the final --resume failed: {log_tail(out)}"])
        rec["resumed_equal"] = not diffs
        rec["clean"] = rec["clean"] and not diffs
        differing += len(diffs)
        problems += [f"{sig} in {target}, resumed: {d}" for d in diffs]
        records.append(rec)
        log(f"{sig} in {target} (attempt {rec['attempt']}): exit {rec['exit_code']} after "
            f"{rec['seconds']:.2f} s; resumed to the end: "
            + ("equal to the uninterrupted run" if not diffs else f"DIFFERS {diffs}"))
    return {"clean": sum(r["clean"] for r in records), "per_stage": records,
            "problems": problems, "outputs_differing": differing}


# --------------------------------------------------------------- tests
def run_tests() -> tuple[dict[str, int], str, float]:
    """The reliability tests with their counts; returns (counts, pytest's
    summary line, seconds)."""
    with tempfile.TemporaryDirectory() as tmp:
        counts_path = Path(tmp) / "counts.json"
        env = dict(os.environ, MTCV_RELIABILITY_COUNTS=str(counts_path))
        t0 = time.perf_counter()
        res = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                              "-m", "slow or not slow", *TEST_FILES], cwd=ROOT, env=env,
                             capture_output=True, text=True)
        seconds = time.perf_counter() - t0
        lines = [ln for ln in res.stdout.strip().splitlines() if ln.strip()]
        summary = lines[-1].strip("= ") if lines else "no output"
        if res.returncode:
            log_path = ROOT / "runs" / "reliability_tests.log"
            log_path.parent.mkdir(parents=True, exist_ok=True)
            log_path.write_text(res.stdout + res.stderr)
            failures = res.stdout.split("= FAILURES =")[-1][:6000]
            raise RuntimeError(f"the reliability tests failed (full output: {log_path}):\n"
                               f"{failures}")
        counts = json.loads(counts_path.read_text()) if counts_path.exists() else {}
    return counts, summary, seconds


# ---------------------------------------------------------------- page
def _group(counts: dict[str, int], prefix: str) -> tuple[int, str]:
    items = {k[len(prefix):]: v for k, v in counts.items() if k.startswith(prefix)}
    return sum(items.values()), ", ".join(f"{k.replace('_', ' ')} {v}"
                                          for k, v in sorted(items.items()))


def write_page(tests: dict[str, Any] | None, campaign: dict[str, Any], args: Any) -> str:
    c = campaign["counts"]
    kills = ", ".join(f"{s} {c.get(f'kills_in_{s}', 0)}" for s in STAGES)
    lost = c.get("partial_files", 0) + c.get("outputs_differing", 0)
    lines = [
        "# Reliability",
        "",
        "Written by `python benchmarks/reliability_faults.py"
        f" --kills-per-stage {args.kills_per_stage} --seed {args.seed}` "
        f"on {machine()}; nothing here is typed by hand.",
        "",
        "## What is guaranteed",
        "",
        "| guarantee | how it is tested |",
        "|---|---|",
        "| A bad config (wrong type, unknown key, unknown plugin, negative/NaN/infinite "
        "numbers, out-of-range values, not TOML, not UTF-8) fails before anything runs "
        "with ONE line `mtcv: error: FILE: KEY: ...` naming the key, the value and what "
        "was expected (exit status 2); an existing run directory keeps every file's bytes "
        "and mtime, and no new one is created | `tests/test_reliability_input.py` "
        "(hypothesis), every example run twice: `--resume` into a populated run "
        "directory and into a fresh one |",
        "| A bad frame dataset (missing variable, wrong dims/units/dtype, NaN/inf "
        "positions, energies or forces, no frames/atoms, labels out of range, bad "
        "masses, random bytes, a file cut short) is refused with a SchemaError or "
        "DatasetError naming the file and the variable; a netCDF-3 file shorter than its "
        "header says is refused (the netCDF library would read the missing tail as "
        "zeros) | `tests/test_reliability_input.py` (hypothesis) |",
        "| A bad structure/trajectory file for `trajectory_files` (random bytes, cut "
        "short, empty, wrong atom count, no energies, NaN/inf values) gives one "
        "DatasetError/SchemaError naming the file; missing files and an empty split are "
        "config errors found before the run starts | `tests/test_reliability_input.py` "
        "(hypothesis) |",
        "| `model.pt` loads with `torch.load(..., weights_only=True)`: a file crafted to "
        "run code on load (`__reduce__`, as a zip archive, a legacy torch file or a bare "
        "pickle) is refused with a ModelFileError and the code never runs; random bytes, "
        "a truncated file, another payload, weights of another architecture or a config "
        "naming a missing plugin give one ModelFileError naming the file | "
        "`tests/test_reliability_input.py` |",
        "| An MD blow-up (NaN/inf positions or energy, or \\|energy\\| > 1e6 eV) is caught "
        "in the step it happens in (batched engine, batched propagator, umbrella "
        "engine, ASE path); the trajectory, TPS shot or umbrella window is dropped and "
        "reported with its seed, random stream and step (warning, dataset attribute "
        "`blow_ups`, `summary.json[\"blow_ups\"]`); every other walker finishes, and "
        "where walkers have their own streams (batched basin MD, umbrella windows) with "
        "exactly the samples it has without the blow-up | `tests/test_reliability_md.py` |",
        "| A third-party plugin that raises while registering is listed by `mtcv plugins` "
        "as broken while the rest work; one that raises while its component is built or "
        "runs (in the CLI or in a Dask worker) is named with its plugin and version in "
        "one error line (`MTCV_TRACEBACK=1` adds its traceback) | "
        "`tests/test_plugins.py`, `tests/test_reliability_plugins.py` |",
        "| The same config and seed give the same `summary.json` (timings aside) and "
        "the same arrays (`data.nc`, `umbrella.nc`, `fes.nc`) with 1 and 2 Dask workers | "
        "`tests/test_reliability_pipeline.py`: thread workers in the default suite, "
        "`mtcv run --workers 1/2` with `-m slow` |",
        "| `SIGKILL` to the whole run (CLI and Dask workers) at any moment never leaves a "
        "partial file under a final name, and `--resume` finishes with the outputs of an "
        "uninterrupted run; temporary files a kill leaves are removed on resume | "
        "this page (below); `tests/test_pipeline.py` (umbrella kill), "
        "`tests/test_reliability_pipeline.py` (`-m slow`) |",
        "| One run per directory: a second `mtcv run` into a running directory (with or "
        "without `--resume`) exits 2 at once naming the holder (pid, host, start time); "
        "the first finishes with a valid summary; a dead holder's lock is taken over with "
        "a warning | `tests/test_runlock.py` |",
        "| A full disk (ENOSPC injected at the first write of each stage) ends the run with "
        "one error naming the stage, the file and the free space; no temporary file, no "
        "final file changed; `--resume` completes with the uninterrupted summary | "
        "`tests/test_pipeline.py` (`full_disk`) |",
        "| SIGTERM (to the mtcv process, as a batch scheduler sends it) and SIGINT (to the "
        "whole process group, as Ctrl-C does), once in each stage: the run stops within "
        "seconds (exit 143 / 130) with one line naming the signal, the stage and the resume "
        "command, shuts down the Dask cluster (no process of the run's session left), "
        "leaves no temporary file and no partial file; the run resumed to the end has the "
        "uninterrupted run's summary (timings aside) and arrays | "
        "`tests/test_reliability_pipeline.py` (`signal_in_every_stage`, `-m slow`, "
        "`signal_campaign` here), `tests/test_pipeline.py` (`signal`) |",
        "| Absurd sizes (1e9 basin trajectories, 1e12 umbrella steps) are refused at "
        "validation with the estimate and the machine's limit; nothing is written | "
        "`tests/test_footprint.py` |",
        "| Each stage's output truncated, altered or deleted is found on `--resume` (size + "
        "SHA-256 in `summary.json`), and the stage and the later ones run again | "
        "`tests/test_pipeline.py` (`changed_output`, `corrupted_fes`) |",
        "| A CV that separates nothing (accuracy not clearly better than chance), windows "
        "without overlap, an MBAR that did not converge: a warning line, "
        "`summary.json[\"warnings\"]`, a report banner; `--strict` fails | "
        "`tests/test_sanity.py`, `tests/test_pipeline.py` (`separates_nothing`) |",
        "",
        "## Counts",
        "",
        "| what | count |",
        "|---|---|",
    ]
    if tests is not None:
        counts = tests["counts"]
        for prefix, what in (("configs_", "bad configs tried"),
                             ("datasets_", "bad frame datasets tried"),
                             ("trajectory_files_", "bad trajectory files tried"),
                             ("model_files_", "bad model files tried")):
            total, detail = _group(counts, prefix)
            lines.append(f"| {what} | {total} ({detail}) |")
        lines.append(f"| MD blow-ups injected | {counts.get('md_blow_ups_injected', 0)} |")
        lines.append(f"| failing plugins injected | "
                     f"{counts.get('plugin_failures_injected', 0)} |")
        for key in ROUND_TWO:
            lines.append(f"| {key.replace('_', ' ')} | {counts.get(key, 0)} |")
        lines.append(f"| reliability tests | {tests['summary']} ({tests['seconds']:.0f} s) |")
    lines += [
        f"| faults injected (SIGKILL to the process group) | {c.get('faults_injected', 0)} "
        f"(by the stage running: {kills}) |",
        f"| runs that finished before their kill | {c.get('runs_finished_before_kill', 0)} |",
        f"| killed runs resumed to the end and compared | "
        f"{c.get('resumed_runs_compared', 0)} |",
        f"| files checked whole after the kills | {c.get('files_checked', 0)} |",
        f"| partial or unreadable files under a final name | {c.get('partial_files', 0)} |",
        f"| processes that survived a kill | {c.get('surviving_processes', 0)} |",
        f"| final outputs differing from the uninterrupted run | "
        f"{c.get('outputs_differing', 0)} |",
        f"| **data lost** | **{lost}** |",
        "",
        f"The uninterrupted run of the tiny config (`CONFIG` in the script: 5D Müller-Brown, "
        f"basin MD, training, umbrella windows with one refinement and the true-CV "
        f"reference, MBAR, report; 2 Dask workers) took {campaign['reference_wall_s']} s "
        f"(stages: {campaign['stage_timings_s']}, start-up {campaign['overhead_s']} s); "
        f"the whole campaign {campaign['campaign_s']} s. Each kill comes at a seeded "
        "moment uniform in 80 % of its stage's duration in the uninterrupted run, counted "
        "from the moment the stage begins (for `sample`: from the launch, start-up "
        "included); after each kill every file is checked, and the next launch resumes.",
        "",
        "### The kills",
        "",
        "| kill | pass | aimed at | stage running | s after launch | files whole | partial "
        "| processes left |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += [f"| {k['kill']} | {k['pass']} | {k['target']} | {k['stage']} | "
              f"{k['after_launch_s']} | {k['files_whole']} | {k['partial']} | {k['survivors']} |"
              for k in campaign["kills"]]
    lines += [
        "",
        "## Not guaranteed",
        "",
        "- Bit flips in a file after it was written are detected on `--resume` (the "
        "stage's recorded SHA-256) but not by a run that reads the file in the same "
        "session.",
        "- Power loss: writes are fsynced before the rename, the directory entry is not.",
        "- On the ASE path the walkers of a task draw from one stream one after the "
        "other, so a blow-up changes the samples of the walkers after it (they are "
        "still kept).",
    ]
    if campaign["problems"]:
        lines += ["", "## Problems found in this run", ""]
        lines += [f"- {p}" for p in campaign["problems"]]
    text = "\n".join(lines) + "\n"
    from mtcv_core.io import atomic_path

    with atomic_path(PAGE) as tmp:
        tmp.write_text(text)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills-per-stage", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-tests", action="store_true", help="skip part 1 (the tests)")
    parser.add_argument("--workdir", default=None, help="keep the run directories here")
    args = parser.parse_args(argv)
    tests = None
    if not args.no_tests:
        counts, summary, seconds = run_tests()
        tests = {"counts": counts, "summary": summary, "seconds": seconds}
        print(f"tests: {summary} in {seconds:.0f} s", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir) if args.workdir else Path(tmp)
        campaign = fault_campaign(work, kills_per_stage=args.kills_per_stage, seed=args.seed,
                                  log=lambda m: print(m, flush=True))
    write_page(tests, campaign, args)
    c = campaign["counts"]
    figures = {"faults_injected": c.get("faults_injected", 0),
               "partial_files": c.get("partial_files", 0),
               "outputs_differing": c.get("outputs_differing", 0),
               "data_lost": c.get("partial_files", 0) + c.get("outputs_differing", 0)}
    if tests is not None:
        for key in ROUND_TWO:
            figures[key] = tests["counts"].get(key, 0)
        figures["inputs_tried"] = sum(v for k, v in tests["counts"].items()
                                      if k.split("_")[0] in ("configs", "datasets",
                                                             "trajectory", "model"))
    emit(figures)
    return 0 if figures["data_lost"] == 0 and not campaign["problems"] else 1


if __name__ == "__main__":
    sys.exit(main())
