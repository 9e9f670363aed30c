"""Sanity gates: numbers that must never look like results.

A CV that separates nothing, or windows that do not overlap, still produce a
barrier; printed like any other it would be taken for one. The stages call
the gates below; a failed gate

* prints one ``mtcv: warning:`` line (a :class:`SanityWarning`),
* is listed in ``summary.json["warnings"]`` (``stage``, ``code``,
  ``message``),
* puts a banner at the top of ``report.md``,
* and makes ``mtcv run --strict`` fail (after every output is written).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

#: neighbouring windows overlapping less than this are disconnected: the free
#: energy across them is not determined (the convergence verdict's weaker
#: ``MIN_OVERLAP`` = 0.03 asks for well-determined differences)
NO_OVERLAP = 0.001


class SanityWarning(UserWarning):
    """A number mtcv computed is not to be trusted (see :mod:`mtcv_core.sanity`)."""


def chance_accuracy(labels: np.ndarray) -> float:
    """The accuracy of always guessing the most common basin among the
    labelled frames (``labels >= 0``); nan without labelled frames."""
    labels = np.asarray(labels)
    labels = labels[labels >= 0]
    if not labels.size:
        return float("nan")
    return float(np.bincount(labels).max() / labels.size)


def accuracy_floor(chance: float) -> float:
    """The least test accuracy that is clearly better than chance: halfway
    from chance to perfect (0.75 for two balanced basins)."""
    return 0.5 * (1.0 + chance)


def record(summary: dict[str, Any], stage: str, code: str, message: str) -> None:
    """Add a failed gate to ``summary["warnings"]`` (replacing an earlier
    one of the same stage and code) and warn."""
    entries = [w for w in summary.get("warnings", [])
               if (w.get("stage"), w.get("code")) != (stage, code)]
    entries.append({"stage": stage, "code": code, "message": message})
    summary["warnings"] = entries
    warnings.warn(message, SanityWarning, stacklevel=2)


def clear(summary: dict[str, Any], stage: str) -> None:
    """Forget the warnings of ``stage`` (it is running again)."""
    if "warnings" in summary:
        summary["warnings"] = [w for w in summary["warnings"] if w.get("stage") != stage]


def check_accuracy(summary: dict[str, Any], accuracy: float | None,
                   labels: np.ndarray) -> None:
    """Gate after ``train``: the CV's basin classification on the test split
    must be clearly better than chance (:func:`accuracy_floor`)."""
    chance = chance_accuracy(labels)
    if accuracy is None or not np.isfinite(chance):
        return
    floor = accuracy_floor(chance)
    if accuracy < floor:
        record(summary, "train", "cv_separates_nothing",
               f"train: the CV classifies {accuracy:.1%} of the test frames into the right "
               f"basin; guessing the most common basin gives {chance:.1%}, and a CV that "
               f"separates the basins needs at least {floor:.1%}. Free energies along it are "
               "not results: sample more (basin MD, TPS) or train longer")


def check_estimate(summary: dict[str, Any], rows: list[dict[str, Any]]) -> None:
    """Gate after ``estimate``: per transition along xi, neighbouring windows
    overlap at all (above :data:`NO_OVERLAP`) and the estimator's solution
    converged (from the ``overlap`` and ``solver`` checks of the convergence
    verdict)."""
    for r in rows:
        checks = r.get("convergence", {})
        pair = f"{r['from']}->{r['to']}"
        worst = checks.get("overlap", {}).get("min_neighbour")
        if worst is not None and worst < NO_OVERLAP:
            record(summary, "estimate", f"no_overlap {pair}",
                   f"estimate: {pair} along xi: neighbouring windows overlap by "
                   f"{worst:.2g} at worst (less than {NO_OVERLAP}): the free energies across "
                   "the gap are not determined; add windows (sampler_options n_windows, "
                   "refine_overlap)")
        if checks.get("solver", {}).get("ok") is False:
            record(summary, "estimate", f"solver {pair}",
                   f"estimate: {pair} along xi: the MBAR solution is not self-consistent: "
                   "its free energies are not converged")


__all__ = ["NO_OVERLAP", "SanityWarning", "chance_accuracy", "accuracy_floor", "record", "clear",
           "check_accuracy", "check_estimate"]
