"""Frame schema, validation and netCDF I/O."""

from __future__ import annotations

import ase.io
import numpy as np
import pytest
import xarray as xr

from mtcv_core.io import DatasetError, read_dataset, read_frames, write_dataset
from mtcv_core.schema import SchemaError, make_frames, provenance, validate_frames


def frames(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return make_frames(rng.normal(size=(n, 2, 3)), rng.normal(size=n),
                       rng.normal(size=(n, 2, 3)), numbers=[1, 1], masses=[1.0, 1.0],
                       basins=["A", "B"], label=rng.integers(-1, 2, n), source="tps",
                       label_source="committed_basin", trajectory=np.arange(n) // 2,
                       time=np.arange(n) * 5.0, temperature=300.0,
                       attrs=provenance(config={"a": 1, "b": [1, 2]}, seed=42))


def test_round_trip_identical(tmp_path):
    ds = frames()
    path = write_dataset(ds, tmp_path / "data.nc")
    xr.testing.assert_identical(read_frames(path), ds)


def test_units_and_long_names_everywhere():
    ds = frames()
    for name in ("coordinates", "energy", "forces", "time", "temperature", "masses"):
        assert ds[name].attrs["units"] and ds[name].attrs["long_name"]
    assert ds.coordinates.dims == ("frame", "atom", "spatial")
    assert ds.attrs["seed"] == 42 and '"b": [1, 2]' in ds.attrs["config"]


def test_ase_reads_mtcv_trajectories(tmp_path):
    ds = frames()
    path = write_dataset(ds, tmp_path / "traj.nc")
    images = ase.io.read(path, ":")
    assert len(images) == ds.sizes["frame"]
    np.testing.assert_array_equal(np.array([a.positions for a in images]),
                                  ds.coordinates.values)
    assert images[3].info["energy"] == pytest.approx(ds.energy.values[3])


def test_corrupted_file_gives_clear_error(tmp_path):
    path = write_dataset(frames(), tmp_path / "data.nc")
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) // 3])
    with pytest.raises(DatasetError, match=r"data\.nc: not a readable netCDF file"):
        read_frames(path)
    with pytest.raises(DatasetError, match="no such file"):
        read_frames(tmp_path / "missing.nc")
    (tmp_path / "text.nc").write_text("hello")
    with pytest.raises(DatasetError, match=r"text\.nc: not a readable netCDF file"):
        read_frames(tmp_path / "text.nc")


def test_schema_violations_named(tmp_path):
    ds = frames()
    bad = ds.drop_vars("energy")
    with pytest.raises(SchemaError, match="variable 'energy' is missing"):
        validate_frames(bad)
    bad = ds.copy(deep=True)
    bad["coordinates"].attrs["units"] = "nm"
    with pytest.raises(SchemaError, match="'coordinates' has units 'nm', expected 'angstrom'"):
        validate_frames(bad)
    bad = ds.rename_dims(atom="atoms")
    with pytest.raises(SchemaError,
                       match=r"'coordinates' has dims \('frame', 'atoms', 'spatial'\)"):
        validate_frames(bad)
    bad = ds.copy(deep=True)
    bad["coordinates"].values[2, 0, 0] = np.nan
    with pytest.raises(SchemaError, match="non-finite values in 1 frame.*frame 2"):
        validate_frames(bad)
    with pytest.raises(SchemaError, match="holds no frames"):
        validate_frames(ds.isel(frame=slice(0, 0)))
    # written to disk, the error names the file
    path = tmp_path / "bad.nc"
    bad = ds.copy(deep=True)
    bad["energy"].attrs["units"] = "kcal/mol"
    write_dataset(bad, path)
    with pytest.raises(SchemaError, match=r"(?s)bad\.nc.*'energy' has units 'kcal/mol'"):
        read_frames(path)


def test_not_an_mtcv_file(tmp_path):
    path = tmp_path / "plain.nc"
    xr.Dataset({"x": ("t", np.arange(3.0))}).to_netcdf(path)
    with pytest.raises(SchemaError, match="not a dataset written by mtcv"):
        read_dataset(path)
    with pytest.raises(SchemaError, match="expected 'mtcv.frames/1'"):
        read_frames(path)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    good = write_dataset(frames(seed=1), tmp_path / "data.nc")
    before = good.read_bytes()
    broken = frames()
    broken.attrs["unserialisable"] = {"a": object()}  # netCDF cannot store this
    with pytest.raises(Exception):  # noqa: B017 - any failure inside the writer
        write_dataset(broken, good)
    assert good.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data.nc"]


def test_make_frames_rejects_bad_arrays():
    with pytest.raises(SchemaError, match=r"coordinates: expected shape \(n_frames, n_atoms, 3\)"):
        make_frames(np.zeros((3, 2)), np.zeros(3), np.zeros((3, 2)), numbers=[1],
                    masses=[1.0], basins=["A"])
    with pytest.raises(SchemaError, match=r"label: values must lie in \[-1, 1\]"):
        make_frames(np.zeros((2, 1, 3)), np.zeros(2), np.zeros((2, 1, 3)), numbers=[1],
                    masses=[1.0], basins=["A", "B"], label=[0, 5])
    with pytest.raises(SchemaError, match="source_names: expected distinct words"):
        make_frames(np.zeros((2, 1, 3)), np.zeros(2), np.zeros((2, 1, 3)), numbers=[1],
                    masses=[1.0], basins=["A"], source="my md")
    with pytest.raises(SchemaError, match="int codes need source_names"):
        make_frames(np.zeros((2, 1, 3)), np.zeros(2), np.zeros((2, 1, 3)), numbers=[1],
                    masses=[1.0], basins=["A"], source=np.array([0, 1]))
    with pytest.raises(SchemaError, match=r"codes must lie in \[0, 0\]"):
        make_frames(np.zeros((2, 1, 3)), np.zeros(2), np.zeros((2, 1, 3)), numbers=[1],
                    masses=[1.0], basins=["A"], source=np.array([0, 1]), source_names=["md"])


def test_sources_name_their_own_frames_and_concat_merges_the_tables(tmp_path):
    """A third-party source tags its frames with its own word; concatenation
    keeps every frame's name, whatever code it had in its part."""
    from mtcv_core.schema import category_names, concat_frames

    def part(source, label_source, n):
        return make_frames(np.zeros((n, 1, 3)), np.zeros(n), np.zeros((n, 1, 3)), numbers=[1],
                           masses=[1.0], basins=["A"], source=source, label_source=label_source)

    merged = concat_frames([part("my_metadynamics", "my_labeler", 2), part("tps", "none", 3),
                            part("my_metadynamics", "none", 1)])
    assert category_names(merged, "source") == ["my_metadynamics", "tps"]
    assert category_names(merged, "label_source") == ["my_labeler", "none"]
    assert merged["source"].values.tolist() == [0, 0, 1, 1, 1, 0]
    assert merged["label_source"].values.tolist() == [0, 0, 1, 1, 1, 1]
    validate_frames(merged)
    path = write_dataset(merged, tmp_path / "merged.nc")
    xr.testing.assert_identical(read_frames(path), merged)
    bad = merged.copy()
    bad["source"] = ("frame", np.array([0, 0, 2, 1, 1, 0], dtype=np.int32), merged["source"].attrs)
    with pytest.raises(SchemaError, match=r"'source' has codes outside \[0, 1\]"):
        validate_frames(bad)
