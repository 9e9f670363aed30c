"""The umbrella-sampling dataset (``mtcv.umbrella/1``) and the free-energy
dataset (``mtcv.fes/1``).

Umbrella dataset
----------------
One harmonic window per entry of ``window``; each window holds a time series
of the collective variable(s), NaN-padded to a common length ``sample``.

=====================  ======================  =====================  ===========================
variable               dims                    units                  meaning
=====================  ======================  =====================  ===========================
``center``             window, cv              ``cv_units``           window centre c
``spring_constant``    window, cv              eV/(``cv_units``)^2    spring constant k (>= 0)
``cv_values``          window, sample, cv      ``cv_units``           CV time series s(t)
``n_samples``          window                  1                      valid length of the series
``energy`` (optional)  window, sample          eV                     unbiased potential energy
=====================  ======================  =====================  ===========================

The bias of window ``w`` is ``sum_d 0.5 k_wd (s_d - c_wd)^2`` (eV); on a
periodic CV dimension (period ``P``) the difference ``s_d - c_wd`` is
taken as its minimum image in ``[-P/2, P/2)``. For ``cv_units = "1"`` the
spring constants are in ``eV``. Samples ``n_samples[w]`` and beyond are
padding (NaN) and are ignored.

Global attributes: ``mtcv_schema = "mtcv.umbrella/1"``, ``temperature_K``
(float, the temperature the windows were sampled at), ``cv_names``
(space-separated, one per ``cv``), ``cv_units``; optional ``cv_period``
(space-separated periods, ``0`` for a non-periodic dimension) and
``walkers`` (int: each window's series is that many independent walkers,
concatenated walker-major in equal parts).

Free-energy dataset
-------------------
Written by :class:`mtcv_mbar.estimator.MBAREstimator`; see its docstring for
the variables. :func:`validate_fes` checks the parts every consumer relies
on (``pmf``/``pmf_err`` in eV on bin dimensions, the schema attribute and
the temperature).

Both validators are registered in :data:`mtcv_core.io.VALIDATORS`, so
:func:`mtcv_core.io.read_dataset` checks these files on reading.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from mtcv_core.schema import SCHEMA_ATTR, SchemaError, with_index_coords

UMBRELLA_SCHEMA = "mtcv.umbrella/1"
FES_SCHEMA = "mtcv.fes/1"


def spring_units(cv_units: str) -> str:
    """Units of a spring constant for a CV in ``cv_units``: ``eV/(u)^2``, or
    ``eV`` for a dimensionless CV (``"1"``)."""
    return "eV" if cv_units == "1" else f"eV/({cv_units})^2"


def _accepted_spring_units(cv_units: str) -> set[str]:
    if cv_units == "1":
        return {"eV", "eV/(1)^2", "eV/1^2"}
    return {f"eV/({cv_units})^2", f"eV/{cv_units}^2", f"eV/{cv_units}**2",
            f"eV/({cv_units})**2"}


def cv_periods(ds: xr.Dataset) -> np.ndarray:
    """(n_cv,) periods of the CV dimensions (0 = not periodic)."""
    n_cv = ds.sizes.get("cv", 0)
    raw = ds.attrs.get("cv_period")
    if raw is None or str(raw).strip() == "":
        return np.zeros(n_cv)
    periods = np.asarray([float(v) for v in str(raw).split()], float)
    if periods.size == 1 and n_cv > 1:
        periods = np.full(n_cv, periods[0])
    return periods


def make_umbrella_dataset(
    center: np.ndarray,
    spring_constant: np.ndarray | float,
    cv_values: np.ndarray | Sequence[np.ndarray],
    *,
    temperature_K: float,
    cv_names: Sequence[str] | str = ("s",),
    cv_units: str = "1",
    n_samples: np.ndarray | None = None,
    energy: np.ndarray | Sequence[np.ndarray] | None = None,
    cv_period: Sequence[float] | float | None = None,
    walkers: int | None = None,
    window_ids: Sequence[int] | None = None,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build (and validate) an umbrella dataset: the schema every sampler
    returns (built-in and third-party alike).

    Parameters
    ----------
    center : (n_windows,) or (n_windows, n_cv), cv_units
        Window centres; 1D input means one CV dimension.
    spring_constant : scalar, (n_windows,) or (n_windows, n_cv), eV/cv_units^2
        Spring constants, broadcast to ``center``'s shape.
    cv_values : (n_windows, n_sample[, n_cv]) array, or a sequence of
        per-window arrays (n_w[, n_cv]) of different lengths, cv_units
        The CV series; ragged input is NaN-padded.
    temperature_K : float
        Sampling temperature, K.
    cv_names : names of the CV dimensions (a list or a space-separated string)
    cv_units : units of the CV (``"1"`` for a dimensionless, learned CV)
    n_samples : (n_windows,) int, optional
        Valid length of each series; default: the ragged lengths, or the
        number of leading finite samples of each window.
    energy : like ``cv_values`` without the cv axis, eV, optional
        Unbiased potential energy of each sample.
    cv_period : period of each CV dimension (0 or None: not periodic)
    walkers : number of independent walkers concatenated in each window
    window_ids : (n_windows,) int ids of the windows (default 0, 1, ...)
    attrs : extra global attributes (provenance)
    """
    center = np.asarray(center, float)
    if center.ndim == 1:
        center = center[:, None]
    if center.ndim != 2:
        raise SchemaError(f"center: expected shape (n_windows[, n_cv]), got {center.shape}")
    n_win, n_cv = center.shape
    spring_in = np.asarray(spring_constant, float)
    if spring_in.ndim == 1:  # one value per window
        spring_in = spring_in[:, None]
    try:
        spring = np.broadcast_to(spring_in, center.shape)
    except ValueError:
        raise SchemaError(f"spring_constant: shape {np.shape(spring_constant)} does not "
                          f"broadcast to the centres' shape {center.shape}") from None

    def ragged(values: Any, name: str, with_cv: bool) -> tuple[np.ndarray, np.ndarray]:
        if isinstance(values, np.ndarray) and values.dtype != object:
            arr = np.asarray(values, float)
            if with_cv and arr.ndim == 2 and n_cv == 1:
                arr = arr[..., None]
            want = 3 if with_cv else 2
            if arr.ndim != want or arr.shape[0] != n_win or (with_cv and arr.shape[2] != n_cv):
                raise SchemaError(f"{name}: expected shape (n_windows={n_win}, n_sample"
                                  f"{f', n_cv={n_cv}' if with_cv else ''}), got {arr.shape}")
            finite = np.isfinite(arr).all(axis=2) if with_cv else np.isfinite(arr)
            lengths = np.where(finite.all(axis=1), arr.shape[1], np.argmin(finite, axis=1))
            return arr, lengths
        parts = [np.asarray(v, float) for v in values]
        if len(parts) != n_win:
            raise SchemaError(f"{name}: expected {n_win} windows, got {len(parts)}")
        parts = [p[:, None] if with_cv and p.ndim == 1 else p for p in parts]
        lengths = np.array([len(p) for p in parts])
        n_max = int(lengths.max()) if n_win else 0
        shape = (n_win, n_max, n_cv) if with_cv else (n_win, n_max)
        arr = np.full(shape, np.nan)
        for w, p in enumerate(parts):
            if with_cv and p.shape[1:] != (n_cv,):
                raise SchemaError(f"{name}[{w}]: expected shape (n, {n_cv}), got {p.shape}")
            arr[w, : len(p)] = p
        return arr, lengths

    cv_arr, lengths = ragged(cv_values, "cv_values", True)
    n = np.asarray(lengths if n_samples is None else n_samples, dtype=np.int64)
    data_vars: dict[str, Any] = {
        "center": (("window", "cv"), center),
        "spring_constant": (("window", "cv"), np.array(spring)),
        "cv_values": (("window", "sample", "cv"), cv_arr),
        "n_samples": (("window",), n),
    }
    if energy is not None:
        e_arr, _ = ragged(energy, "energy", False)
        if e_arr.shape[1] < cv_arr.shape[1]:
            e_arr = np.pad(e_arr, ((0, 0), (0, cv_arr.shape[1] - e_arr.shape[1])),
                           constant_values=np.nan)
        data_vars["energy"] = (("window", "sample"), e_arr[:, : cv_arr.shape[1]])
    ids = np.arange(n_win) if window_ids is None else np.asarray(window_ids)
    if ids.shape != (n_win,):
        raise SchemaError(f"window_ids: expected {n_win} ids, got shape {ids.shape}")
    ds = xr.Dataset(data_vars, coords={"window": ids.astype(np.int64)})
    ds["center"].attrs.update(units=cv_units, long_name="window centre")
    ds["spring_constant"].attrs.update(units=spring_units(cv_units),
                                       long_name="umbrella spring constant")
    ds["cv_values"].attrs.update(units=cv_units, long_name="CV time series")
    ds["n_samples"].attrs.update(units="1", long_name="samples per window")
    if "energy" in ds:
        ds["energy"].attrs.update(units="eV", long_name="unbiased potential energy")
    names = cv_names.split() if isinstance(cv_names, str) else list(cv_names)
    ds.attrs.update({SCHEMA_ATTR: UMBRELLA_SCHEMA, "temperature_K": float(temperature_K),
                     "cv_names": " ".join(names), "cv_units": cv_units})
    if cv_period is not None:
        per = np.broadcast_to(np.asarray(cv_period, float), (n_cv,))
        ds.attrs["cv_period"] = " ".join(repr(float(p)) for p in per)
    if walkers is not None:
        ds.attrs["walkers"] = int(walkers)
    ds.attrs.update(dict(attrs or {}))
    ds = with_index_coords(ds, {"cv": names})
    return validate_umbrella(ds, where="make_umbrella_dataset")


