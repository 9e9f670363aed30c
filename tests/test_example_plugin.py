"""The example third-party plugin (examples/plugin_package) installs, is
discovered through its entry point, and runs in `mtcv run`.

The package is installed with pip into a temporary ``--target`` folder
(offline: ``--no-index --no-build-isolation --no-deps``) from a copy of its
source, so neither the shared virtualenv nor the working tree changes; the
subprocesses see it through ``PYTHONPATH``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parents[1] / "examples" / "plugin_package"


def _env(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env.pop("MTCV_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("MTCV_BLOCK_PLUGINS", None)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(source copy, site folder, environment) with the plugin installed in the site folder."""
    root = tmp_path_factory.mktemp("plugin")
    src = root / "src"
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns(
        "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache", ".ruff_cache"))
    site = root / "site"
    res = _run(["-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                "--disable-pip-version-check", "--quiet", "--target", str(site), str(src)],
               env=_env(site), cwd=root)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    assert (site / "mtcv_example" / "__init__.py").is_file()
    return src, site, _env(site)


def test_shared_environment_untouched(installed):
    """The plugin is visible only through PYTHONPATH, not in this interpreter."""
    assert importlib.util.find_spec("mtcv_example") is None


def test_plugin_listed_with_name_and_version(installed):
    src, site, env = installed
    res = _run(["-m", "mtcv_core.cli", "plugins", "--json"], env=env, cwd=site.parent)
    assert res.returncode == 0, res.stderr[-3000:]
    listing = json.loads(res.stdout)
    rows = {(c["kind"], c["name"]): c for c in listing["components"]}
    for key in (("system", "double_well_2d"), ("loss_head", "energy_huber")):
        assert key in rows, f"{key} not listed: {sorted(rows)}"
        assert rows[key]["plugin"] == "example"
        assert rows[key]["version"] == "0.1.0"
    assert not [b for b in listing["broken"] if b["plugin"] == "example"], listing["broken"]
    # the built-in plugins are still there
    assert ("loss_head", "classifier") in rows


def test_run_until_train_with_plugin_system_and_head(installed, tmp_path):
    src, site, env = installed
    out = tmp_path / "run"
    res = _run(["-m", "mtcv_core.cli", "run", str(src / "example.toml"), "--out", str(out),
                "--until", "train", "--quiet"], env=env, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-4000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["system"] == "double_well_2d"
    assert summary["stages_done"] == ["sample", "train"]
    assert summary["config"]["train"]["heads"]["energy_huber"] == {"hidden": [8], "delta": 1.0}
    assert summary["test_accuracy"] is not None and summary["test_accuracy"] > 0.9
    for name in ("data.nc", "model.pt", "cv.ts", "training.nc"):
        assert (out / name).is_file(), name
    # the trained Huber head's loss was recorded
    check = _run(["-c", "import sys, xarray as xr; h = xr.open_dataset(sys.argv[1]); "
                  "print(sorted(v for v in h.data_vars if 'energy_huber' in v))",
                  str(out / "training.nc")], env=env, cwd=tmp_path)
    assert check.returncode == 0, check.stderr[-2000:]
    assert "loss_train_energy_huber" in check.stdout


def test_package_own_tests_pass(installed):
    """The plugin's own test suite (built on mtcv's conformance checks), run
    in the copy of its source (``python -m pytest`` puts it first on sys.path)."""
    src, site, env = installed
    res = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"], env=env, cwd=src)
    assert res.returncode == 0, res.stdout[-4000:] + res.stderr[-2000:]
    assert " passed" in res.stdout
