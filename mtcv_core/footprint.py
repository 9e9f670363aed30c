"""Absurd sizes fail fast: the memory and disk a run will need, from its
config, against what the machine has.

Each data source and sampler estimates its own needs
(:meth:`mtcv_core.interfaces.DataSource.footprint`,
:meth:`mtcv_core.interfaces.Sampler.footprint`); validation sums the disk of
everything and takes the largest memory of any one component (stages run
one after another), and refuses, naming the component, its estimate and the
limit, a run that cannot fit: more memory than the machine has, or more disk
than is free where the run writes. ``mtcv run --allow-large`` skips the
refusal (the estimate may be wrong for a component, or the run may go to a
bigger machine).
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from pathlib import Path

from mtcv_core.config import ConfigError
from mtcv_core.interfaces import Footprint


def human(n: float) -> str:
    """Bytes in the nearest binary unit: ``"1.5 GiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            if unit == "B":
                return f"{n:.0f} B"
            return f"{n:.3g} {unit}" if abs(n) < 1000 else f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"  # pragma: no cover


def machine_memory() -> float:
    """Bytes of RAM of this machine."""
    import psutil

    return float(psutil.virtual_memory().total)


def free_disk(path: Path) -> float:
    """Free bytes on the file system that holds ``path`` (or its nearest
    existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return float(shutil.disk_usage(path).free)


def check_footprints(items: Sequence[tuple[str, Footprint | None]], out: Path, *,
                     memory: float | None = None, disk: float | None = None) -> None:
    """Raise ConfigError when one component needs more memory than the
    machine has (``memory``, default :func:`machine_memory`) or all of them
    together more disk than is free under ``out`` (``disk``, default
    :func:`free_disk`). items: (config key, footprint or None)."""
    known = [(where, fp) for where, fp in items if fp is not None]
    if not known:
        return
    memory = machine_memory() if memory is None else memory
    where, worst = max(known, key=lambda item: item[1].memory_bytes)
    if worst.memory_bytes > memory:
        raise ConfigError(
            f"{where}: would hold about {human(worst.memory_bytes)} in memory ({worst.what}); "
            f"this machine has {human(memory)}. Reduce the options behind it, or pass "
            "--allow-large if the estimate is wrong for your case")
    total = sum(fp.disk_bytes for _, fp in known)
    disk = free_disk(out) if disk is None else disk
    if total > disk:
        parts = ", ".join(f"{w} {human(fp.disk_bytes)}" for w, fp in known)
        raise ConfigError(
            f"the run would write about {human(total)} ({parts}) but {out} has "
            f"{human(disk)} free. Reduce the sampling, free space, or pass --allow-large")


__all__ = ["check_footprints", "machine_memory", "free_disk", "human"]
