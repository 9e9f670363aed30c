"""The frame dataset: one configuration per row, as an ``xarray.Dataset``.

Dimensions follow the AMBER NetCDF convention so that ASE, MDTraj and VMD
open mtcv trajectories: ``frame``, ``atom``, ``spatial`` (plus
``cell_spatial``/``cell_angular`` for the cell, zero for the non-periodic
systems mtcv handles).

=================  =====================  ===============  ===========================
variable           dims                   units            meaning
=================  =====================  ===============  ===========================
``coordinates``    frame, atom, spatial   angstrom         positions
``energy``         frame                  eV               potential energy
``forces``         frame, atom, spatial   eV/angstrom      forces, -dE/dR
``label``          frame                  (flags)          basin index, -1 = none
``label_source``   frame                  (flags)          how the label was assigned
``source``         frame                  (flags)          which data source made it
``split``          frame                  (flags)          train or test
``trajectory``     frame                  1                trajectory (or shot) id
``time``           frame                  fs               time within the trajectory
``temperature``    frame                  K                thermostat temperature
``Z``              atom                   1                atomic numbers
``masses``         atom                   amu              masses
=================  =====================  ===============  ===========================

Categorical variables are integer codes with CF ``flag_values`` and
``flag_meanings`` attributes. Global attributes carry provenance.
"""

from __future__ import annotations

import datetime as _dt
import json
import platform
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import xarray as xr

from mtcv_core.errors import MtcvError

SCHEMA_ATTR = "mtcv_schema"
FRAMES_SCHEMA = "mtcv.frames/1"

LABEL_SOURCES = ("none", "starting_basin", "committed_basin", "cv_region")
SOURCES = ("unknown", "basin_md", "tps", "file")
SPLITS = ("train", "test")

#: name -> (dims, units, long_name, dtype kind) of the required variables
FRAME_VARIABLES: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "coordinates": (("frame", "atom", "spatial"), "angstrom", "atomic positions", "f"),
    "energy": (("frame",), "eV", "potential energy", "f"),
    "forces": (("frame", "atom", "spatial"), "eV/angstrom", "forces", "f"),
    "label": (("frame",), "1", "basin label", "i"),
    "label_source": (("frame",), "1", "how the basin label was assigned", "i"),
    "source": (("frame",), "1", "data source that produced the frame", "i"),
    "split": (("frame",), "1", "train/test split", "i"),
    "trajectory": (("frame",), "1", "trajectory id", "i"),
    "time": (("frame",), "fs", "time within the trajectory", "f"),
    "temperature": (("frame",), "K", "thermostat temperature", "f"),
    "Z": (("atom",), "1", "atomic number", "i"),
    "masses": (("atom",), "amu", "atomic mass", "f"),
}


class SchemaError(MtcvError, ValueError):
    """A dataset does not follow the schema; the message says where and why."""


def _flags(meanings: Sequence[str], start: int = 0) -> dict[str, Any]:
    return {"flag_values": np.arange(start, start + len(meanings), dtype=np.int32),
            "flag_meanings": " ".join(meanings)}


def provenance(config: Mapping[str, Any] | None = None, seed: int | None = None,
               **extra: Any) -> dict[str, Any]:
    """Global attributes recording how a dataset was made.

    Values are str or numbers (netCDF attributes); the config is a JSON string.
    """
    import importlib.metadata as md

    versions = {}
    for dist in ("mtcv", "numpy", "torch", "ase", "xarray", "pymbar", "openmm"):
        try:
            versions[dist] = md.version(dist)
        except md.PackageNotFoundError:
            pass
    attrs: dict[str, Any] = {
        "program": "mtcv",
        "programVersion": versions.get("mtcv", "unknown"),
        "versions": json.dumps(versions, sort_keys=True),
        "python": platform.python_version(),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "config": json.dumps(dict(config or {}), sort_keys=True, default=str),
    }
    if seed is not None:
        attrs["seed"] = int(seed)
    for key, value in extra.items():
        attrs[key] = value if isinstance(value, (str, int, float)) else json.dumps(value)
    return attrs


