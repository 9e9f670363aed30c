"""The CV ensemble's arithmetic (mtcv_core.stages.ensemble.combine)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from mtcv_core.stages.ensemble import combine, member_config, member_seed


def _rows(barrier, err, delta=0.3, delta_err=0.01, exact=None):
    row = {"from": "A", "to": "B", "barrier_eV": barrier, "barrier_err_eV": err,
           "delta_F_eV": delta, "delta_F_err_eV": delta_err}
    if exact is not None:
        row["exact_barrier_eV"] = exact
    return [row]


def test_parts_add_up_and_the_cv_part_is_what_the_error_bars_do_not_explain():
    values = [0.90, 0.95, 0.85, 0.92]
    out = combine([_rows(v, 0.01, exact=v - 0.01) for v in values])[0]
    b = out["barrier"]
    spread = float(np.std(values, ddof=1))
    assert b["mean"] == pytest.approx(np.mean(values), abs=1e-4)
    assert b["statistical"] == pytest.approx(0.01, abs=1e-4)
    assert b["cv"] == pytest.approx(math.sqrt(spread**2 - 0.01**2), abs=1e-4)
    assert b["total"] == pytest.approx(spread, abs=1e-4)  # total = the spread of members
    assert b["error_of_mean"] == pytest.approx(spread / 2, abs=1e-4)
    assert out["exact_barrier"]["std"] == pytest.approx(spread, abs=1e-4)
    # identical members: no CV part, the statistical error is the total
    same = combine([_rows(0.9, 0.02, delta=0.3, delta_err=0.01) for _ in range(3)])[0]
    assert same["barrier"]["cv"] == 0.0 and same["barrier"]["total"] == pytest.approx(0.02)
    assert same["delta_F"]["total"] == pytest.approx(0.01)


def test_a_member_without_a_value_is_left_out_and_named():
    rows = [_rows(0.9, 0.01), _rows(None, None), _rows(0.94, 0.01)]
    b = combine(rows)[0]["barrier"]
    assert b["values"] == [0.9, None, 0.94] and b["members_used"] == 2
    assert b["mean"] == pytest.approx(0.92)
    lone = combine([_rows(0.9, 0.01), _rows(None, None)])[0]["barrier"]
    assert lone["mean"] == 0.9 and lone["total"] is None


def test_member_seeds_differ_and_stay_valid():
    from mtcv_core.pipeline import MAX_SEED, RunConfig

    config = RunConfig(system="muller_brown_5d", seed=MAX_SEED, train={"seed": 3},
                       umbrella={"reference": True}, ensemble={"members": 3})
    seeds = {member_seed(config.seed, k) for k in range(4)}
    assert len(seeds) == 4 and all(0 <= s <= MAX_SEED for s in seeds)
    m = member_config(config, 2)
    assert m.train["seed"] == member_seed(3, 2) and m.ensemble == {}
    assert m.umbrella == {"reference": False}  # the true-CV windows do not depend on the CV
    assert m.seed == member_seed(MAX_SEED, 2)
