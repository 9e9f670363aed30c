"""netCDF I/O: atomic writes and validating reads.

A file is written to a temporary name beside its destination and renamed
into place, so an interrupted run never leaves a half-written file under a
final name. Reading loads the file into memory, closes it and validates it;
errors name the file and what is wrong with it.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from mtcv_core.errors import DiskFullError, MtcvError
from mtcv_core.schema import (
    FRAME_AXIS_LABELS,
    FRAMES_SCHEMA,
    SCHEMA_ATTR,
    SchemaError,
    validate_frames,
    with_index_coords,
)
from mtcv_core.schema_biased import BIASED_SCHEMA, validate_biased
from mtcv_core.schema_rates import RATES_SCHEMA, validate_rates
from mtcv_core.schema_umbrella import FES_SCHEMA, UMBRELLA_SCHEMA, validate_fes, validate_umbrella

PathLike = str | os.PathLike[str]

#: schema name -> validator(ds, where=...) for :func:`read_dataset`
VALIDATORS: dict[str, Callable[..., xr.Dataset]] = {
    FRAMES_SCHEMA: validate_frames,
    UMBRELLA_SCHEMA: validate_umbrella,
    FES_SCHEMA: validate_fes,
    RATES_SCHEMA: validate_rates,
    BIASED_SCHEMA: validate_biased,
}


class DatasetError(MtcvError, OSError):
    """A file cannot be read as an mtcv dataset; the message names it."""


class MissingFileError(DatasetError, FileNotFoundError):
    """An input file does not exist; the message names it."""


@contextlib.contextmanager
def atomic_path(path: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed to
    ``path`` (atomically), on failure it is removed and ``path`` untouched."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb") as fh:  # make the bytes durable before the rename
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except Exception as exc:
        reason = _storage_failure(exc, path.parent)
        if reason is None:
            raise
        tmp_path.unlink(missing_ok=True)
        raise DiskFullError(f"{path}: cannot be written ({reason}; "
                            f"{_free_text(path.parent)})") from exc
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


#: errno values that mean the storage, not the data, failed
STORAGE_ERRNOS = {errno.ENOSPC: "no space left on the device",
                  errno.EDQUOT: "disk quota exceeded", errno.EFBIG: "file too large",
                  errno.EIO: "input/output error"}


def _storage_failure(exc: BaseException, directory: Path) -> str | None:
    """Why a write failed when the storage is to blame (an errno of
    :data:`STORAGE_ERRNOS` anywhere in the exception chain, or -- libraries
    such as netCDF/HDF5 report a full disk as their own error -- less than
    1 MiB free where the file was going), else None."""
    seen: set[int] = set()
    e: BaseException | None = exc
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in STORAGE_ERRNOS:
            return STORAGE_ERRNOS[e.errno]
        e = e.__cause__ or e.__context__
    try:
        if shutil.disk_usage(directory).free < 1 << 20:
            return f"{type(exc).__name__}: {exc} with the disk full"
    except OSError:
        pass
    return None


def _free_text(directory: Path) -> str:
    from mtcv_core.footprint import human

    try:
        return f"{human(shutil.disk_usage(directory).free)} free there"
    except OSError:
        return "free space unknown"


def write_dataset(ds: xr.Dataset, path: PathLike) -> Path:
    """Write ``ds`` to netCDF at ``path`` atomically; returns the path.

    Frame datasets are written as classic 64-bit-offset netCDF (the AMBER
    trajectory format that ASE, MDTraj and VMD read); everything else as
    netCDF4. Every dimension of the file has a coordinate
    (:func:`mtcv_core.schema.with_index_coords`): the one ``ds`` gives it,
    else the frame schema's axis names, the ``cv_names`` attribute on
    ``cv``, or the index.
    """
    path = Path(path)
    frames = ds.attrs.get(SCHEMA_ATTR) == FRAMES_SCHEMA
    labels: dict[str, Any] = dict(FRAME_AXIS_LABELS) if frames else {}
    if "cv" in ds.dims and isinstance(ds.attrs.get("cv_names"), str):
        labels["cv"] = ds.attrs["cv_names"].split()
    ds = with_index_coords(ds, labels)
    fmt = "NETCDF3_64BIT" if frames else "NETCDF4"
    with atomic_path(path) as tmp:
        ds.to_netcdf(tmp, engine="netcdf4", format=fmt)
    return path


def read_netcdf(path: PathLike) -> xr.Dataset:
    """A netCDF file written by :func:`write_dataset`, read into memory as
    written (no schema check: :func:`read_dataset` adds it); a truncated or
    unreadable file raises :class:`DatasetError` naming it."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(f"{path}: no such file")
    try:
        check_complete(path)
        with xr.open_dataset(path, engine="netcdf4") as handle:
            ds = handle.load()
    except DatasetError:
        raise
    except Exception as exc:  # netCDF4/HDF5 raise a zoo of types for a bad file
        raise DatasetError(f"{path}: not a readable netCDF file "
                           f"({type(exc).__name__}: {exc})") from exc
    for var in ds.variables.values():  # CF flag_values is a vector; netCDF
        if "flag_values" in var.attrs:  # gives a one-name table back as a scalar
            var.attrs["flag_values"] = np.atleast_1d(var.attrs["flag_values"])
    return ds


def read_dataset(path: PathLike, *, schema: str | None = None) -> xr.Dataset:
    """Read a netCDF file written by mtcv into memory and validate it.

    ``schema`` is the expected ``mtcv_schema`` attribute (e.g.
    :data:`mtcv_core.schema.FRAMES_SCHEMA`); ``None`` accepts any known schema.
    """
    path = Path(path)
    ds = read_netcdf(path)
    found = ds.attrs.get(SCHEMA_ATTR)
    if schema is not None and found != schema:
        raise SchemaError(f"{path}: global attribute {SCHEMA_ATTR!r} is {found!r}, "
                          f"expected {schema!r}")
    validator = VALIDATORS.get(str(found))
    if validator is None:
        if schema is None and found is None:
            raise SchemaError(f"{path}: no {SCHEMA_ATTR!r} global attribute; "
                              "not a dataset written by mtcv")
        return ds
    return validator(ds, where=str(path))


def check_complete(path: PathLike) -> None:
    """Raise :class:`DatasetError` if ``path`` is a classic (netCDF-3) file
    shorter than its header says. The netCDF library reads the missing tail
    of a truncated classic file as zeros without a word, so a file cut short
    (a copy that stopped, a full disk) would load with silently wrong values;
    SciPy's reader checks every variable against the file's length. HDF5
    (netCDF-4) files are checked by HDF5 itself."""
    import warnings

    from scipy.io import netcdf_file

    path = Path(path)
    with open(path, "rb") as fh:
        magic = fh.read(4)
    if magic[:3] != b"CDF" or magic[3:] not in (b"\x01", b"\x02"):
        return
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # scipy warns about unclosed arrays
            with netcdf_file(path, "r", mmap=False) as handle:
                for var in handle.variables.values():
                    _ = var.data.shape
    except Exception as exc:
        raise DatasetError(f"{path}: not a readable netCDF file: a truncated or corrupt "
                           "netCDF-3 file, its header promises more data than it holds "
                           f"({type(exc).__name__}: {exc})") from exc


def read_frames(path: PathLike) -> xr.Dataset:
    """Read and validate a frame dataset (``data.nc``)."""
    return read_dataset(path, schema=FRAMES_SCHEMA)
