"""What the stages share: the run's context, typed."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mtcv_core.interfaces import MDSettings, System
from mtcv_core.io import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    from mtcv_core.pipeline import RunConfig
    from mtcv_core.plugins import Registry
    from mtcv_core.stages.estimate import EstimateStageConfig
    from mtcv_core.stages.umbrella import UmbrellaStageConfig
    from mtcv_core.training import TrainConfig


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` as indented JSON at ``path``, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")


@dataclass
class RunContext:
    """What the stages share: the config, the output directory, the plugin
    registry, the system, the Dask client (started on first use), whether to
    show progress bars, and ``summary.json``'s contents. The stage tables
    (``train``, ``umbrella``, ``estimate``) are parsed once, by
    :func:`mtcv_core.stages.validate`, into the typed fields below."""

    config: RunConfig
    out: Path
    registry: Registry
    system: System
    client_factory: Callable[[], Any] | None
    progress: bool
    summary: dict[str, Any]
    train: TrainConfig | None = None
    umbrella: UmbrellaStageConfig | None = None
    estimate: EstimateStageConfig | None = None
    _client: Any = field(default=None, repr=False)

    def client(self) -> Any:
        """The run's ``dask.distributed.Client`` (None: run in this process),
        started on first use."""
        if self._client is None and self.client_factory is not None:
            self._client = self.client_factory()
        return self._client

    def close_client(self, *, quick: bool = False) -> None:
        """Close the client and its local cluster, if one was started. With
        ``quick`` (the run is being interrupted: Ctrl-C reaches the Dask
        workers too, and a cluster whose workers are dying can take minutes
        to close) end the cluster's worker processes first and wait at most a
        few seconds."""
        client, self._client = self._client, None
        if client is None:
            return
        cluster = getattr(client, "cluster", None)
        if not quick:
            client.close()
            if cluster is not None:
                cluster.close()
            return
        # the workers first: a graceful close waits for their running tasks
        end_processes(cluster_worker_pids(cluster))
        for closing in (client, cluster):
            if closing is None:
                continue
            try:
                closing.close(timeout=QUICK_CLOSE_S)
            except Exception:  # noqa: BLE001 - interrupted already; the workers are gone
                pass
        if cluster is not None:
            # distributed's exit hook would close it again, waiting 10 s for
            # the workers ended above to answer
            cluster.shutdown_on_close = False

    def release_local_workers(self) -> None:
        """Close the client when it runs a local cluster this run started
        (its idle worker processes hold a few hundred MB each); the next
        :meth:`client` call starts a new one. A scheduler or batch cluster
        given to the run is kept: starting one again costs far more."""
        client = self._client
        if client is None:
            return
        from dask.distributed import LocalCluster

        if isinstance(getattr(client, "cluster", None), LocalCluster):
            self.close_client()

    def md(self, temperature_K: float | None = None) -> MDSettings:
        """The run's MD settings (``[sample]`` engine, time step, friction) at
        ``temperature_K`` (default: the run's)."""
        s = self.config.sample
        return MDSettings(temperature_K=float(temperature_K if temperature_K is not None
                                              else self.config.temperature_K),
                          timestep_fs=float(s.timestep_fs),
                          friction_per_fs=float(s.friction_per_fs), engine=str(s.engine))

    def save_summary(self) -> None:
        write_json(self.out / "summary.json", self.summary)


#: seconds an interrupted run waits for its Dask client and cluster to close
QUICK_CLOSE_S = 2.0


def cluster_worker_pids(cluster: Any) -> list[int]:
    """The process ids of a local Dask cluster's worker processes (a
    ``Nanny`` runs in this process and starts one each); [] for none or a
    remote cluster."""
    pids = []
    for nanny in dict(getattr(cluster, "workers", None) or {}).values():
        pid = getattr(getattr(nanny, "process", None), "pid", None)
        if isinstance(pid, int):
            pids.append(pid)
    return pids


def end_processes(pids: list[int], grace_s: float = 1.0) -> int:
    """Terminate (then kill, after ``grace_s``) the processes ``pids`` and
    their descendants -- only those: a run started from a user's Python
    session must not touch the session's other children. Returns how many
    there were."""
    import psutil

    procs: list[psutil.Process] = []
    for pid in pids:
        try:
            root = psutil.Process(pid)
            procs += [root, *root.children(recursive=True)]
        except psutil.Error:
            continue
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace_s)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    return len(procs)


__all__ = ["RunContext", "write_json", "cluster_worker_pids", "end_processes"]
