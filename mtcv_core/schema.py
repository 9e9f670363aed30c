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
``flag_meanings`` attributes. ``split`` has the fixed meanings ``train
test``; ``source`` and ``label_source`` carry free names that each data
source chooses for its frames (e.g. ``basin_md``, ``starting_basin``): a
dataset's own ``flag_meanings`` list the names it holds, and
:func:`concat_frames` merges the tables of its parts. Global attributes
carry provenance.
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

SPLITS = ("train", "test")
#: categorical variables whose names a data source chooses
FREE_CATEGORIES = ("source", "label_source")

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


def with_index_coords(ds: xr.Dataset,
                      labels: Mapping[str, Sequence[Any]] | None = None) -> xr.Dataset:
    """``ds`` with a coordinate on every dimension that has none: the values
    in ``labels`` (dim -> values, e.g. the CV names on ``cv``) or the index
    0, 1, ... (``long_name`` "index"), so that every dimension of every file
    mtcv writes is labelled."""
    add = {}
    for dim, size in ds.sizes.items():
        if dim in ds.coords:
            continue
        if labels is not None and dim in labels and len(labels[dim]) == size:
            add[dim] = (dim, list(labels[dim]))
        else:
            add[dim] = (dim, np.arange(size, dtype=np.int64), {"long_name": f"{dim} index"})
    return ds.assign_coords(add) if add else ds


