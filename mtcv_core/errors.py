"""The root of mtcv's own exceptions.

Every error mtcv raises on purpose -- a bad config, an unreadable dataset or
model file, a missing plugin, a simulation that blew up -- derives from
:class:`MtcvError` (and from the builtin class it always derived from, so
``except ValueError`` keeps working). The command line prints an
``MtcvError`` as one line naming what and where, and exits with status 2;
anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class MtcvError(Exception):
    """An error mtcv reports as one clear message (file, field, value, what
    was expected)."""


class SimulationError(MtcvError, FloatingPointError):
    """A simulation produced non-finite or absurd values (positions,
    energies) and could not go on; the message names the walker, step and
    seed."""


class DiskFullError(MtcvError, OSError):
    """A write failed for want of space (ENOSPC, EDQUOT) or by an I/O error;
    the message names the file, the stage and the free space. Nothing is left
    under a final name half-written; ``--resume`` continues once there is
    room."""


class ConvergenceError(MtcvError):
    """``mtcv run --strict``: a reported number failed its convergence verdict
    (:mod:`mtcv_core.convergence`) or a sanity gate (:mod:`mtcv_core.sanity`);
    every output was written first."""


class Terminated(BaseException):
    """SIGTERM (a scheduler's wall-time limit, ``kill``), raised by the
    command line's handler: unwinds the run like Ctrl-C does, so that the
    Dask cluster is shut down and the lock released. Like
    ``KeyboardInterrupt`` it is not an ``Exception``; the pipeline sets its
    ``stage`` attribute (and a ``KeyboardInterrupt``'s) to the stage it
    stopped."""


__all__ = ["MtcvError", "SimulationError", "DiskFullError", "ConvergenceError", "Terminated"]
