"""The biased-trajectory dataset (``mtcv.biased/1``): samples of walkers
under a bias that changes with time (OPES, well-tempered metadynamics, ...),
with the weight that undoes the bias on each sample.

Several walkers (``walker``) are recorded at common times (``sample``, with
the coordinate ``time`` in fs since the start of the run).

=========================  ==========================  ===========  ==========================
variable                   dims                        units        meaning
=========================  ==========================  ===========  ==========================
``cv_values``              walker, sample, cv          ``cv_units`` CV s(t) of each walker
``bias``                   walker, sample              eV           bias V_t(s(t)) acting then
``log_weight``             walker, sample              1            ln of the reweighting factor
``energy`` (optional)      walker, sample              eV           unbiased potential energy
``observables`` (opt.)     walker, sample, observable  see below    other recorded CVs
=========================  ==========================  ===========  ==========================

``log_weight`` is what an estimator needs and nothing more: the unbiased
average of any A is ``sum_n exp(log_weight_n) A_n / sum_n exp(log_weight_n)``
over the samples after the transient (the sampler's ``transient_fs``
attribute; estimators may discard more), up to one additive constant. The
sampler decides it (well-tempered metadynamics: beta (V_t(s_t) - c(t)); OPES:
beta V_t(s_t)). NaN marks samples that do not exist (a walker that blew up).

``observables`` holds other CVs recorded along the way (e.g. the system's
true CVs), for reweighting along them; its coordinate ``observable`` names
them and its ``units`` attribute holds their units (one, space-separated per
observable, or one for all).

Global attributes: ``mtcv_schema = "mtcv.biased/1"``, ``temperature_K``,
``cv_names`` (space-separated), ``cv_units``, ``method`` (the sampler's
name); optional ``cv_period`` (space-separated periods, 0: not periodic),
``observable_periods`` (same for the observables) and ``transient_fs``
(time before which the weights are not yet meaningful, fs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from mtcv_core.schema import SCHEMA_ATTR, SchemaError, with_index_coords

BIASED_SCHEMA = "mtcv.biased/1"


def make_biased_dataset(
    cv_values: np.ndarray,
    bias: np.ndarray,
    log_weight: np.ndarray,
    time_fs: np.ndarray,
    *,
    temperature_K: float,
    method: str,
    cv_names: Sequence[str] | str = ("s",),
    cv_units: str = "1",
    cv_period: Sequence[float] | float | None = None,
    energy: np.ndarray | None = None,
    observables: np.ndarray | None = None,
    observable_names: Sequence[str] = (),
    observable_units: str = "1",
    observable_periods: Sequence[float] | None = None,
    transient_fs: float = 0.0,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build (and validate) a biased-trajectory dataset.

    cv_values: (n_walkers, n_samples[, n_cv]) cv_units; bias, log_weight,
    energy: (n_walkers, n_samples) eV / 1 / eV; time_fs: (n_samples,) fs;
    observables: (n_walkers, n_samples, n_obs) with ``observable_names``
    (n_obs names); the rest as the module docstring's attributes.
    """
    cv = np.asarray(cv_values, float)
    if cv.ndim == 2:
        cv = cv[..., None]
    if cv.ndim != 3:
        raise SchemaError(f"cv_values: expected shape (n_walkers, n_samples[, n_cv]), got "
                          f"{np.shape(cv_values)}")
    n_w, n_s, n_cv = cv.shape
    names = cv_names.split() if isinstance(cv_names, str) else list(cv_names)
    data: dict[str, Any] = {
        "cv_values": (("walker", "sample", "cv"), cv, {"units": cv_units,
                                                       "long_name": "CV time series"}),
        "bias": (("walker", "sample"), np.asarray(bias, float),
                 {"units": "eV", "long_name": "bias acting on the sample when recorded"}),
        "log_weight": (("walker", "sample"), np.asarray(log_weight, float),
                       {"units": "1", "long_name": "ln of the reweighting factor"}),
    }
    if energy is not None:
        data["energy"] = (("walker", "sample"), np.asarray(energy, float),
                          {"units": "eV", "long_name": "unbiased potential energy"})
    coords: dict[str, Any] = {"walker": np.arange(n_w), "time": (
        "sample", np.asarray(time_fs, float), {"units": "fs", "long_name": "simulated time"})}
    if observables is not None:
        obs = np.asarray(observables, float)
        if obs.ndim != 3 or obs.shape[:2] != (n_w, n_s) or obs.shape[2] != len(observable_names):
            raise SchemaError(f"observables: expected shape ({n_w}, {n_s}, "
                              f"{len(observable_names)}), got {obs.shape}")
        data["observables"] = (("walker", "sample", "observable"), obs,
                               {"units": observable_units, "long_name": "other recorded CVs"})
    try:
        ds = xr.Dataset(data, coords=coords)
    except ValueError as exc:
        raise SchemaError(f"make_biased_dataset: inconsistent shapes ({exc})") from None
    ds.attrs.update({SCHEMA_ATTR: BIASED_SCHEMA, "temperature_K": float(temperature_K),
                     "cv_names": " ".join(names), "cv_units": cv_units, "method": str(method),
                     "transient_fs": float(transient_fs)})
    if cv_period is not None:
        per = np.broadcast_to(np.asarray(cv_period, float), (n_cv,))
        ds.attrs["cv_period"] = " ".join(repr(float(p)) for p in per)
    if observables is not None and observable_periods is not None:
        per = np.broadcast_to(np.asarray(observable_periods, float), (len(observable_names),))
        ds.attrs["observable_periods"] = " ".join(repr(float(p)) for p in per)
    ds.attrs.update(dict(attrs or {}))
    coords_by_name: dict[str, Any] = {"cv": names}
    if observables is not None:
        coords_by_name["observable"] = list(observable_names)
    ds = with_index_coords(ds, coords_by_name)
    return validate_biased(ds, where="make_biased_dataset")


