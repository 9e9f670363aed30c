"""Bad input, fuzzed with hypothesis (issue #9): configs, frame datasets,
trajectory files and model files.

Each bad input must give ONE clear mtcv error (an
:class:`~mtcv_core.errors.MtcvError`: ConfigError, DatasetError, SchemaError,
ModelFileError, PluginError) whose message names what is wrong and where --
never a traceback from deep inside a library -- and a bad config must leave
an existing run directory byte for byte as it was (and create no new one).
Loading a model file never unpickles code.

Every input tried is counted in the ``reliability_counts`` fixture
(``tests/conftest.py``), which ``benchmarks/reliability_faults.py`` reports.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
import json
import math
import os
import pickle
import tempfile
import typing
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mtcv_core import stages
from mtcv_core.cli import main
from mtcv_core.config import MAX_SEED
from mtcv_core.errors import MtcvError
from mtcv_core.export import load_cv, load_model
from mtcv_core.io import DatasetError, read_frames, write_dataset
from mtcv_core.model import MODEL_FORMAT, ModelFileError, build_model, model_config
from mtcv_core.pipeline import (
    MAX_SEED as MAX_RUN_SEED,
)
from mtcv_core.pipeline import (
    ExecutionConfig,
    RunConfig,
    SampleConfig,
)
from mtcv_core.plugins import load_plugins
from mtcv_core.schema import SchemaError, make_frames
from mtcv_core.stages import EstimateStageConfig, UmbrellaStageConfig
from mtcv_core.training import TrainConfig

#: examples per kind of mistake: every kind is tried, the whole file runs in ~30 s
FUZZ = settings(max_examples=8, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])

REGISTRY = load_plugins()


def _count(counts, key: str) -> None:
    counts[key] += 1


# ====================================================================== configs
def toml_value(v: typing.Any) -> str:
    """``v`` (TOML types: bool, int, float, str, list, dict) as a TOML value."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(x)}"
                               for k, x in v.items()) + "}"
    raise TypeError(v)


def to_toml(config: dict) -> str:
    return "\n".join(f"{toml_value(str(k))} = {toml_value(v)}" for k, v in config.items()) + "\n"


#: a valid config naming every table (nothing runs: the stages are disabled)
BASE = {
    "name": "fuzz", "system": "muller_brown_5d", "seed": 3, "temperature_K": 300.0,
    "system_options": {"basin_fraction": 0.5},
    "execution": {"workers": 1},
    "sample": {"test_fraction": 0.25, "engine": "fast", "timestep_fs": 1.0,
               "friction_per_fs": 0.01,
               "sources": {"basin_md": {"trajectories_per_basin": 2, "n_steps": 20, "stride": 10,
                                        "equilibration_steps": 0, "walkers_per_task": 2},
                           "tps": {"chains": 1, "shots_per_chain": 1, "burn_in_shots": 0,
                                   "stride": 10}}},
    "train": {"epochs": 2, "warmup_epochs": 1, "batch_size": 64, "hidden": [8],
              "heads": {"classifier": {}, "energy": {"n_bins": 1}}},
    "umbrella": {"sampler_options": {"n_windows": 4, "max_refinements": 0,
                                     "walkers_per_window": 1, "n_steps": 20,
                                     "equilibration_steps": 0, "stride": 10}},
    "estimate": {"options": {"n_bins": 8, "n_bootstraps": 0}},
}