#: name -> (dims, required) of the umbrella variables (units checked separately)
UMBRELLA_VARIABLES: dict[str, tuple[tuple[str, ...], bool]] = {
    "center": (("window", "cv"), True),
    "spring_constant": (("window", "cv"), True),
    "cv_values": (("window", "sample", "cv"), True),
    "n_samples": (("window",), True),
    "energy": (("window", "sample"), False),
}


def validate_umbrella(ds: xr.Dataset, *, where: str = "dataset") -> xr.Dataset:
    """Check ``ds`` against ``mtcv.umbrella/1``; raise :class:`SchemaError`
    naming ``where``, the variable or attribute, and what was expected."""
    problems: list[str] = []
    if ds.attrs.get(SCHEMA_ATTR) != UMBRELLA_SCHEMA:
        problems.append(f"global attribute {SCHEMA_ATTR!r} is {ds.attrs.get(SCHEMA_ATTR)!r}, "
                        f"expected {UMBRELLA_SCHEMA!r}")
    cv_units = ds.attrs.get("cv_units")
    if not isinstance(cv_units, str) or not cv_units:
        problems.append("global attribute 'cv_units' is missing (e.g. '1' or 'angstrom')")
        cv_units = None
    temp = ds.attrs.get("temperature_K")
    try:
        temp_ok = temp is not None and math.isfinite(float(temp)) and float(temp) > 0
    except (TypeError, ValueError):
        temp_ok = False
    if not temp_ok:
        problems.append(f"global attribute 'temperature_K' is {temp!r}, expected a positive "
                        "number (K)")
    expected_units = {"center": {cv_units}, "cv_values": {cv_units}, "n_samples": {"1"},
                      "energy": {"eV"},
                      "spring_constant": _accepted_spring_units(cv_units) if cv_units else set()}
    for name, (dims, required) in UMBRELLA_VARIABLES.items():
        if name not in ds.variables:
            if required:
                problems.append(f"variable {name!r} is missing (expected dims {dims})")
            continue
        var = ds[name]
        if var.dims != dims:
            problems.append(f"variable {name!r} has dims {var.dims}, expected {dims}")
        if cv_units is not None and var.attrs.get("units") not in expected_units[name]:
            problems.append(f"variable {name!r} has units {var.attrs.get('units')!r}, "
                            f"expected {sorted(expected_units[name])[0]!r}")
        kind = "iu" if name == "n_samples" else "f"
        if var.dtype.kind not in kind:
            problems.append(f"variable {name!r} has dtype {var.dtype}, expected "
                            f"{'an integer' if kind == 'iu' else 'a floating'} type")
    names = str(ds.attrs.get("cv_names", "")).split()
    if "cv" in ds.sizes and len(names) != ds.sizes["cv"]:
        problems.append(f"global attribute 'cv_names' is {ds.attrs.get('cv_names')!r}: "
                        f"expected {ds.sizes['cv']} space-separated name(s), one per cv")
    if not problems:
        problems += _check_umbrella_values(ds)
    if problems:
        raise SchemaError(f"{where}: not a valid mtcv umbrella dataset ({UMBRELLA_SCHEMA}):\n"
                          "  - " + "\n  - ".join(problems))
    return ds


