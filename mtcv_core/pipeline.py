"""The ``mtcv run`` pipeline: sample -> train -> umbrella -> estimate ->
rate -> ensemble -> report.

Each stage writes its output into the run directory atomically and records
itself in ``DIR/summary.json``; ``--resume`` reuses the outputs of stages
already completed; ``--until`` stops after the named stage.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from mtcv_core.config import ConfigError, doc, from_mapping, load_toml, positive
from mtcv_core.errors import DiskFullError, Terminated
from mtcv_core.io import DatasetError
from mtcv_core.resources import PeakMemory, release_free_memory
from mtcv_core.runlock import RunLock
from mtcv_core.stages.context import RunContext

#: the stage names, in order (the runners: :data:`mtcv_core.stages.STAGES`)
STAGES = ("sample", "train", "umbrella", "estimate", "rate", "ensemble", "report")

#: largest seed: seeds are stored as 32-bit netCDF attributes
MAX_SEED = 2**31 - 1


@dataclass
class ExecutionConfig:
    """Where independent tasks run."""

    workers: int = positive(2, "Dask workers: of the local cluster, or the batch "
                                "cluster's workers to start (its jobs hold "
                                "jobqueue.processes workers each)")
    scheduler: str | None = doc(None, "address of an existing Dask scheduler")
    cluster: Literal["local", "slurm", "pbs", "sge", "lsf", "htcondor", "oar", "moab"] = doc(
        "local", "where the workers run: a local cluster, or batch jobs through "
                 "dask-jobqueue (pip install -e '.[cluster]'; docs/cluster.md)")
    jobqueue: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "options of the dask-jobqueue cluster class (cores, memory, processes, "
               "walltime, queue, account, job_extra_directives, job_script_prologue, ...); "
               "mtcv's defaults: cores = processes = 1, memory = '4GB'"})

    def __post_init__(self) -> None:
        from mtcv_core.execution import check_jobqueue_options, check_scheduler_address

        if self.scheduler is not None:
            check_scheduler_address(self.scheduler, "execution.scheduler")
        if self.scheduler is not None and self.cluster != "local":
            raise ConfigError(f"execution: scheduler ({self.scheduler}) and cluster = "
                              f"{self.cluster!r} both say where to run; give one")
        if self.jobqueue and self.cluster == "local":
            raise ConfigError("execution.jobqueue: options for a batch cluster, but "
                              "execution.cluster is 'local' (set e.g. cluster = 'slurm')")
        if self.cluster != "local":
            check_jobqueue_options(self.cluster, self.jobqueue, "execution.jobqueue")


@dataclass
class SampleConfig:
    """The sample stage: data sources and their options."""

    sources: dict[str, Any] = field(default_factory=dict)
    test_fraction: float = field(default=0.2, metadata={"gt": 0, "max": 0.9,
                                                        "doc": "share of the test split"})
    engine: Literal["fast", "ase"] = doc("fast", "'fast' (batched walkers where possible) or "
                                               "'ase'")
    timestep_fs: float = positive(1.0, "MD time step, fs")
    friction_per_fs: float = positive(0.01, "Langevin friction, 1/fs")
    train_temperature_K: float | None = field(default=None, metadata={
        "gt": 0, "doc": "temperature of the train split, K (default: the run's)"})
    test_temperature_K: float | None = field(default=None, metadata={
        "gt": 0, "doc": "temperature of the test split, K (default: the train split's); the "
                        "paper trains alanine dipeptide's CV at 120 K and tests it at 100 K"})


@dataclass
class RunConfig:
    """A whole run (one TOML file)."""

    system: str
    name: str = doc("run", "name of the run (default output directory runs/<name>)")
    seed: int = field(default=0, metadata={
        "min": 0, "max": MAX_SEED, "doc": "master random seed (0 to 2**31 - 1)"})
    temperature_K: float = positive(300.0, "temperature, K")
    system_options: dict[str, Any] = field(default_factory=dict)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    train: dict[str, Any] = field(default_factory=dict)
    umbrella: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] = field(default_factory=dict)
    rate: dict[str, Any] = field(default_factory=dict)
    ensemble: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.name or self.name in (".", "..") or any(c in self.name for c in "/\\\0"):
            raise ConfigError(f"name: expected a plain name for runs/<name> (no path "
                              f"separators), got {self.name!r}")


def load_config(path: str | Path | None) -> tuple[RunConfig, str]:
    raw, where = load_toml(path)
    try:
        return from_mapping(RunConfig, raw), where
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def read_summary(path: Path) -> dict[str, Any]:
    """``summary.json`` of a run; :class:`DatasetError` naming it when it is
    not a JSON object with a ``stages_done`` list of known stages."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not a readable summary.json ({type(exc).__name__}: "
                           f"{exc}); use a new --out directory") from exc
    done = summary.get("stages_done", []) if isinstance(summary, dict) else None
    if not isinstance(done, list) or any(s not in STAGES for s in done):
        raise DatasetError(f"{path}: not an mtcv summary.json (expected an object whose "
                           f"'stages_done' is a list of {list(STAGES)}, got {done!r})")
    return summary


