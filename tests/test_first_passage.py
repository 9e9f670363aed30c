"""Brute-force first-passage rates (mtcv_rates.first_passage)."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

from mtcv_rates.first_passage import BruteForceRates, rates_dataset
from mtcv_systems.embedded5d import MullerBrown5D


def test_rates_dataset_from_counts_and_times():
    ds = rates_dataset(np.array([[0, 4], [3, 0]]), np.array([2e6, 1e6]), ["A", "B"])
    pair = {"basin_from": "A", "basin_to": "B"}
    assert float(ds["rate"].sel(pair)) == pytest.approx(4 / 2e-9)
    assert float(ds["mfpt"].sel(pair)) == pytest.approx(2e-9 / 4)
    # Garwood's exact 95 % interval for 4 events: [1.0899, 10.2416]
    assert float(ds["rate_lo"].sel(pair)) * 2e-9 == pytest.approx(1.0899, abs=1e-4)
    assert float(ds["rate_hi"].sel(pair)) * 2e-9 == pytest.approx(10.2416, abs=1e-4)
    assert np.isnan(ds["rate"].sel(basin_from="A", basin_to="A"))
    zero = rates_dataset(np.zeros((2, 2), int), np.array([1e6, 1e6]), ["A", "B"])
    assert float(zero["rate_lo"].sel(pair)) == 0.0
    assert float(zero["rate_hi"].sel(pair)) * 1e-9 == pytest.approx(3.6889, abs=1e-4)


def test_brute_force_walkers_on_a_low_barrier_muller_brown():
    """32 walkers, 10 ps each, on MB at 5 % of its amplitudes (A -> B about
    2 kT): transitions both ways, each walker's counts alternate, all of the
    simulated time is accounted for, the same seed repeats."""
    system = MullerBrown5D(energy_scale=0.05)
    runner = BruteForceRates(temperature_K=300.0, walkers=32, n_steps=10_000,
                             walkers_per_task=32)
    ds = runner.run(system, seed=4)
    n = ds["count"].values
    assert n[0, 1] > 0 and n[1, 0] > 0
    assert abs(n[0, 1] - n[1, 0]) <= 32  # per walker A->B and B->A alternate
    assert float(ds["time_in_state"].sum()) == pytest.approx(32 * 10_000 * 1e-15, rel=1e-9)
    assert ds.attrs["blown_walkers"] == 0
    rate = ds["rate"].values[0, 1]
    assert ds["rate_lo"].values[0, 1] < rate < ds["rate_hi"].values[0, 1]
    short = BruteForceRates(temperature_K=300.0, walkers=8, n_steps=500, walkers_per_task=4)
    xr.testing.assert_identical(short.run(system, seed=4), short.run(system, seed=4))
    with pytest.raises(ValueError, match="walkers"):
        BruteForceRates(temperature_K=300.0, walkers=0).run(system, seed=0)


def test_brute_force_states_pass_through_an_intermediate_basin():
    """``states = ("A", "B")`` on the three-well: C (the shallow well between)
    is in transit, so no transition into or out of C is counted, no time is
    spent in C, and every walker starts in A or B."""
    from mtcv_rates.first_passage import BruteForceRates
    from mtcv_systems import ThreeWell5D

    system = ThreeWell5D(energy_scale=0.05)
    all_states = BruteForceRates(temperature_K=300.0, walkers=16, n_steps=3000,
                                 walkers_per_task=16).run(system, seed=2)
    ab = BruteForceRates(temperature_K=300.0, walkers=16, n_steps=3000, walkers_per_task=16,
                         states=("A", "B")).run(system, seed=2)
    c = system.basins.index("C")
    assert all_states["count"].values[:, c].sum() + all_states["count"].values[c].sum() > 0
    assert ab["count"].values[:, c].sum() == 0 and ab["count"].values[c].sum() == 0
    assert ab["time_in_state"].values[c] == 0.0
    assert ab["count"].values.sum() > 0 and ab.attrs["states"] == "A B"
    with pytest.raises(ValueError, match="states must be two or more"):
        BruteForceRates(temperature_K=300.0, states=("A", "Z")).run(system, seed=0)