def make_frames(
    coordinates: np.ndarray,
    energy: np.ndarray,
    forces: np.ndarray,
    *,
    numbers: Sequence[int],
    masses: Sequence[float],
    basins: Sequence[str],
    label: np.ndarray | None = None,
    label_source: str | np.ndarray = "none",
    source: str | np.ndarray = "unknown",
    split: str | np.ndarray = "train",
    trajectory: np.ndarray | int = 0,
    time: np.ndarray | None = None,
    temperature: np.ndarray | float = np.nan,
    attrs: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """Build a frame dataset.

    Parameters
    ----------
    coordinates : (n_frames, n_atoms, 3) angstrom
    energy : (n_frames,) eV
    forces : (n_frames, n_atoms, 3) eV/angstrom
    numbers, masses : (n_atoms,) atomic numbers and masses (amu)
    basins : basin names; ``label`` i means ``basins[i]``, -1 none
    label : (n_frames,) int, default all -1
    label_source, source, split : a name (for every frame) or (n_frames,) int codes
    trajectory : (n_frames,) int trajectory ids, or one id for all
    time : (n_frames,) fs, default 0
    temperature : (n_frames,) K or one value
    attrs : extra global attributes (provenance)
    """
    coordinates = np.asarray(coordinates, dtype=np.float64)
    if coordinates.ndim != 3 or coordinates.shape[-1] != 3:
        raise SchemaError(f"coordinates: expected shape (n_frames, n_atoms, 3), "
                          f"got {coordinates.shape}")
    n, n_atoms, _ = coordinates.shape

    def per_frame(value: Any, dtype: Any, name: str) -> np.ndarray:
        arr = np.asarray(value, dtype=dtype)
        if arr.ndim == 0:
            arr = np.full(n, arr, dtype=dtype)
        if arr.shape != (n,):
            raise SchemaError(f"{name}: expected shape ({n},), got {arr.shape}")
        return arr

    def codes(value: Any, table: Sequence[str], name: str) -> np.ndarray:
        if isinstance(value, str):
            if value not in table:
                raise SchemaError(f"{name}: unknown value {value!r}; expected one of {table}")
            value = table.index(value)
        return per_frame(value, np.int32, name)

    basins = list(basins)
    label_arr = per_frame(-1 if label is None else label, np.int32, "label")
    if label_arr.size and (label_arr.min() < -1 or label_arr.max() >= len(basins)):
        raise SchemaError(f"label: values must lie in [-1, {len(basins) - 1}] "
                          f"for basins {basins}")
    if time is None:
        time = np.zeros(n)
    data_vars = {
        "coordinates": (("frame", "atom", "spatial"), coordinates),
        "energy": (("frame",), per_frame(energy, np.float64, "energy")),
        "forces": (("frame", "atom", "spatial"), np.asarray(forces, dtype=np.float64)),
        "label": (("frame",), label_arr),
        "label_source": (("frame",), codes(label_source, LABEL_SOURCES, "label_source")),
        "source": (("frame",), codes(source, SOURCES, "source")),
        "split": (("frame",), codes(split, SPLITS, "split")),
        "trajectory": (("frame",), per_frame(trajectory, np.int32, "trajectory")),
        "time": (("frame",), per_frame(time, np.float64, "time")),
        "temperature": (("frame",), per_frame(temperature, np.float64, "temperature")),
        "Z": (("atom",), np.asarray(numbers, dtype=np.int32)),
        "masses": (("atom",), np.asarray(masses, dtype=np.float64)),
        # AMBER convention: a non-periodic cell has zero lengths.
        "cell_lengths": (("frame", "cell_spatial"), np.zeros((n, 3))),
        "cell_angles": (("frame", "cell_angular"), np.full((n, 3), 90.0)),
    }
    ds = xr.Dataset(data_vars)
    if ds.forces.shape != ds.coordinates.shape:
        raise SchemaError(f"forces: expected shape {coordinates.shape}, got {ds.forces.shape}")
    if ds.Z.shape != (n_atoms,) or ds.masses.shape != (n_atoms,):
        raise SchemaError(f"Z and masses: expected shape ({n_atoms},)")
    for name, (_dims, units, long_name, _kind) in FRAME_VARIABLES.items():
        ds[name].attrs.update(units=units, long_name=long_name)
    ds["label"].attrs.update(_flags(["none", *basins], start=-1))
    ds["label_source"].attrs.update(_flags(LABEL_SOURCES))
    ds["source"].attrs.update(_flags(SOURCES))
    ds["split"].attrs.update(_flags(SPLITS))
    ds["cell_lengths"].attrs.update(units="angstrom", long_name="cell lengths (0: no cell)")
    ds["cell_angles"].attrs.update(units="degree", long_name="cell angles")
    ds.attrs.update({"Conventions": "AMBER", "ConventionVersion": "1.0",
                     SCHEMA_ATTR: FRAMES_SCHEMA, "basins": " ".join(basins)})
    ds.attrs.update(dict(attrs or {}))
    return ds


def basin_names(frames: xr.Dataset) -> list[str]:
    """Basin names of a frame dataset, in label order."""
    return str(frames.attrs.get("basins", "")).split()


def concat_frames(parts: Sequence[xr.Dataset]) -> xr.Dataset:
    """Concatenate frame datasets along ``frame``; trajectory ids are
    offset so that they stay unique. Attributes come from the first part."""
    parts = [p for p in parts if p.sizes.get("frame", 0) > 0] or list(parts[:1])
    if not parts:
        raise SchemaError("concat_frames: nothing to concatenate")
    shifted = []
    offset = 0
    for part in parts:
        p = part.copy()
        if p.sizes["frame"]:
            traj = p["trajectory"].values
            p["trajectory"] = ("frame", traj - traj.min() + offset, p["trajectory"].attrs)
            offset = int(p["trajectory"].values.max()) + 1
        shifted.append(p)
    out = xr.concat(shifted, dim="frame", data_vars="minimal", coords="minimal",
                    compat="override", combine_attrs="override")
    for name in ("Z", "masses"):
        out[name] = parts[0][name]
    return out


def schema_problems(ds: xr.Dataset, schema: str,
                    variables: Mapping[str, tuple[tuple[str, ...], str, str, str]]) -> list[str]:
    """What keeps ``ds`` from the layout of ``schema``: the global schema
    attribute, each variable's presence, dims, units and dtype, and a
    3-long ``spatial`` dimension. ``variables`` maps a name to ``(dims,
    units, dtype kinds (numpy ``dtype.kind`` letters), what those kinds are
    called)``. Returns messages naming the variable and what was expected."""
    problems: list[str] = []
    if ds.attrs.get(SCHEMA_ATTR) != schema:
        problems.append(f"global attribute {SCHEMA_ATTR!r} is "
                        f"{ds.attrs.get(SCHEMA_ATTR)!r}, expected {schema!r}")
    for name, (dims, units, kinds, what) in variables.items():
        if name not in ds.variables:
            problems.append(f"variable {name!r} is missing (expected dims {dims}, "
                            f"units {units!r})")
            continue
        var = ds[name]
        if var.dims != dims:
            problems.append(f"variable {name!r} has dims {var.dims}, expected {dims}")
        if var.attrs.get("units") != units:
            problems.append(f"variable {name!r} has units {var.attrs.get('units')!r}, "
                            f"expected {units!r}")
        if var.dtype.kind not in kinds:
            problems.append(f"variable {name!r} has dtype {var.dtype}, expected {what}")
    if "spatial" in ds.sizes and ds.sizes["spatial"] != 3:
        problems.append(f"dimension 'spatial' has size {ds.sizes['spatial']}, expected 3")
    return problems


def validate_frames(ds: xr.Dataset, *, where: str = "dataset") -> xr.Dataset:
    """Check ``ds`` against the frame schema; raise :class:`SchemaError`
    naming the file (``where``), variable, dimension and what was expected."""
    problems = schema_problems(ds, FRAMES_SCHEMA, {
        name: (dims, units, "iu" if kind == "i" else "f",
               "an integer type" if kind == "i" else "a floating type")
        for name, (dims, units, _long, kind) in FRAME_VARIABLES.items()})
    if not problems:
        if ds.sizes.get("frame", 0) == 0:
            problems.append("dimension 'frame' is empty: the dataset holds no frames")
        elif ds.sizes.get("atom", 0) == 0:
            problems.append("dimension 'atom' is empty: the frames hold no atoms")
        else:
            for name in ("coordinates", "energy", "forces"):
                values = ds[name].values
                bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
                if bad.any():
                    problems.append(f"variable {name!r} has non-finite values in "
                                    f"{int(bad.sum())} frame(s), first at frame "
                                    f"{int(np.argmax(bad))}")
            masses = ds["masses"].values
            if not (np.isfinite(masses) & (masses > 0)).all():
                problems.append(f"variable 'masses' must be finite and > 0 amu, got "
                                f"{masses.tolist()[:8]}")
            n_basins = len(basin_names(ds))
            lab = ds["label"].values
            if lab.min() < -1 or lab.max() >= n_basins:
                problems.append(f"variable 'label' has values outside [-1, {n_basins - 1}] "
                                f"(basins attribute: {ds.attrs.get('basins')!r})")
    if problems:
        raise SchemaError(f"{where}: not a valid mtcv frame dataset:\n  - "
                          + "\n  - ".join(problems))
    return ds
