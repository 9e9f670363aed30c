"""One run per output directory.

``mtcv run`` holds an exclusive lock on ``OUT/.mtcv.lock`` for its whole
life, so that a resubmitted job or a second terminal cannot write the same
files at the same time. The lock is a POSIX record lock (``fcntl.lockf``),
which the kernel releases when the holding process dies, however it dies
(and which network file systems with lock support honour across hosts); the
file also records the holder's pid, host and start time and the stage it is
running (``stage``, ``stage_started``), so that a refused run can say who
holds the directory and what it is doing, and a lock left by a dead process
is taken over with a message. Read it with :func:`read_lock`.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
import warnings
from pathlib import Path
from typing import Any

from mtcv_core.errors import MtcvError

LOCK_NAME = ".mtcv.lock"


class RunLockedError(MtcvError, RuntimeError):
    """Another live ``mtcv run`` holds the output directory."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _holder_text(info: dict[str, Any]) -> str:
    started = info.get("started")
    when = (time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
            if isinstance(started, (int, float)) else "an unknown time")
    stage = f", in stage {info['stage']}" if isinstance(info.get("stage"), str) else ""
    return f"pid {info.get('pid', '?')} on {info.get('host', '?')} since {when}{stage}"


def _read(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    try:
        info = json.loads(os.read(fd, 4096).decode() or "{}")
    except (ValueError, UnicodeDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


def read_lock(out_dir: str | Path) -> dict[str, Any]:
    """The record of ``OUT/.mtcv.lock`` (``pid``, ``host``, ``started``,
    ``stage``, ``stage_started`` in s since the epoch, ``released``); ``{}``
    when there is none or it cannot be read. Reading takes no lock."""
    try:
        info = json.loads((Path(out_dir) / LOCK_NAME).read_text() or "{}")
    except (OSError, ValueError, UnicodeDecodeError):
        return {}
    return info if isinstance(info, dict) else {}


class RunLock:
    """The exclusive lock of ``out_dir`` (created if needed): ``acquire()``
    takes it or raises :class:`RunLockedError` naming the directory and the
    holder; ``release()`` (or leaving the ``with`` block) lets it go."""

    def __init__(self, out_dir: str | Path) -> None:
        self.path = Path(out_dir) / LOCK_NAME
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        import fcntl

        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EAGAIN):
                holder = _read(fd)
                os.close(fd)
                raise RunLockedError(
                    f"{self.path.parent}: another mtcv run is using this directory "
                    f"({_holder_text(holder)}); wait for it to finish or choose another "
                    "--out") from None
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                os.close(fd)
                raise
            # no record locks on this file system: fall back to the pid / host record
            holder = _read(fd)
            if holder.get("host") == socket.gethostname() and isinstance(
                    holder.get("pid"), int) and holder["pid"] != os.getpid() \
                    and _alive(holder["pid"]):
                os.close(fd)
                raise RunLockedError(
                    f"{self.path.parent}: another mtcv run is using this directory "
                    f"({_holder_text(holder)}); wait for it to finish or choose another "
                    "--out") from None
        previous = _read(fd)
        if previous.get("pid") is not None and not previous.get("released"):
            warnings.warn(f"{self.path.parent}: taking over the lock left by a run that "
                          f"ended without releasing it ({_holder_text(previous)})",
                          RuntimeWarning, stacklevel=2)
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                             "started": time.time()}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
            os.fsync(fd)
        except OSError:  # a full disk: the lock holds all the same, the record is lost
            pass
        self._fd = fd
        return self

    def note_stage(self, stage: str) -> None:
        """Record that the holder now runs ``stage`` (best effort: a full disk
        loses the note, never the lock)."""
        if self._fd is None:
            return
        try:
            info = _read(self._fd)
            info.update(stage=stage, stage_started=time.time())
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, json.dumps(info).encode(), 0)
        except OSError:
            pass

    def release(self) -> None:
        """Mark the record released and let the lock go (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        try:
            info = _read(fd)
            info["released"] = True
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:  # pragma: no cover - a full disk must not hide the real error
            pass
        finally:
            os.close(fd)  # closing the descriptor drops the record lock

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


__all__ = ["LOCK_NAME", "RunLock", "RunLockedError", "read_lock"]
