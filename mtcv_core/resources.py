"""Peak memory of a stage: the resident memory of this process and all its
children (Dask workers included), sampled in a background thread."""

from __future__ import annotations

import threading
from types import TracebackType


def tree_rss(pid: int | None = None) -> int:
    """Bytes resident in process ``pid`` (default: this one) and all its
    descendants now."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


class PeakMemory:
    """``with PeakMemory() as peak: ...`` then ``peak.bytes``: the largest
    :func:`tree_rss` of process ``pid`` (default: this one) and its
    descendants seen every ``interval`` seconds while the block ran (a
    lower bound on the true peak; allocations shorter than ``interval`` can
    be missed)."""

    def __init__(self, interval: float = 0.1, *, pid: int | None = None) -> None:
        self.interval = interval
        self.pid = pid
        self.bytes = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        while True:
            self.bytes = max(self.bytes, tree_rss(self.pid))
            if self._stop.wait(self.interval):
                return

    def __enter__(self) -> PeakMemory:
        self.bytes = tree_rss(self.pid)
        self._thread = threading.Thread(target=self._watch, name="mtcv-peak-memory",
                                        daemon=True)
        self._thread.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.bytes = max(self.bytes, tree_rss(self.pid))


def release_free_memory() -> bool:
    """Hand the C heap's free pages back to the system (glibc's
    ``malloc_trim``; True when it ran). A stage's large temporaries (torch
    tensors, numpy arrays below glibc's mmap threshold) are freed into the
    heap, which otherwise keeps them resident for the rest of the run: about
    0.1 GB after the quick demo's training. A no-op elsewhere than glibc."""
    import ctypes
    import gc

    gc.collect()
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        return False
    return True


__all__ = ["tree_rss", "PeakMemory", "release_free_memory"]
