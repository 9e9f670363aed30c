"""Third-party plugins that fail (issue #9): a plugin that raises while it
registers, while its component is built, or inside its component (in the
CLI process or in a Dask worker) is named -- plugin, version, component --
in one error line; ``mtcv plugins`` still lists everything else.
Registration failures themselves are covered by ``tests/test_plugins.py``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import types

import pytest
from test_plugins import make_distribution

import mtcv_core
from mtcv_core.errors import MtcvError
from mtcv_core.plugins import (
    PluginError,
    blame,
    build_component,
    build_registry,
    get_plugin_manager,
)

FAILING = """
    import numpy as np

    from mtcv_core import hookimpl
    from mtcv_systems import MullerBrown5D


    class BrokenEnergy(MullerBrown5D):
        \"\"\"Müller-Brown whose energy raises (a bug in a third-party system).\"\"\"

        def energy_and_forces(self, x):
            raise ZeroDivisionError("toy energy divided by zero")


    class NoBuild:
        def __init__(self, size=1):
            raise RuntimeError("cannot build today")


    @hookimpl
    def mtcv_register_systems(register):
        register("broken_energy", BrokenEnergy)
        register("no_build", NoBuild)
"""

RAISES = """
    from mtcv_core import hookimpl

    @hookimpl
    def mtcv_register_estimators(register):
        raise ValueError("cannot register today")
"""


@pytest.fixture(scope="module")
def plugins_path(tmp_path_factory):
    root = tmp_path_factory.mktemp("site")
    make_distribution(root, "mtcv_toyfail", "mtcv_toyfail_plugin", FAILING, version="0.4.2")
    make_distribution(root, "mtcv_raises", "mtcv_raises_plugin", RAISES)
    return root


def mtcv(*args, path, env=None, cwd=None):
    full = dict(os.environ)
    full["PYTHONPATH"] = str(path) + os.pathsep + full.get("PYTHONPATH", "")
    full.update(env or {})
    return subprocess.run([sys.executable, "-m", "mtcv_core.cli", *args], env=full,
                          capture_output=True, text=True, timeout=600, cwd=cwd)


CONFIG = """
system = "{system}"
seed = 1
[execution]
workers = 1
[sample]
test_fraction = 0.5
[sample.sources.basin_md]
trajectories_per_basin = 1
n_steps = 10
stride = 5
equilibration_steps = 0
"""


def test_plugins_command_lists_the_rest(plugins_path):
    out = mtcv("plugins", "--json", path=plugins_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    names = {(c["kind"], c["name"]): c for c in data["components"]}
    assert names[("system", "broken_energy")]["version"] == "0.4.2"
    assert ("system", "muller_brown_5d") in names and ("estimator", "mbar") in names
    assert {b["plugin"] for b in data["broken"]} == {"mtcv_raises"}


def test_component_that_fails_to_build_is_named(plugins_path, tmp_path, reliability_counts):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.format(system="no_build"))
    res = mtcv("run", str(cfg), "--out", str(tmp_path / "o"), "--quiet", path=plugins_path)
    reliability_counts["plugin_failures_injected"] += 1
    assert res.returncode == 2, res.stderr
    (line,) = res.stderr.strip().splitlines()
    assert line.startswith("mtcv: error: ")
    assert "system 'no_build' (plugin mtcv_toyfail 0.4.2) raised RuntimeError" in line
    assert "cannot build today" in line and "MTCV_TRACEBACK=1" in line
    assert not (tmp_path / "o").exists()


def test_component_that_raises_in_a_dask_worker_is_named(plugins_path, tmp_path,
                                                        reliability_counts):
    """The system's energy raises inside a Dask task: the error names the
    data source and the third-party system with their plugins; with
    ``MTCV_TRACEBACK=1`` the plugin's own traceback comes first."""
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.format(system="broken_energy"))
    res = mtcv("run", str(cfg), "--out", str(tmp_path / "o"), "--quiet", path=plugins_path,
               env={"MTCV_TRACEBACK": "1"})
    reliability_counts["plugin_failures_injected"] += 1
    assert res.returncode == 2, res.stderr[-3000:]
    last = res.stderr.strip().splitlines()[-1]
    assert last.startswith("mtcv: error: ")
    assert ("data_source 'basin_md' (plugin sampling 0.1.0) on system 'broken_energy' "
            "(plugin mtcv_toyfail 0.4.2) raised ZeroDivisionError while sampling the train "
            "split: toy energy divided by zero") in last
    assert "Traceback" in res.stderr and "mtcv_toyfail_plugin.py" in res.stderr
    summary = json.loads((tmp_path / "o" / "summary.json").read_text()) if (
        tmp_path / "o" / "summary.json").exists() else {"stages_done": []}
    assert summary["stages_done"] == []


def test_naming_a_component_of_a_broken_plugin(plugins_path, tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(CONFIG.format(system="muller_brown_5d") + '[estimate]\nestimator = "toy"\n')
    res = mtcv("run", str(cfg), "--out", str(tmp_path / "o"), "--quiet", path=plugins_path)
    assert res.returncode == 2
    assert "estimate.estimator: no estimator named 'toy'" in res.stderr
    assert "broken plugins: mtcv_raises (ValueError: cannot register today)" in res.stderr


def _registry(**components):
    mod = types.ModuleType("mtcv_inline")

    @mtcv_core.hookimpl
    def mtcv_register_estimators(register):
        for name, factory in components.items():
            register(name, factory)

    mod.mtcv_register_estimators = mtcv_register_estimators
    pm, versions, broken = get_plugin_manager([("inline", mod)])
    return build_registry(pm, versions, broken)


def test_build_component_and_blame(monkeypatch):
    monkeypatch.setenv("MTCV_DISABLE_PLUGIN_AUTOLOAD", "1")

    class Fine:
        def __init__(self, n_bins: int = 3):
            if n_bins > 10:
                raise ValueError("n_bins above 10")
            self.n_bins = n_bins

        def estimate(self):
            raise KeyError("lost")

    def crashes(**_):
        raise MemoryError

    reg = _registry(fine=Fine, crashes=crashes)
    assert build_component(reg, "estimator", "fine", {"n_bins": 4}, "estimate.options").n_bins == 4
    with pytest.raises(MtcvError, match=r"estimate.options.nbins: unknown option of estimator "
                                        r"'fine' \(plugin inline"):
        build_component(reg, "estimator", "fine", {"nbins": 4}, "estimate.options")
    with pytest.raises(MtcvError, match="estimate.options: estimator 'fine' .* rejected the "
                                        "options .*n_bins above 10"):
        build_component(reg, "estimator", "fine", {"n_bins": 40}, "estimate.options")
    with pytest.raises(PluginError, match="estimator 'crashes' .* raised MemoryError while "
                                          "being built"):
        build_component(reg, "estimator", "crashes", {}, "estimate.options")
    with pytest.raises(PluginError, match="estimate.estimator: no estimator named 'nope'"):
        build_component(reg, "estimator", "nope", {}, "estimate.options",
                        name_where="estimate.estimator")
    fine = build_component(reg, "estimator", "fine", {}, "estimate.options")
    with pytest.raises(PluginError, match="estimator 'fine' .* raised KeyError while "
                                          "estimating: 'lost'") as info:
        with blame(reg.get("estimator", "fine"), action="estimating"):
            fine.estimate()
    assert isinstance(info.value.__cause__, KeyError)
    with pytest.raises(MtcvError, match="already clear"):  # mtcv's own errors pass as they are
        with blame(reg.get("estimator", "fine"), action="estimating"):
            raise PluginError("already clear")