#: table path -> the dataclass its keys are checked against
TABLES: dict[tuple[str, ...], type] = {
    (): RunConfig,
    ("execution",): ExecutionConfig,
    ("sample",): SampleConfig,
    ("sample", "sources", "basin_md"): REGISTRY.get("data_source", "basin_md").factory,
    ("sample", "sources", "tps"): REGISTRY.get("data_source", "tps").factory,
    ("train",): TrainConfig,
    ("train", "heads", "energy"): REGISTRY.get("loss_head", "energy").factory.Options,
    ("umbrella",): UmbrellaStageConfig,
    ("umbrella", "sampler_options"): REGISTRY.get("sampler", "umbrella").factory,
    ("estimate",): EstimateStageConfig,
    ("estimate", "options"): REGISTRY.get("estimator", "mbar").factory,
}
#: tables whose keys are checked against a plugin's signature or the registry
OPEN_TABLES = [("system_options",), ("train", "featurizer_options"), ("train", "coefficients"),
               ("train", "heads"), ("sample", "sources")]
#: str fields naming a plugin -> its kind
PLUGIN_FIELDS = {("system",): "system", ("train", "featurizer"): "featurizer",
                 ("umbrella", "sampler"): "sampler", ("estimate", "estimator"): "estimator"}

FIELDS = [(path + (f.name,), typing.get_type_hints(cls)[f.name], f)
          for path, cls in TABLES.items() for f in dataclasses.fields(cls) if f.init]
BOUNDED = [(p, tp, f) for p, tp, f in FIELDS
           if {"gt", "min", "max"} & set(f.metadata) or f.name.endswith("seed")]
FLOATS = [(p, tp, f) for p, tp, f in FIELDS if tp in (float, float | None)]

TEXT = st.text(max_size=8)
#: printable characters: they appear in messages as they are
KEY_CHARS = st.characters(whitelist_categories=("L", "N", "P", "S"))
INT = st.integers(-(2**63), 2**63 - 1)
FLOAT = st.floats(allow_nan=True, allow_infinity=True)
LIST = st.lists(st.integers(-3, 3), max_size=2)
TABLE = st.dictionaries(st.text(max_size=3), st.integers(0, 3), max_size=2)


def wrong_type(tp: typing.Any) -> st.SearchStrategy:
    """Values that can never pass as ``tp``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is int:
        return st.one_of(TEXT, FLOAT, st.booleans(), LIST, TABLE)
    if tp is float or tp == float | None:
        return st.one_of(TEXT, st.booleans(), LIST, TABLE)
    if tp is bool:
        return st.one_of(TEXT, INT, FLOAT, LIST, TABLE)
    if tp is str or tp == str | None:
        return st.one_of(INT, FLOAT, st.booleans(), LIST, TABLE)
    if origin is typing.Literal:
        return st.one_of(TEXT.filter(lambda s: s not in args), INT, FLOAT, LIST)
    if origin in (typing.Union, type(int | None)) and type(None) in args and len(args) == 2:
        inner = next(a for a in args if a is not type(None))
        if typing.get_origin(inner) is typing.Literal or inner is int:  # TOML has no None
            return wrong_type(inner)
    if origin is list or (origin in (typing.Union, type(int | None))
                          and any(typing.get_origin(a) is list for a in args)):
        return st.one_of(TEXT, INT, TABLE, st.lists(INT, min_size=1, max_size=2)
                         if tp != list[int] else st.lists(TEXT, min_size=1, max_size=2))
    if origin is dict or dataclasses.is_dataclass(tp):
        return st.one_of(TEXT, INT, FLOAT, st.booleans(), LIST)
    raise AssertionError(f"no wrong-type strategy for {tp}")


def out_of_bounds(tp: typing.Any, field: dataclasses.Field) -> st.SearchStrategy:
    """Values of the right type outside the field's bounds."""
    meta = field.metadata
    is_int = tp is int
    options = []
    if field.name.endswith("seed") and is_int:
        options.append(st.integers(-(2**63), -1))
        top = meta.get("max", MAX_SEED)
        if top < 2**63 - 1:
            options.append(st.integers(top + 1, 2**63 - 1))
    if "gt" in meta:
        options.append(st.integers(-(2**63), int(math.floor(meta["gt"]))) if is_int else
                       st.floats(max_value=meta["gt"], allow_nan=False))
    if "min" in meta:
        options.append(st.integers(-(2**63), int(math.ceil(meta["min"])) - 1) if is_int else
                       st.floats(max_value=meta["min"], exclude_max=True, allow_nan=False))
    if "max" in meta:
        options.append(st.integers(int(math.floor(meta["max"])) + 1, 2**63 - 1) if is_int else
                       st.floats(min_value=meta["max"], exclude_min=True, allow_nan=False))
    if not is_int:
        options.append(st.sampled_from([math.nan, math.inf, -math.inf]))
    return st.one_of(options)


