"""Sanity gates (mtcv_core.sanity)."""

from __future__ import annotations

import numpy as np
import pytest

from mtcv_core.sanity import (
    SanityWarning,
    accuracy_floor,
    chance_accuracy,
    check_accuracy,
    check_estimate,
    clear,
)


def test_chance_is_the_most_common_basin_among_labelled_frames():
    labels = np.array([0, 0, 0, 1, -1, -1])
    assert chance_accuracy(labels) == 0.75
    assert accuracy_floor(0.5) == 0.75 and accuracy_floor(1.0) == 1.0
    assert np.isnan(chance_accuracy(np.array([-1, -1])))


def test_accuracy_gate_warns_lists_and_is_replaced_on_a_rerun():
    labels = np.array([0, 1] * 50)
    summary: dict = {}
    check_accuracy(summary, 0.99, labels)
    assert "warnings" not in summary
    with pytest.warns(SanityWarning, match=r"7\.9%.*50\.0%.*75\.0%"):
        check_accuracy(summary, 0.079, labels)
    with pytest.warns(SanityWarning):
        check_accuracy(summary, 0.5, labels)  # the same gate again: one entry
    assert [w["code"] for w in summary["warnings"]] == ["cv_separates_nothing"]
    clear(summary, "train")
    assert summary["warnings"] == []


def test_estimate_gate_reads_overlap_and_solver_of_the_verdict():
    rows = [{"from": "A", "to": "B", "convergence": {
        "overlap": {"min_neighbour": 0.0004, "limit": 0.03, "ok": False},
        "solver": {"ok": True}, "no_drift": {"ok": False}}}]
    summary: dict = {}
    with pytest.warns(SanityWarning, match="A->B along xi: neighbouring windows overlap"):
        check_estimate(summary, rows)
    assert [w["code"] for w in summary["warnings"]] == ["no_overlap A->B"]  # drift: verdict only
    rows[0]["convergence"]["overlap"] = {"min_neighbour": 0.01, "limit": 0.03, "ok": False}
    summary = {}  # weak overlap: the verdict's business, not a sanity warning
    check_estimate(summary, rows)
    assert "warnings" not in summary
