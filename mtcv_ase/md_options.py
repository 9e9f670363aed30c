"""Options shared by the MD-based data sources and samplers.

Each option left unset (``None``) takes the run's value, which the pipeline
passes explicitly as :class:`mtcv_core.interfaces.MDSettings` (the run's
``temperature_K`` and ``[sample]`` engine and thermostat settings); a
component used on its own falls back to the defaults below.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mtcv_ase.md import LangevinParams
from mtcv_core.interfaces import MDSettings, System

#: time step (fs), friction (1/fs) and engine when neither the component's
#: options nor the run set them
DEFAULT_MD = MDSettings(temperature_K=float("nan"))


@dataclass(kw_only=True)
class MDOptions:
    """Thermostat and engine options of an MD-based component."""

    temperature_K: float | None = field(default=None, metadata={
        "gt": 0, "doc": "temperature, K (default: the run's)"})
    timestep_fs: float | None = field(default=None, metadata={
        "gt": 0, "doc": "time step, fs (default: [sample] timestep_fs)"})
    friction_per_fs: float | None = field(default=None, metadata={
        "gt": 0, "doc": "Langevin friction, 1/fs (default: [sample] friction_per_fs)"})
    engine: Literal["fast", "ase"] | None = field(default=None, metadata={
        "doc": "'fast' (batched walkers) or 'ase' (ASE's Langevin) (default: [sample] "
               "engine)"})
    walkers_per_task: int | None = field(default=None, metadata={
        "gt": 0, "doc": "walkers (TPS: chains) advanced together in one Dask task (default: "
                        "64 on the batched engine; 1 on ASE's, so that a calculator that "
                        "cannot batch runs its walkers as parallel tasks)"})

    def settings(self, md: MDSettings | None = None) -> MDSettings:
        """The MD settings this component runs with: its own options over the
        run's ``md`` over :data:`DEFAULT_MD`. ValueError when no temperature
        is set anywhere."""
        base = md if md is not None else DEFAULT_MD
        temp = self.temperature_K if self.temperature_K is not None else base.temperature_K
        if temp is None or temp != temp:
            raise ValueError("temperature_K is not set (neither in the component's options "
                             "nor by the run)")
        engine = self.engine if self.engine is not None else base.engine
        if engine not in ("fast", "ase"):
            raise ValueError(f"engine: expected 'fast' or 'ase', got {engine!r}")
        return MDSettings(
            temperature_K=float(temp),
            timestep_fs=float(self.timestep_fs if self.timestep_fs is not None
                              else base.timestep_fs),
            friction_per_fs=float(self.friction_per_fs if self.friction_per_fs is not None
                                  else base.friction_per_fs),
            engine=engine)

    def params(self, md: MDSettings | None = None) -> LangevinParams:
        """The Langevin parameters of :meth:`settings`."""
        s = self.settings(md)
        return LangevinParams(temperature_K=s.temperature_K, timestep_fs=s.timestep_fs,
                              friction_per_fs=s.friction_per_fs)

    def use_fast(self, system: System, md: MDSettings | None = None) -> bool:
        """Whether to run the batched engine: ``engine = "fast"`` and the
        system evaluates many configurations at once."""
        return self.settings(md).engine == "fast" and system.supports_batch

    def task_size(self, fast: bool) -> int:
        """Walkers per Dask task: ``walkers_per_task``, else
        :data:`BATCH_WALKERS_PER_TASK` on the batched engine (``fast``) and 1
        on ASE's (one walker, one calculator per task: the walkers of a
        calculator that cannot batch run in parallel on the workers)."""
        if self.walkers_per_task is not None:
            return int(self.walkers_per_task)
        return BATCH_WALKERS_PER_TASK if fast else 1


#: walkers per Dask task on the batched engine unless ``walkers_per_task`` says
BATCH_WALKERS_PER_TASK = 64


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """[(start, count), ...] covering range(n) in pieces of at most ``size``."""
    return [(s, min(size, n - s)) for s in range(0, n, size)]


__all__ = ["BATCH_WALKERS_PER_TASK", "DEFAULT_MD", "MDOptions", "chunks"]