def _check_umbrella_values(ds: xr.Dataset) -> list[str]:
    problems: list[str] = []
    n_win, n_sample = ds.sizes["window"], ds.sizes["sample"]
    if n_win == 0:
        return ["dimension 'window' is empty: the dataset holds no windows"]
    n = ds["n_samples"].values
    if np.any(n < 1) or np.any(n > n_sample):
        bad = int(np.argmax((n < 1) | (n > n_sample)))
        problems.append(f"variable 'n_samples' must lie in [1, {n_sample}] (the size of "
                        f"'sample'); window {bad} has {int(n[bad])}")
        return problems
    for name in ("center", "spring_constant"):
        if not np.isfinite(ds[name].values).all():
            problems.append(f"variable {name!r} has non-finite values")
    if np.any(ds["spring_constant"].values < 0):
        problems.append("variable 'spring_constant' has negative values")
    valid = np.arange(n_sample)[None, :] < n[:, None]
    cv = ds["cv_values"].values
    finite = np.isfinite(cv).all(axis=2)
    if np.any(valid & ~finite):
        w = int(np.argmax((valid & ~finite).any(axis=1)))
        problems.append(f"variable 'cv_values' has non-finite values among the first "
                        f"n_samples={int(n[w])} samples of window {w}")
    periods = cv_periods(ds)
    if periods.size != ds.sizes["cv"] or np.any(periods < 0) or not np.isfinite(periods).all():
        problems.append(f"global attribute 'cv_period' is {ds.attrs.get('cv_period')!r}: "
                        f"expected {ds.sizes['cv']} non-negative period(s) (0: not periodic)")
    walkers = ds.attrs.get("walkers")
    if walkers is not None:
        try:
            w_int = int(walkers)
        except (TypeError, ValueError):
            w_int = 0
        if w_int < 1:
            problems.append(f"global attribute 'walkers' is {walkers!r}, expected an integer >= 1")
    return problems


