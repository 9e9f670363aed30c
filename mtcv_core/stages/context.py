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

    def close_client(self) -> None:
        """Close the client and its local cluster, if one was started."""
        client, self._client = self._client, None
        if client is not None:
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()

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


__all__ = ["RunContext", "write_json"]
