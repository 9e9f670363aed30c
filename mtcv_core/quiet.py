"""Silence chatty third-party loggers for the duration of a call.

pymbar logs a banner when JAX is missing, a warning each time its first
solver falls back to the next one, and a caveat on every statistical
inefficiency; mtcv reports what matters (overlap, dropped windows,
uncertainties) itself.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_loggers(*names: str, level: int = logging.ERROR) -> Iterator[None]:
    """Raise the threshold of the named loggers to ``level`` inside the block,
    restoring them afterwards."""
    loggers = [logging.getLogger(n) for n in names]
    old = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(level)
    try:
        yield
    finally:
        for lg, lv in zip(loggers, old, strict=True):
            lg.setLevel(lv)
