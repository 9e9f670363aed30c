"""Options shared by the MD-based data sources."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mtcv_ase.md import LangevinParams
from mtcv_core.config import doc, positive


@dataclass(kw_only=True)
class MDOptions:
    """Thermostat and engine options. ``None`` means: take the run's value
    (``temperature_K`` and ``[sample]`` settings)."""

    temperature_K: float | None = field(default=None, metadata={
        "gt": 0, "doc": "temperature, K (default: the run's)"})
    timestep_fs: float = positive(1.0, "time step, fs")
    friction_per_fs: float = positive(0.01, "Langevin friction, 1/fs")
    engine: Literal["fast", "ase"] = doc("fast", "'fast' (batched walkers) or 'ase' (ASE's "
                                               "Langevin)")
    walkers_per_task: int = positive(64, "walkers advanced together in one Dask task")

    def params(self, temperature_K: float | None = None) -> LangevinParams:
        temp = temperature_K if temperature_K is not None else self.temperature_K
        if temp is None:
            raise ValueError("temperature_K is not set")
        return LangevinParams(temperature_K=temp, timestep_fs=self.timestep_fs,
                              friction_per_fs=self.friction_per_fs)

    def use_fast(self, system) -> bool:
        if self.engine not in ("fast", "ase"):
            raise ValueError(f"engine: expected 'fast' or 'ase', got {self.engine!r}")
        return self.engine == "fast" and system.supports_batch


def chunks(n: int, size: int) -> list[tuple[int, int]]:
    """[(start, count), ...] covering range(n) in pieces of at most ``size``."""
    return [(s, min(size, n - s)) for s in range(0, n, size)]