def remove_stale_temporaries(out_dir: Path) -> int:
    """Delete the temporary files (``.NAME.XXXX.tmp``, see
    :func:`mtcv_core.io.atomic_path`) that a killed run left under
    ``out_dir``; they never carry a final name, so nothing reads them, but
    they would pile up over many interruptions. Returns how many."""
    removed = 0
    for tmp in out_dir.rglob(".*.tmp"):
        if tmp.is_file():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def _same_config(stored: dict[str, Any], current_json: str) -> bool:
    """Whether a run's recorded config is the current one, keys added to the
    schema since the run started counting as their defaults."""
    current = json.loads(current_json)
    if stored == current:
        return True
    try:
        completed = json.loads(json.dumps(asdict(from_mapping(RunConfig, stored)),
                                          sort_keys=True))
    except (ConfigError, TypeError, ValueError):
        return False
    return bool(completed == current)


def _run_stages(ctx: RunContext, summary: dict[str, Any], config: RunConfig,
                config_json: str, out_dir: Path, until: str | None, where: str,
                lock: RunLock | None = None) -> None:
    """The stages not done yet, in order, up to ``until``; ``summary.json``
    saved after each, the stage running noted in the ``lock``'s record. An
    interruption (``KeyboardInterrupt``, :class:`~mtcv_core.errors.Terminated`)
    leaves with its ``stage`` attribute set."""
    from mtcv_core.integrity import record_outputs, verify_stages
    from mtcv_core.stages import STAGES as RUNNERS
    from mtcv_core.stages import STAGES_ON_WORKERS

    remove_stale_temporaries(out_dir)
    verify_stages(summary, out_dir, STAGES)
    summary.setdefault("system", config.system)
    summary.setdefault("temperature_K", config.temperature_K)
    summary["config"] = json.loads(config_json)
    summary.setdefault("stages_done", [])
    summary.setdefault("timings_s", {})
    try:
        for stage in STAGES:
            if stage not in summary["stages_done"]:
                t0 = time.perf_counter()
                if lock is not None:
                    lock.note_stage(stage)
                if stage not in STAGES_ON_WORKERS:
                    ctx.release_local_workers()
                try:
                    with PeakMemory() as peak:
                        RUNNERS[stage](ctx)
                except (KeyboardInterrupt, Terminated) as exc:
                    exc.stage = stage  # type: ignore[attr-defined]
                    raise
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
                except DiskFullError as exc:
                    raise DiskFullError(f"stage {stage}: {exc}; make room, then rerun with "
                                        "--resume (finished stages and parts are kept)"
                                        ) from exc.__cause__
                release_free_memory()
                summary["timings_s"][stage] = round(time.perf_counter() - t0, 3)
                summary.setdefault("peak_rss_GB", {})[stage] = round(peak.bytes / 1e9, 3)
                summary["stages_done"].append(stage)
                record_outputs(summary, out_dir, stage)
                ctx.save_summary()
            if stage == until:
                break
    except (KeyboardInterrupt, Terminated):
        ctx.close_client(quick=True)
        raise
    finally:
        ctx.close_client()  # nothing left to close after an interruption
    ctx.save_summary()