def _set(config: dict, path: tuple[str, ...], value: typing.Any) -> dict:
    node = config
    for key in path[:-1]:
        node = node.setdefault(key, {})
    node[path[-1]] = value
    return config


def _table(path: tuple[str, ...]) -> dict:
    node = BASE
    for key in path:
        node = node.get(key, {})
    return node


CONFIG_MISTAKES = ["wrong_type", "out_of_bounds", "nan_or_inf", "unknown_key", "unknown_plugin",
                   "not_toml"]


@st.composite
def bad_configs(draw, kind: str) -> tuple[str, typing.Any, str | None]:
    """(kind of mistake, the config (a dict, or raw text/bytes), a fragment the
    error must contain)."""
    config = json.loads(json.dumps(BASE))
    if kind == "wrong_type":
        path, tp, _ = draw(st.sampled_from(FIELDS))
        return kind, _set(config, path, draw(wrong_type(tp))), ".".join(path)
    if kind == "out_of_bounds":
        path, tp, field = draw(st.sampled_from(BOUNDED))
        return kind, _set(config, path, draw(out_of_bounds(tp, field))), ".".join(path)
    if kind == "nan_or_inf":
        path, _, _ = draw(st.sampled_from(FLOATS))
        value = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        return kind, _set(config, path, value), ".".join(path)
    if kind == "unknown_key":
        path = draw(st.sampled_from(list(TABLES) + OPEN_TABLES))
        allowed = set(_table(path))
        if path in TABLES:
            allowed |= {f.name for f in dataclasses.fields(TABLES[path])}
        if path == ("train", "coefficients"):
            allowed = set()  # any name that is not a configured head is refused
        if path in (("train", "heads"), ("sample", "sources")):
            kind_ = "loss_head" if path[0] == "train" else "data_source"
            allowed |= set(REGISTRY.names(kind_))
        key = draw(st.text(KEY_CHARS, max_size=10).filter(
            lambda k: k not in allowed and k not in ("energy", "classifier")))
        value = draw(st.one_of(st.integers(0, 5), st.just({})))
        return kind, _set(config, path + (key,), value), key or None
    if kind == "unknown_plugin":
        path, plugin_kind = draw(st.sampled_from(sorted(PLUGIN_FIELDS.items())))
        name = draw(TEXT.filter(lambda s: s not in REGISTRY.names(plugin_kind)))
        return kind, _set(config, path, name), ".".join(path)
    raw = draw(st.one_of(st.text(max_size=40), st.binary(max_size=40),
                         st.just(to_toml(BASE)[:-30] + "\n[[")))
    return kind, raw, None