def validate_biased(ds: xr.Dataset, *, where: str = "dataset") -> xr.Dataset:
    """Check a biased-trajectory dataset (``mtcv.biased/1``); raise
    :class:`SchemaError` listing every problem."""
    problems: list[str] = []
    if ds.attrs.get(SCHEMA_ATTR) != BIASED_SCHEMA:
        problems.append(f"global attribute {SCHEMA_ATTR!r} is {ds.attrs.get(SCHEMA_ATTR)!r}, "
                        f"expected {BIASED_SCHEMA!r}")
    for attr in ("temperature_K", "cv_names", "cv_units", "method"):
        if attr not in ds.attrs:
            problems.append(f"global attribute {attr!r} is missing")
    want = {"cv_values": ("walker", "sample", "cv"), "bias": ("walker", "sample"),
            "log_weight": ("walker", "sample"), "energy": ("walker", "sample"),
            "observables": ("walker", "sample", "observable")}
    for name, dims in want.items():
        if name not in ds.variables:
            if name in ("cv_values", "bias", "log_weight"):
                problems.append(f"variable {name!r} is missing (dims {dims})")
            continue
        if ds[name].dims != dims:
            problems.append(f"variable {name!r} has dims {ds[name].dims}, expected {dims}")
    for name, units in (("bias", "eV"), ("energy", "eV")):
        if name in ds.variables and ds[name].attrs.get("units") != units:
            problems.append(f"variable {name!r} has units {ds[name].attrs.get('units')!r}, "
                            f"expected {units!r}")
    if "time" not in ds.coords or ds["time"].dims != ("sample",):
        problems.append("coordinate 'time' (dims ('sample',), fs) is missing")
    elif ds.sizes.get("sample", 0) > 1 and np.any(np.diff(ds["time"].values) <= 0):
        problems.append("coordinate 'time' must increase")
    if "cv_values" in ds.variables and "cv_names" in ds.attrs:
        n_names = len(str(ds.attrs["cv_names"]).split())
        if n_names != ds.sizes.get("cv", -1):
            problems.append(f"attribute 'cv_names' names {n_names} CVs, cv_values has "
                            f"{ds.sizes.get('cv')}")
    if "log_weight" in ds.variables and "cv_values" in ds.variables:
        lw = ds["log_weight"].values
        cv_ok = np.isfinite(ds["cv_values"].values).all(axis=-1)
        if np.any(np.isfinite(lw) & ~cv_ok):
            problems.append("log_weight is finite where cv_values is not")
        if np.any(np.isinf(lw)):
            problems.append("log_weight holds infinities (NaN marks missing samples)")
    if problems:
        raise SchemaError(f"{where}: not a valid mtcv biased-trajectory dataset "
                          f"({BIASED_SCHEMA}):\n  - " + "\n  - ".join(problems))
    return ds


def biased_periods(ds: xr.Dataset, what: str = "cv") -> np.ndarray:
    """(n,) periods of the CV (``what="cv"``) or observable dimensions (0: not
    periodic)."""
    n = ds.sizes.get(what, 0)
    raw = ds.attrs.get("cv_period" if what == "cv" else "observable_periods")
    if raw is None or str(raw).strip() == "":
        return np.zeros(n)
    per = np.asarray([float(v) for v in str(raw).split()], float)
    return np.broadcast_to(per, (n,)).copy()


__all__ = ["BIASED_SCHEMA", "make_biased_dataset", "validate_biased", "biased_periods"]