def frame_bytes(n_atoms: int) -> int:
    """Bytes of one frame of ``n_atoms`` in the frame schema (coordinates
    and forces in float64, the per-frame scalars)."""
    return 2 * 3 * 8 * int(n_atoms) + 64


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
    source_names: Sequence[str] | None = None,
    label_source_names: Sequence[str] | None = None,
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
    label_source, source : a name for every frame (any word without spaces:
        the data source's own, e.g. ``"tps"``, ``"committed_basin"``), or
        (n_frames,) int codes into ``label_source_names`` / ``source_names``
    split : ``"train"`` or ``"test"``, or (n_frames,) int codes into them
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
        arr = per_frame(value, np.int32, name)
        if arr.size and (arr.min() < 0 or arr.max() >= len(table)):
            raise SchemaError(f"{name}: codes must lie in [0, {len(table) - 1}] for the "
                              f"names {list(table)}")
        return arr

    def names(value: Any, given: Sequence[str] | None, name: str) -> list[str]:
        if given is None:
            if not isinstance(value, str):
                raise SchemaError(f"{name}: int codes need {name}_names, the names they index")
            given = [value]
        table = [str(v) for v in given]
        if any(not v or any(c.isspace() for c in v) for v in table) or len(set(table)) < len(
                table):
            raise SchemaError(f"{name}_names: expected distinct words without spaces, got "
                              f"{table}")
        return table

    source_table = names(source, source_names, "source")
    label_source_table = names(label_source, label_source_names, "label_source")

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
        "label_source": (("frame",), codes(label_source, label_source_table, "label_source")),
        "source": (("frame",), codes(source, source_table, "source")),
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
    ds["label_source"].attrs.update(_flags(label_source_table))
    ds["source"].attrs.update(_flags(source_table))
    ds["split"].attrs.update(_flags(SPLITS))
    ds["cell_lengths"].attrs.update(units="angstrom", long_name="cell lengths (0: no cell)")
    ds["cell_angles"].attrs.update(units="degree", long_name="cell angles")
    ds.attrs.update({"Conventions": "AMBER", "ConventionVersion": "1.0",
                     SCHEMA_ATTR: FRAMES_SCHEMA, "basins": " ".join(basins)})
    ds.attrs.update(dict(attrs or {}))
    return with_index_coords(ds, FRAME_AXIS_LABELS)


#: labels of the frame schema's axis dimensions (the AMBER convention's
#: ``spatial``, ``cell_spatial`` and ``cell_angular`` variables); ``frame``
#: and ``atom`` are labelled by their index
FRAME_AXIS_LABELS = {"spatial": ["x", "y", "z"], "cell_spatial": ["a", "b", "c"],
                     "cell_angular": ["alpha", "beta", "gamma"]}


def basin_names(frames: xr.Dataset) -> list[str]:
    """Basin names of a frame dataset, in label order."""
    return str(frames.attrs.get("basins", "")).split()


def category_names(frames: xr.Dataset, name: str) -> list[str]:
    """The names of categorical variable ``name`` (``split``, ``source``,
    ``label_source``), in code order."""
    return str(frames[name].attrs.get("flag_meanings", "")).split()


def category_codes(frames: xr.Dataset, name: str, names: Sequence[str]) -> np.ndarray:
    """(n_frames,) the codes of ``name`` re-expressed in the table ``names``
    (which must hold every name the dataset uses)."""
    own = category_names(frames, name)
    missing = [v for v in own if v not in names]
    if missing:
        raise SchemaError(f"{name}: names {missing} are not in {list(names)}")
    lookup = np.array([list(names).index(v) for v in own] or [0], dtype=np.int32)
    return lookup[frames[name].values]


def set_category(frames: xr.Dataset, name: str, value: str) -> xr.Dataset:
    """``frames`` with every frame's ``name`` (``source`` or ``label_source``)
    set to the word ``value``; the table becomes ``[value]``."""
    attrs = {**frames[name].attrs, **_flags([value])}
    out = frames.copy()
    out[name] = ("frame", np.zeros(frames.sizes["frame"], dtype=np.int32), attrs)
    return out


def concat_frames(parts: Sequence[xr.Dataset]) -> xr.Dataset:
    """Concatenate frame datasets along ``frame``; trajectory ids are
    offset so that they stay unique, the ``source`` and ``label_source``
    tables are merged (names in order of first appearance). Other attributes
    come from the first part."""
    parts = [p for p in parts if p.sizes.get("frame", 0) > 0] or list(parts[:1])
    if not parts:
        raise SchemaError("concat_frames: nothing to concatenate")
    tables: dict[str, list[str]] = {}
    for name in FREE_CATEGORIES:
        table: list[str] = []
        for part in parts:
            table += [v for v in category_names(part, name) if v not in table]
        tables[name] = table
    shifted = []
    offset = 0
    for part in parts:
        p = part.copy()
        for name, table in tables.items():
            p[name] = ("frame", category_codes(part, name, table),
                       {**part[name].attrs, **_flags(table)})
        if p.sizes["frame"]:
            traj = p["trajectory"].values
            p["trajectory"] = ("frame", traj - traj.min() + offset, p["trajectory"].attrs)
            offset = int(p["trajectory"].values.max()) + 1
        shifted.append(p)
    out = xr.concat(shifted, dim="frame", data_vars="minimal", coords="minimal",
                    compat="override", combine_attrs="override")
    for name in ("Z", "masses"):
        out[name] = parts[0][name]
    if "frame" in out.coords:  # each part counted its frames from 0
        out = out.assign_coords(frame=("frame", np.arange(out.sizes["frame"], dtype=np.int64),
                                       out["frame"].attrs))
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
            for name in ("split", *FREE_CATEGORIES):
                table = category_names(ds, name)
                codes = ds[name].values
                if name == "split" and table != list(SPLITS):
                    problems.append(f"variable 'split' has flag_meanings {table}, expected "
                                    f"{list(SPLITS)}")
                elif not table:
                    problems.append(f"variable {name!r} has no flag_meanings (the names of "
                                    "its codes)")
                elif codes.min() < 0 or codes.max() >= len(table):
                    problems.append(f"variable {name!r} has codes outside [0, {len(table) - 1}]"
                                    f" (flag_meanings {table})")
            n_basins = len(basin_names(ds))
            lab = ds["label"].values
            if lab.min() < -1 or lab.max() >= n_basins:
                problems.append(f"variable 'label' has values outside [-1, {n_basins - 1}] "
                                f"(basins attribute: {ds.attrs.get('basins')!r})")
    if problems:
        raise SchemaError(f"{where}: not a valid mtcv frame dataset:\n  - "
                          + "\n  - ".join(problems))
    return ds
