"""The rates dataset (``mtcv.rates/1``): what a rate estimator
(:class:`mtcv_core.interfaces.RateEstimator`) returns and ``rates.nc`` holds.

One entry per directed transition on the dimension ``transition`` (its
coordinates ``basin_from`` and ``basin_to``: basin names):

========================  ======  ============================================
variable                  units   meaning
========================  ======  ============================================
``rate``                  1/s     k = kappa k_TST (required; NaN: unresolved)
``rate_err``              1/s     its standard error (required)
``rate_ln_err``           1       standard error of ln k (k known within a
                                  factor exp(rate_ln_err))
``rate_tst``              1/s     the transition-state-theory rate (required)
``rate_tst_err``          1/s     its error (the PMF's)
``kappa``                 1       transmission coefficient (required)
``kappa_err``             1       its error
``xi_star``               [xi]    the dividing surface
``committor_mean``        1       mean p_B over configurations at xi*
``committor_std``         1       their standard deviation
``reference_rate``        1/s     an independent reference (brute force)
``reference_rate_lo``     1/s     its 95 % interval, lower end
``reference_rate_hi``     1/s     upper end
========================  ======  ============================================

Optional curves: ``kappa_t`` and ``kappa_t_err`` on (``transition``,
``time``) with ``time`` in fs; the committor histogram ``committor_counts``
on (``transition``, ``p_B_bin``) with coordinate ``p_B_edges`` (dimension
``p_B_edge``). Global attributes: ``mtcv_schema``, ``temperature_K``,
``method`` (free text), and what the estimator ran (engine, thermostat,
friction, ...) as it sees fit.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import xarray as xr

from mtcv_core.schema import SCHEMA_ATTR, SchemaError

RATES_SCHEMA = "mtcv.rates/1"

#: required per-transition variables -> units
REQUIRED = {"rate": "1/s", "rate_err": "1/s", "rate_tst": "1/s", "kappa": "1"}
#: optional per-transition variables -> units
OPTIONAL = {"rate_ln_err": "1", "rate_tst_err": "1/s", "kappa_err": "1", "xi_star": None,
            "committor_mean": "1", "committor_std": "1", "reference_rate": "1/s",
            "reference_rate_lo": "1/s", "reference_rate_hi": "1/s"}


def validate_rates(ds: xr.Dataset, *, where: str = "dataset") -> xr.Dataset:
    """Check a rates dataset (module docstring); raise :class:`SchemaError`
    listing every problem."""
    problems: list[str] = []
    if ds.attrs.get(SCHEMA_ATTR) != RATES_SCHEMA:
        problems.append(f"global attribute {SCHEMA_ATTR!r} is {ds.attrs.get(SCHEMA_ATTR)!r}, "
                        f"expected {RATES_SCHEMA!r}")
    if "temperature_K" not in ds.attrs:
        problems.append("global attribute 'temperature_K' is missing")
    for name in ("basin_from", "basin_to"):
        if name not in ds.coords or ds[name].dims != ("transition",):
            problems.append(f"coordinate {name!r} on ('transition',) is missing (basin names)")
    for name, units in {**REQUIRED, **OPTIONAL}.items():
        if name not in ds.variables:
            if name in REQUIRED:
                problems.append(f"variable {name!r} is missing (dims ('transition',), units "
                                f"{units!r})")
            continue
        if ds[name].dims != ("transition",):
            problems.append(f"variable {name!r} has dims {ds[name].dims}, expected "
                            "('transition',)")
        if units is not None and ds[name].attrs.get("units") != units:
            problems.append(f"variable {name!r} has units {ds[name].attrs.get('units')!r}, "
                            f"expected {units!r}")
    for name in ("kappa_t", "kappa_t_err"):
        if name in ds.variables and ds[name].dims != ("transition", "time"):
            problems.append(f"variable {name!r} has dims {ds[name].dims}, expected "
                            "('transition', 'time')")
    if "kappa_t" in ds.variables and ds["time"].attrs.get("units") != "fs":
        problems.append("coordinate 'time' must have units 'fs'")
    if "committor_counts" in ds.variables:
        if ds["committor_counts"].dims != ("transition", "p_B_bin"):
            problems.append(f"variable 'committor_counts' has dims "
                            f"{ds['committor_counts'].dims}, expected ('transition', 'p_B_bin')")
        if "p_B_edges" not in ds.variables or \
                ds.sizes.get("p_B_edge") != ds.sizes.get("p_B_bin", -1) + 1:
            problems.append("variable 'p_B_edges' on ('p_B_edge',), one longer than "
                            "'p_B_bin', is missing")
    if "rate" in ds.variables and ds["rate"].dims == ("transition",):
        bad = np.asarray(ds["rate"].values, float) < 0
        if bad.any():
            problems.append(f"variable 'rate' has {int(bad.sum())} negative entries (NaN: "
                            "not resolved)")
    if problems:
        raise SchemaError(f"{where}: not a valid mtcv rates dataset ({RATES_SCHEMA}):\n"
                          "  - " + "\n  - ".join(problems))
    return ds


def _value(ds: xr.Dataset, name: str, i: int) -> float | None:
    if name not in ds.variables:
        return None
    v = float(ds[name].values[i])
    return v if math.isfinite(v) else None


def rates_table(ds: xr.Dataset) -> list[dict[str, Any]]:
    """Per transition: ``{"from", "to", "rate_per_s", "rate_err_per_s",
    "rate_tst_per_s", ..., "mfpt_s"}`` (None where absent), for
    ``summary.json`` and the report."""
    rows = []
    for i in range(ds.sizes["transition"]):
        row: dict[str, Any] = {"from": str(ds["basin_from"].values[i]),
                               "to": str(ds["basin_to"].values[i])}
        for name in (*REQUIRED, *OPTIONAL):
            key = name if name in ("kappa", "kappa_err", "xi_star", "committor_mean",
                                   "committor_std", "rate_ln_err") else f"{name}_per_s"
            row[key] = _value(ds, name, i)
        k = row["rate_per_s"]
        row["mfpt_s"] = 1.0 / k if k else None
        if row["mfpt_s"] is not None and row["rate_err_per_s"] is not None:
            row["mfpt_err_s"] = row["rate_err_per_s"] / k**2
        ref = row.get("reference_rate_per_s")
        row["ratio_to_reference"] = k / ref if k is not None and ref else None
        rows.append(row)
    return rows


__all__ = ["RATES_SCHEMA", "validate_rates", "rates_table"]