def validate_fes(ds: xr.Dataset, *, where: str = "dataset") -> xr.Dataset:
    """Check the parts of a free-energy dataset (``mtcv.fes/1``) that its
    consumers rely on; raise :class:`SchemaError` naming what is wrong.

    Required: attributes ``mtcv_schema`` and ``temperature_K``; ``pmf`` and
    ``pmf_err`` (eV) on ``("bin",)`` with coordinates ``bin_center`` and
    ``bin_edges`` (``bin_edge``), or on ``("bin_x", "bin_y")`` with
    ``bin_center_x``/``_y`` and ``bin_edges_x``/``_y``. With basins
    (coordinate ``basin_from``): ``barrier``, ``barrier_err``, ``delta_F``,
    ``delta_F_err`` (eV) on ``("basin_from", "basin_to")`` and
    ``basin_free_energy`` on ``("basin",)``. Optional, read by the report:
    ``convergence_barrier`` and ``convergence_delta_F`` (eV) on
    ``("convergence_time", "basin_from", "basin_to")`` with the coordinate
    ``convergence_time`` (fs): the estimate from the samples up to that
    simulated time; the attribute ``estimator_label`` names the estimator in
    figures."""
    problems: list[str] = []
    if ds.attrs.get(SCHEMA_ATTR) != FES_SCHEMA:
        problems.append(f"global attribute {SCHEMA_ATTR!r} is {ds.attrs.get(SCHEMA_ATTR)!r}, "
                        f"expected {FES_SCHEMA!r}")
    if "temperature_K" not in ds.attrs:
        problems.append("global attribute 'temperature_K' is missing")
    for name in ("pmf", "pmf_err"):
        if name not in ds.variables:
            problems.append(f"variable {name!r} is missing (dims ('bin',) or ('bin_x', "
                            "'bin_y'), units 'eV')")
            continue
        if ds[name].dims not in (("bin",), ("bin_x", "bin_y")):
            problems.append(f"variable {name!r} has dims {ds[name].dims}, expected ('bin',) "
                            "or ('bin_x', 'bin_y')")
        if ds[name].attrs.get("units") != "eV":
            problems.append(f"variable {name!r} has units {ds[name].attrs.get('units')!r}, "
                            "expected 'eV'")
    if "pmf" in ds.variables:
        axes = [""] if ds["pmf"].dims == ("bin",) else ["_x", "_y"]
        for a in axes:
            for name in (f"bin_center{a}", f"bin_edges{a}"):
                if name not in ds.variables:
                    problems.append(f"variable {name!r} is missing (the bins of the PMF, CV "
                                    "units)")
    pairs = ("basin_from", "basin_to")
    wanted = {"basin_free_energy": ("basin",), "delta_F": pairs, "delta_F_err": pairs,
              "barrier": pairs, "barrier_err": pairs}
    for name, dims in wanted.items():
        if name not in ds.variables:
            if "basin_from" in ds.coords:
                problems.append(f"variable {name!r} is missing (dims {dims}, units 'eV'); "
                                "a dataset with basins needs it")
        elif ds[name].dims != dims:
            problems.append(f"variable {name!r} has dims {ds[name].dims}, expected {dims}")
    if problems:
        raise SchemaError(f"{where}: not a valid mtcv free-energy dataset ({FES_SCHEMA}):\n"
                          "  - " + "\n  - ".join(problems))
    return ds


def transitions_table(fes: xr.Dataset) -> list[dict[str, Any]]:
    """Per ordered basin pair: ``{"from", "to", "barrier_eV", "barrier_err_eV",
    "delta_F_eV", "delta_F_err_eV"}`` (floats, NaN where undefined) from a
    free-energy dataset with basins (empty list without)."""
    if "basin_from" not in fes.coords:
        return []
    rows = []
    for a in fes["basin_from"].values:
        for b in fes["basin_to"].values:
            if a == b:
                continue
            sel = {"basin_from": a, "basin_to": b}
            rows.append({
                "from": str(a), "to": str(b),
                "barrier_eV": float(fes["barrier"].sel(sel)),
                "barrier_err_eV": float(fes["barrier_err"].sel(sel)),
                "delta_F_eV": float(fes["delta_F"].sel(sel)),
                "delta_F_err_eV": float(fes["delta_F_err"].sel(sel)),
            })
    return rows


__all__ = ["UMBRELLA_SCHEMA", "FES_SCHEMA", "spring_units", "cv_periods",
           "make_umbrella_dataset", "validate_umbrella", "validate_fes", "transitions_table"]