def run_pipeline(config_path: str | Path | None = None, *, out: str | Path | None = None,
                 until: str | None = None, resume: bool = False, scheduler: str | None = None,
                 workers: int | None = None, progress: bool = True,
                 strict: bool = False, allow_large: bool = False,
                 cluster: Any = None) -> dict[str, Any]:
    """Run the pipeline; returns the summary (also in ``OUT/summary.json``).

    Tasks run on ``cluster`` when given (a Dask cluster object the caller
    made and closes, e.g. a ``dask_jobqueue.SLURMCluster``), else on
    ``scheduler``, else on the config's ``[execution]`` (a local cluster of
    ``workers``, or a batch cluster, ``cluster = "slurm"`` etc.).

    With ``strict``, a transition whose convergence verdict failed
    (``summary["transitions"][i]["converged"] is False``) raises
    :class:`mtcv_core.errors.ConvergenceError` after every output is written.
    ``allow_large`` skips the refusal of a run that would not fit this
    machine's memory or disk (:mod:`mtcv_core.footprint`)."""
    from mtcv_core.execution import check_scheduler_address, dask_client
    from mtcv_core.plugins import PluginError, build_component, load_plugins
    from mtcv_core.stages import validate

    config, where = load_config(config_path)
    if until is not None and until not in STAGES:
        raise ConfigError(f"--until: unknown stage {until!r}; stages are {list(STAGES)}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int)
                                or workers < 1):
        raise ConfigError(f"--workers: expected an integer >= 1, got {workers!r}")
    if scheduler is not None:
        check_scheduler_address(scheduler, "--scheduler")

    # everything is checked before anything is read or written: a bad config
    # fails naming its own mistake and leaves the output directory as it was
    registry = load_plugins()
    try:
        system = build_component(registry, "system", config.system, config.system_options,
                                 "system_options", name_where="system")
    except (ConfigError, PluginError) as exc:
        raise type(exc)(f"{where}: {exc}") from exc.__cause__
    out_dir = Path(out) if out is not None else Path("runs") / config.name
    summary: dict[str, Any] = {}
    sched = scheduler or config.execution.scheduler
    n_workers = workers or config.execution.workers
    if cluster is None and scheduler is None:
        cluster = config.execution.cluster
    ctx = RunContext(config=config, out=out_dir, registry=registry, system=system,
                     client_factory=lambda: dask_client(
                         sched, n_workers, cluster=cluster,
                         jobqueue=config.execution.jobqueue),
                     progress=progress, summary=summary)
    try:
        validate(ctx, allow_large=allow_large)
    except (ConfigError, PluginError) as exc:
        raise type(exc)(f"{where}: {exc}") from exc.__cause__

    config_json = json.dumps(asdict(config), sort_keys=True)
    summary_path = out_dir / "summary.json"
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out: {out_dir}: cannot create the output directory "
                          f"({type(exc).__name__}: {exc})") from None
    # one run per directory, for the whole run (released on any exit)
    with RunLock(out_dir) as lock:
        if resume and summary_path.exists():
            summary.update(read_summary(summary_path))
            if summary.get("config") and not _same_config(summary["config"], config_json):
                raise ConfigError(f"{out_dir}: --resume with a config different from the "
                                  "one the run started with; use a new --out directory")
        elif summary_path.exists() and not resume:
            raise ConfigError(f"{out_dir} already holds a run (summary.json); pass --resume "
                              "to continue it or choose another --out directory")
        _run_stages(ctx, summary, config, config_json, out_dir, until, where, lock)
    if strict:
        from mtcv_core.convergence import failed_checks
        from mtcv_core.errors import ConvergenceError

        failed = [f"{r['from']}->{r['to']} ({', '.join(failed_checks(r))})"
                  for r in summary.get("transitions", []) if r.get("converged") is False]
        problems = [f"not converged along xi: {'; '.join(failed)}"] if failed else []
        gates = summary.get("warnings", [])
        if gates:
            problems.append(f"{len(gates)} sanity warning(s): "
                            f"{'; '.join(w['message'] for w in gates)}")
        if problems:
            raise ConvergenceError(f"--strict: {' | '.join(problems)}; every output is in "
                                   f"{out_dir} (report.md)")
    return summary
