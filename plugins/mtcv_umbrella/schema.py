"""Per-window umbrella datasets and their merge into the umbrella dataset
(``mtcv.umbrella/1``: dims ``window``, ``sample``, ``cv``)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import xarray as xr

from mtcv_core.io import DatasetError
from mtcv_core.schema_umbrella import make_umbrella_dataset

WINDOW_SCHEMA = "mtcv.umbrella_window/1"


def make_window_dataset(*, window_id: int, center: np.ndarray, spring_constant: np.ndarray,
                        cv_values: np.ndarray, energy: np.ndarray, walkers: int,
                        temperature_K: float, cv_names: Sequence[str], cv_units: str,
                        cv_period: Sequence[float] | None = None) -> xr.Dataset:
    """One window: center (d,), spring_constant (d,) eV/unit^2, cv_values
    (n_samples, d) (walker-major), energy (n_samples,) eV (unbiased);
    cv_period (d,) the CV's periods (0: not periodic; None: none is)."""
    ds = xr.Dataset({
        "center": (("cv",), np.asarray(center, float)),
        "spring_constant": (("cv",), np.asarray(spring_constant, float)),
        "cv_values": (("sample", "cv"), np.asarray(cv_values, float)),
        "energy": (("sample",), np.asarray(energy, float)),
    })
    ds["center"].attrs.update(units=cv_units, long_name="window centre")
    ds["spring_constant"].attrs.update(units=f"eV/({cv_units})^2" if cv_units != "1" else "eV",
                                       long_name="spring constant")
    ds["cv_values"].attrs.update(units=cv_units, long_name="CV time series")
    ds["energy"].attrs.update(units="eV", long_name="unbiased potential energy")
    ds.attrs.update(mtcv_schema=WINDOW_SCHEMA, window_id=int(window_id), walkers=int(walkers),
                    temperature_K=float(temperature_K), cv_names=" ".join(cv_names),
                    cv_units=cv_units)
    if cv_period is not None and any(float(p) > 0 for p in cv_period):
        ds.attrs["cv_period"] = " ".join(repr(float(p)) for p in cv_period)
    return ds


def read_window(path: str | Path) -> xr.Dataset:
    """A saved window; a file that is not one gives a clear error."""
    path = Path(path)
    try:
        with xr.open_dataset(path, engine="netcdf4") as handle:
            ds = handle.load()
    except Exception as exc:
        raise DatasetError(f"{path}: not a readable netCDF file ({exc})") from exc
    if ds.attrs.get("mtcv_schema") != WINDOW_SCHEMA:
        raise DatasetError(f"{path}: not an umbrella window file (mtcv_schema "
                           f"{ds.attrs.get('mtcv_schema')!r})")
    return ds


def merge_windows(windows: Sequence[xr.Dataset], *, temperature_K: float) -> xr.Dataset:
    """Stack windows along ``window`` into the core umbrella schema
    (:func:`mtcv_core.schema_umbrella.make_umbrella_dataset`); series are
    NaN-padded to the longest."""
    first = windows[0].attrs
    period = first.get("cv_period")
    return make_umbrella_dataset(
        np.stack([w["center"].values for w in windows]),
        np.stack([w["spring_constant"].values for w in windows]),
        [w["cv_values"].values for w in windows], temperature_K=temperature_K,
        cv_names=str(first["cv_names"]), cv_units=str(first["cv_units"]),
        energy=[w["energy"].values for w in windows],
        cv_period=[float(p) for p in str(period).split()] if period else None,
        walkers=int(first["walkers"]),
        window_ids=[int(w.attrs["window_id"]) for w in windows])