def _snapshot(root: Path) -> dict[str, tuple[str, int]]:
    return {str(p.relative_to(root)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                       p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


@contextlib.contextmanager
def stages_disabled():
    """No stage may run and no Dask cluster may start inside the block."""
    mp = pytest.MonkeyPatch()

    def refuse(*_a, **_k):
        raise AssertionError("a bad config got past validation into a stage")

    for name in stages.STAGES:
        mp.setitem(stages.STAGES, name, refuse)
    mp.setattr(stages.RunContext, "client", refuse)
    try:
        yield
    finally:
        mp.undo()


@pytest.fixture
def no_stage_runs():
    with stages_disabled():
        yield


def _resumable_run(root: Path, stages_done: list[str], out_name: str = "o",
                   **summary: typing.Any) -> tuple[Path, Path]:
    """``(config file, run directory)``: BASE written as TOML under ``root``
    and a run directory whose summary.json holds that config and says
    ``stages_done`` are done (``summary``: further keys)."""
    from dataclasses import asdict

    from mtcv_core.pipeline import load_config

    cfg = root / "c.toml"
    cfg.write_text(to_toml(BASE))
    config, _ = load_config(cfg)
    out = root / out_name
    out.mkdir(parents=True)
    (out / "summary.json").write_text(json.dumps({
        **summary, "config": json.loads(json.dumps(asdict(config), sort_keys=True)),
        "stages_done": stages_done}))
    return cfg, out


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory with files from an earlier run (valid config, sample done)."""
    root = tmp_path_factory.mktemp("existing")
    _, out = _resumable_run(root, ["sample"], "out", system="muller_brown_5d", temperature_K=300.0,
                            timings_s={"sample": 1.0})
    (out / "sample").mkdir()
    write_dataset(_frames(), out / "data.nc")
    write_dataset(_frames(), out / "sample" / "basin_md_train.nc")
    (out / "model.pt").write_bytes(b"earlier bytes")
    return root


def _mtcv(*args: str) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(list(args))
    return rc, err.getvalue()


def test_base_config_is_valid(no_stage_runs, run_dir, tmp_path):
    """The fuzzed configs start from a valid one: it reaches the first stage."""
    cfg = tmp_path / "base.toml"
    cfg.write_text(to_toml(BASE))
    with pytest.raises(AssertionError, match="got past validation"):
        main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"])


@pytest.mark.parametrize("mistake", CONFIG_MISTAKES)
def test_bad_config_one_clear_error_and_nothing_touched(mistake, run_dir, reliability_counts):
    """Every bad config: exit status 2, one ``mtcv: error:`` line naming the
    file and the key, no traceback; run directory untouched, none created."""

    @FUZZ
    @given(case=bad_configs(mistake))
    def check(case):
        _check_bad_config(case, run_dir, reliability_counts)

    check()


def _check_bad_config(case, run_dir, reliability_counts):
    kind, config, fragment = case
    _count(reliability_counts, f"configs_{kind}")
    with tempfile.TemporaryDirectory() as tmp, stages_disabled():
        cfg = Path(tmp) / "bad.toml"
        if isinstance(config, dict):
            cfg.write_text(to_toml(config))
        elif isinstance(config, bytes):
            cfg.write_bytes(config)
        else:
            cfg.write_text(config)
        before = _snapshot(run_dir)
        fresh = Path(tmp) / "fresh"
        for args in (["--out", str(run_dir / "out"), "--resume"], ["--out", str(fresh)]):
            rc, err = _mtcv("run", str(cfg), *args, "--quiet")
            assert rc == 2, (kind, config, err)
            assert err.count("mtcv: error: ") == 1 and "Traceback" not in err, err
            assert str(cfg) in err, err
            if fragment:
                assert fragment in err, (fragment, err)
        assert _snapshot(run_dir) == before  # every file keeps its bytes and mtime
        assert not fresh.exists()  # and no output directory is created


@pytest.mark.parametrize("args,message", [
    (["--workers", "0"], "--workers: expected an integer >= 1"),
    (["--scheduler", "not an address"], "--scheduler: 'not an address' is not a Dask"),
])
def test_bad_command_line(args, message, no_stage_runs, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(to_toml(BASE))
    rc, err = _mtcv("run", str(cfg), "--out", str(tmp_path / "o"), *args)
    assert rc == 2 and message in err, err
    assert not (tmp_path / "o").exists()


def test_corrupt_summary_on_resume(no_stage_runs, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(to_toml(BASE))
    out = tmp_path / "o"
    out.mkdir()
    for text in ("{not json", json.dumps({"stages_done": ["sampling"]})):
        (out / "summary.json").write_text(text)
        rc, err = _mtcv("run", str(cfg), "--out", str(out), "--resume")
        assert rc == 2 and "summary.json" in err and "Traceback" not in err, err


# ===================================================================== datasets
def _frames(n: int = 6, seed: int = 0) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return make_frames(rng.normal(size=(n, 2, 3)), rng.normal(size=n),
                       rng.normal(size=(n, 2, 3)), numbers=[1, 1], masses=[1.0, 2.0],
                       basins=["A", "B"], label=rng.integers(-1, 2, n),
                       split=rng.integers(0, 2, n), temperature=300.0)


FRAME_VARS = ["coordinates", "energy", "forces", "label", "label_source", "source", "split",
              "trajectory", "time", "temperature", "Z", "masses"]


DATASET_MISTAKES = ["drop", "dims", "units", "non_finite", "empty", "no_atoms", "dtype",
                    "spatial", "schema", "label", "masses", "garbage", "truncated"]


@st.composite
def bad_datasets(draw, kind: str) -> tuple[str, typing.Any, str]:
    """(mutation, a dataset or raw bytes, a fragment the error must name)."""
    ds = _frames(draw(st.integers(1, 8)), draw(st.integers(0, 5)))
    name = draw(st.sampled_from(FRAME_VARS))
    if kind == "drop":
        return kind, ds.drop_vars(name), name
    if kind == "dims":
        var = ds[name]
        dims = list(var.dims)
        dims[draw(st.integers(0, len(dims) - 1))] = "bogus"
        return kind, ds.assign({name: (tuple(dims), var.values, var.attrs)}), name
    if kind == "units":
        units = draw(st.text(max_size=6).filter(lambda u: u != ds[name].attrs["units"]))
        ds[name].attrs["units"] = units
        return kind, ds, name
    if kind == "non_finite":
        name = draw(st.sampled_from(["coordinates", "energy", "forces"]))
        values = ds[name].values.copy()
        values.reshape(-1)[draw(st.integers(0, values.size - 1))] = draw(
            st.sampled_from([np.nan, np.inf, -np.inf]))
        ds[name] = (ds[name].dims, values, ds[name].attrs)
        return kind, ds, name
    if kind == "empty":
        return kind, ds.isel(frame=slice(0, 0)), "frame"
    if kind == "no_atoms":
        return kind, ds.isel(atom=slice(0, 0)), "atom"
    if kind == "dtype":
        name = draw(st.sampled_from(["coordinates", "energy", "label", "split", "Z"]))
        to = "U3" if draw(st.booleans()) else ("int64" if ds[name].dtype.kind == "f"
                                                 else "float64")
        ds[name] = (ds[name].dims, ds[name].values.astype(to), ds[name].attrs)
        return kind, ds, name
    if kind == "spatial":
        return kind, ds.isel(spatial=slice(0, 2)), "spatial"
    if kind == "schema":
        ds.attrs["mtcv_schema"] = draw(st.text(max_size=12).filter(
            lambda s: s != "mtcv.frames/1"))
        return kind, ds, "mtcv_schema"
    if kind == "label":
        values = ds["label"].values.copy()
        values[0] = draw(st.one_of(st.integers(-1000, -2), st.integers(2, 1000)))
        ds["label"] = ("frame", values, ds["label"].attrs)
        return kind, ds, "label"
    if kind == "masses":
        ds["masses"] = ("atom", np.array([draw(st.sampled_from([0.0, -1.0, np.nan, np.inf])),
                                          1.0]), ds["masses"].attrs)
        return kind, ds, "masses"
    if kind == "garbage":
        return kind, draw(st.binary(max_size=200)), "netCDF"
    buf = Path(tempfile.mkdtemp()) / "full.nc"
    write_dataset(ds, buf)
    data = buf.read_bytes()
    return kind, data[:draw(st.integers(0, len(data) - 1))], "netCDF"


@pytest.mark.parametrize("mistake", DATASET_MISTAKES)
def test_bad_dataset_one_clear_error(mistake, reliability_counts):
    """A frame dataset (data.nc) missing a variable, with wrong dims, units
    or dtypes, non-finite values, no frames or atoms, out-of-range labels,
    bad masses, random bytes or cut short: one SchemaError/DatasetError
    naming the file and the variable or dimension."""

    @FUZZ
    @given(case=bad_datasets(mistake))
    def check(case):
        _check_bad_dataset(case, reliability_counts)

    check()


def _check_bad_dataset(case, reliability_counts):
    kind, ds, fragment = case
    _count(reliability_counts, f"datasets_{kind}")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "data.nc"
        if isinstance(ds, bytes):
            path.write_bytes(ds)
        else:
            ds.to_netcdf(path, engine="netcdf4")
        with pytest.raises((SchemaError, DatasetError)) as info:
            read_frames(path)
    assert str(path) in str(info.value) and fragment in str(info.value), str(info.value)


def test_corrupt_data_on_resume_is_one_clear_error(tmp_path):
    """A run whose data.nc was damaged after the sample stage: the train stage
    of ``--resume`` names the file instead of training on garbage."""
    cfg, out = _resumable_run(tmp_path, ["sample"])
    write_dataset(_frames(), out / "data.nc")
    data = (out / "data.nc").read_bytes()
    (out / "data.nc").write_bytes(data[: len(data) - 10])
    rc, err = _mtcv("run", str(cfg), "--out", str(out), "--resume", "--quiet")
    assert rc == 2 and "data.nc: not a readable netCDF file: a truncated" in err, err
    assert "Traceback" not in err


# ============================================================ trajectory files
@pytest.fixture(scope="module")
def mb():
    return REGISTRY.create("system", "muller_brown_5d")


def _images(mb, n: int, seed: int, n_atoms: int | None = None):
    from ase import Atoms
    from ase.calculators.singlepoint import SinglePointCalculator

    rng = np.random.default_rng(seed)
    ref = mb.make_atoms("A")
    out = []
    for _ in range(n):
        k = n_atoms or len(ref)
        a = Atoms(numbers=[1] * k, positions=rng.normal(size=(k, 3)) + (ref.positions[:1] if
                                                                           k == len(ref) else 0))
        a.calc = SinglePointCalculator(a, energy=float(rng.normal()),
                                       forces=rng.normal(size=(k, 3)))
        out.append(a)
    return out


TRAJECTORY_MISTAKES = ["garbage", "truncated", "empty_file", "atoms", "no_energy", "non_finite"]


@st.composite
def bad_trajectories(draw, mb, kind: str) -> tuple[str, str, typing.Any]:
    """(mutation, file suffix, images to write or raw bytes)."""
    import ase.io

    fmt = draw(st.sampled_from(["traj", "extxyz", "nc"]))
    n = draw(st.integers(1, 5))
    seed = draw(st.integers(0, 9))
    if kind == "garbage":
        return kind, fmt, draw(st.binary(min_size=1, max_size=300))
    if kind == "empty_file":
        return kind, fmt, b""
    if kind == "atoms":
        return kind, fmt, _images(mb, n, seed, n_atoms=draw(st.sampled_from([1, 3, 5])))
    images = _images(mb, n, seed)
    if kind == "no_energy":
        for a in images:
            a.calc = None
        return kind, draw(st.sampled_from(["traj", "extxyz"])), images
    if kind == "non_finite":
        bad = draw(st.sampled_from(["positions", "energy", "forces"]))
        a = images[draw(st.integers(0, n - 1))]
        value = draw(st.sampled_from([np.nan, np.inf]))
        from ase.calculators.singlepoint import SinglePointCalculator

        e, f = a.get_potential_energy(), a.get_forces().copy()
        pos = a.get_positions()
        if bad == "positions":
            pos[0, 0] = value
        elif bad == "forces":
            f[0, 1] = value
        else:
            e = value
        a.set_positions(pos)
        a.calc = SinglePointCalculator(a, energy=e, forces=f)
        return kind, fmt, images
    with tempfile.TemporaryDirectory() as tmp:  # truncated
        path = Path(tmp) / f"full.{fmt}"
        ase.io.write(path, images, format=_ase_format(fmt))
        data = path.read_bytes()
    return kind, fmt, data[: draw(st.integers(0, len(data) - 1))]


def _ase_format(fmt: str) -> str:
    return {"traj": "traj", "extxyz": "extxyz", "nc": "netcdftrajectory"}[fmt]


@pytest.mark.parametrize("mistake", TRAJECTORY_MISTAKES)
def test_trajectory_fuzz(mistake, mb, reliability_counts):
    """A bad trajectory file for the ``trajectory_files`` source gives one mtcv
    error naming the file; a truncated file that still parses yields only
    valid, whole frames."""
    import ase.io

    from mtcv_sampling import TrajectoryFiles

    @FUZZ
    @given(case=bad_trajectories(mb, mistake))
    def check(case):
        kind, fmt, content = case
        _count(reliability_counts, f"trajectory_files_{kind}")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / f"input.{fmt}"
            if isinstance(content, bytes):
                path.write_bytes(content)
            else:
                ase.io.write(path, content, format=_ase_format(fmt))
            source = TrajectoryFiles(paths=[str(path)], test_paths=[str(path)],
                                     labeler="none", temperature_K=300.0)
            try:
                frames = source.run(mb, seed=0)
            except MtcvError as exc:
                assert str(path) in str(exc), str(exc)
                assert isinstance(exc, (DatasetError, SchemaError)), repr(exc)
                return
            assert kind == "truncated", f"{kind}: accepted a bad file"
            from mtcv_core.schema import validate_frames

            validate_frames(frames)

    check()


# ================================================================= model files
@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A small untrained model saved as model.pt, and its config."""
    root = tmp_path_factory.mktemp("model")
    config = model_config(featurizer="cartesian", featurizer_options={}, n_atoms=2,
                          n_features=6, latent_dim=1, hidden=[4], n_classes=2,
                          basins=["A", "B"], heads={"classifier": {}})
    model = build_model(config, REGISTRY)
    path = model.save(root / "model.pt")
    return path, config, model


class Exploit:
    """Unpickling this creates a marker file (arbitrary code on load)."""

    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


MODEL_MISTAKES = ["garbage", "truncated", "payload", "architecture", "config", "not_torch_zip"]


@st.composite
def bad_models(draw, good: bytes, config: dict, state: dict, kind: str) -> tuple[str, bytes]:
    if kind == "garbage":
        return kind, draw(st.binary(max_size=300))
    if kind == "truncated":
        return kind, good[: draw(st.integers(0, len(good) - 1))]
    if kind == "not_torch_zip":
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            zf.writestr(draw(st.sampled_from(["a.txt", "model/data.pkl"])),
                        draw(st.binary(max_size=50)))
        return kind, buf.getvalue()
    payload = {"format": MODEL_FORMAT, "config": json.loads(json.dumps(config)),
               "state_dict": dict(state)}
    if kind == "payload":
        payload = draw(st.sampled_from([
            [1, 2], torch.zeros(3), 7, {"format": "something/else"},
            {"format": MODEL_FORMAT}, {"format": MODEL_FORMAT, "config": 3, "state_dict": {}}]))
    elif kind == "architecture":  # weights that do not fit the config
        change = draw(st.sampled_from(["hidden", "latent_dim", "drop", "extra"]))
        if change == "hidden":
            payload["config"]["hidden"] = [draw(st.integers(1, 3)) * 8 + 1]
        elif change == "latent_dim":
            payload["config"]["latent_dim"] = draw(st.integers(2, 4))
        elif change == "drop":
            payload["state_dict"].pop(draw(st.sampled_from(sorted(state))))
        else:
            payload["state_dict"]["bogus.weight"] = torch.zeros(2)
    else:  # a config naming what no plugin provides, or the wrong sizes
        key, value = draw(st.sampled_from([("featurizer", "nope"), ("heads", {"nope": {}}),
                                           ("n_features", 5), ("n_atoms", 7),
                                           ("dtype", "float16")]))
        payload["config"][key] = value
    buf = io.BytesIO()
    torch.save(payload, buf)
    return kind, buf.getvalue()


@pytest.mark.parametrize("mistake", MODEL_MISTAKES)
def test_model_fuzz(mistake, model_file, reliability_counts):
    """A model.pt that is not one of ours -- random bytes, cut short, another
    payload, weights of another architecture, a config naming a missing
    plugin -- gives one ModelFileError naming the file."""
    path, config, model = model_file
    good = path.read_bytes()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @FUZZ
    @given(case=bad_models(good, config, state, mistake))
    def check(case):
        kind, data = case
        _count(reliability_counts, f"model_files_{kind}")
        with tempfile.TemporaryDirectory() as tmp:
            bad = Path(tmp) / "model.pt"
            bad.write_bytes(data)
            with pytest.raises(ModelFileError) as info:
                load_model(bad, REGISTRY)
            assert str(bad) in str(info.value)
            with pytest.raises(ModelFileError, match="model.pt"):  # nor as TorchScript
                load_cv(bad)

    check()


def test_model_file_that_runs_code_is_refused(model_file, tmp_path, reliability_counts):
    """A model.pt crafted to run code when unpickled (``__reduce__``), as a
    torch zip archive, a legacy torch file or a bare pickle, is refused with
    a ModelFileError, and the code never runs (the marker is never created);
    inside a run directory, ``--resume`` reports it in one line."""
    marker = tmp_path / "pwned"
    payloads = {
        "zip_config": {"format": MODEL_FORMAT, "config": Exploit(str(marker))},
        "zip_state": {"format": MODEL_FORMAT, "config": {}, "state_dict": Exploit(str(marker))},
        "zip_top": Exploit(str(marker)),
    }
    files = []
    for name, payload in payloads.items():
        path = tmp_path / f"{name}.pt"
        torch.save(payload, path)
        files.append(path)
    legacy = tmp_path / "legacy.pt"
    torch.save(Exploit(str(marker)), legacy, _use_new_zipfile_serialization=False)
    raw = tmp_path / "raw.pt"
    raw.write_bytes(pickle.dumps(Exploit(str(marker))))
    files += [legacy, raw]
    for path in files:
        _count(reliability_counts, "model_files_code_execution")
        with pytest.raises(ModelFileError, match=f"{path.name}.*weights_only=True"):
            load_model(path, REGISTRY)
        assert not marker.exists(), f"{path.name} ran code on load"
    # the genuine file still loads
    load_model(model_file[0], REGISTRY)


def test_run_refuses_a_model_file_that_runs_code(tmp_path):
    """``mtcv run --resume`` of a run whose model.pt was replaced by an
    exploit: one line naming the file; the code never runs."""
    marker = tmp_path / "pwned"
    cfg, out = _resumable_run(tmp_path, ["sample", "train", "umbrella"])
    torch.save({"format": MODEL_FORMAT, "config": Exploit(str(marker))}, out / "model.pt")
    rc, err = _mtcv("run", str(cfg), "--out", str(out), "--resume", "--quiet")
    assert rc == 2 and "model.pt" in err and "Traceback" not in err, err
    assert not marker.exists()


def test_toml_writer_round_trips():
    import tomllib

    assert tomllib.loads(to_toml(BASE)) == BASE
    assert MAX_RUN_SEED == 2**31 - 1
