"""The ``mtcv run`` pipeline: sample -> train -> umbrella -> estimate -> report.

Each stage writes its output into the run directory atomically and records
itself in ``DIR/summary.json``; ``--resume`` reuses the outputs of stages
already completed; ``--until`` stops after the named stage.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from mtcv_core.config import ConfigError, doc, from_mapping, load_toml, positive
from mtcv_core.io import atomic_path

STAGES = ("sample", "train", "umbrella", "estimate", "report")


@dataclass
class ExecutionConfig:
    """Where independent tasks run."""

    workers: int = positive(2, "workers of the local Dask cluster")
    scheduler: str | None = doc(None, "address of an existing Dask scheduler")


@dataclass
class SampleConfig:
    """The sample stage: data sources and their options."""

    sources: dict[str, Any] = field(default_factory=dict)
    test_fraction: float = field(default=0.2, metadata={"gt": 0, "max": 0.9,
                                                        "doc": "share of the test split"})
    engine: str = doc("fast", "'fast' (batched walkers where possible) or 'ase'")
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
    seed: int = doc(0, "master random seed")
    temperature_K: float = positive(300.0, "temperature, K")
    system_options: dict[str, Any] = field(default_factory=dict)
    execution: ExecutionConfig = field(default_factory=ExecutionConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    train: dict[str, Any] = field(default_factory=dict)
    umbrella: dict[str, Any] = field(default_factory=dict)
    estimate: dict[str, Any] = field(default_factory=dict)


def load_config(path: str | Path | None) -> tuple[RunConfig, str]:
    raw, where = load_toml(path)
    try:
        return from_mapping(RunConfig, raw), where
    except ConfigError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def write_json(path: Path, data: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


@dataclass
class RunContext:
    """What the stages share."""

    config: RunConfig
    out: Path
    registry: Any
    system: Any
    client_factory: Callable[[], Any]
    progress: bool
    summary: dict[str, Any]

    def save_summary(self) -> None:
        write_json(self.out / "summary.json", self.summary)


def run_pipeline(config_path: str | Path | None = None, *, out: str | Path | None = None,
                 until: str | None = None, resume: bool = False, scheduler: str | None = None,
                 workers: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run the pipeline; returns the summary (also in ``OUT/summary.json``)."""
    from mtcv_core import stages
    from mtcv_core.execution import dask_client
    from mtcv_core.plugins import load_plugins

    config, where = load_config(config_path)
    if until is not None and until not in STAGES:
        raise ConfigError(f"--until: unknown stage {until!r}; stages are {list(STAGES)}")
    out_dir = Path(out) if out is not None else Path("runs") / config.name
    out_dir.mkdir(parents=True, exist_ok=True)
    config_json = json.dumps(asdict(config), sort_keys=True)
    summary_path = out_dir / "summary.json"
    summary: dict[str, Any] = {}
    if resume and summary_path.exists():
        summary = json.loads(summary_path.read_text())
        if summary.get("config") and summary["config"] != json.loads(config_json):
            raise ConfigError(f"{out_dir}: --resume with a config different from the one "
                              "the run started with; use a new --out directory")
    elif summary_path.exists() and not resume:
        raise ConfigError(f"{out_dir} already holds a run (summary.json); pass --resume to "
                          "continue it or choose another --out directory")
    summary.setdefault("system", config.system)
    summary.setdefault("temperature_K", config.temperature_K)
    summary["config"] = json.loads(config_json)
    summary.setdefault("stages_done", [])
    summary.setdefault("timings_s", {})

    registry = load_plugins()
    system = registry.create("system", config.system, **config.system_options)
    sched = scheduler or config.execution.scheduler
    n_workers = workers or config.execution.workers

    ctx = RunContext(config=config, out=out_dir, registry=registry, system=system,
                     client_factory=lambda: dask_client(sched, n_workers), progress=progress,
                     summary=summary)
    try:
        try:
            stages.validate(ctx)
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        for stage in STAGES:
            if stage in summary["stages_done"]:
                pass
            else:
                runner = getattr(stages, f"run_{stage}", None)
                if runner is None:
                    break
                t0 = time.perf_counter()
                try:
                    runner(ctx)
                except ConfigError as exc:
                    raise ConfigError(f"{where}: {exc}") from None
                summary["timings_s"][stage] = round(time.perf_counter() - t0, 3)
                summary["stages_done"].append(stage)
                ctx.save_summary()
            if stage == until:
                break
    finally:
        stages.close_client(ctx)
    ctx.save_summary()
    return summary
