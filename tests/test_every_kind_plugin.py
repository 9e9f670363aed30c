"""The contracts hold for a stranger: a plugin package written against
``mtcv_core.interfaces`` and ``docs/plugins.md`` alone
(``tests/plugin_every_kind``) provides one component of every kind the
pipeline uses, and ``mtcv run`` on its config goes from sample to report.
Also: mtcv_core names no built-in component, and no plugin imports another.
"""

from __future__ import annotations

import ast
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mtcv_core.pipeline import STAGES
from mtcv_core.plugins import KINDS, load_plugins

ROOT = Path(__file__).parents[1]
PACKAGE = Path(__file__).parent / "plugin_every_kind"


def _env(site: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), *filter(None, [env.get("PYTHONPATH")])])
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")
    env.pop("MTCV_DISABLE_PLUGIN_AUTOLOAD", None)
    env.pop("MTCV_BLOCK_PLUGINS", None)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=timeout)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """The package installed into a --target folder (offline), then `mtcv run`
    on its config; returns (run directory, environment)."""
    root = tmp_path_factory.mktemp("every_kind")
    src = root / "src"
    shutil.copytree(PACKAGE, src, ignore=shutil.ignore_patterns(
        "__pycache__", "*.egg-info", "build", "dist"))
    site = root / "site"
    env = _env(site)
    res = _run(["-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                "--disable-pip-version-check", "--quiet", "--target", str(site), str(src)],
               env=env, cwd=root)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]
    out = root / "run"
    res = _run(["-m", "mtcv_core.cli", "run", str(src / "every_kind.toml"), "--out", str(out),
                "--quiet"], env=env, cwd=root)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    return out, env


def test_every_kind_the_pipeline_uses_comes_from_the_package(run_dir):
    out, env = run_dir
    res = _run(["-m", "mtcv_core.cli", "plugins", "--json"], env=env, cwd=out)
    assert res.returncode == 0, res.stderr
    listed = json.loads(res.stdout)["components"]
    ours = {c["kind"] for c in listed if c["plugin"] == "every_kind"}
    assert ours == {"system", "data_source", "featurizer", "loss_head", "sampler",
                    "estimator", "rate_estimator"}


def test_run_reaches_the_report_with_the_transitions_table(run_dir):
    """The histogram PMF along the learned CV of the double well: barrier
    a = 0.04 eV and F_right - F_left = 0 (symmetric well; y, z separate)."""
    out, _ = run_dir
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages_done"] == list(STAGES)
    assert (out / "report.md").is_file() and (out / "fes.nc").is_file()
    (row,) = summary["transitions"]
    assert (row["from"], row["to"]) == ("left", "right")
    assert summary["test_accuracy"] > 0.95
    assert abs(row["barrier_eV"] - 0.04) < max(0.012, 4 * row["barrier_err_eV"]), row
    assert abs(row["delta_F_eV"]) < max(0.012, 4 * row["delta_F_err_eV"]), row
    assert "| left->right |" in (out / "report.md").read_text()


def test_rates_from_the_packages_tst_estimator_match_tst_along_x(run_dir):
    """TST does not depend on how the CV is parametrised: the package's TST
    along the learned xi (its histogram PMF, the flux factor through the
    CV's gradient) against TST along x by quadrature of the double well,
    k = sqrt(kT / 2 pi m) exp(-V(0)/kT) / int_{x<0} exp(-V(x)/kT) dx; the
    symmetric well gives the same rate both ways."""
    from mtcv_core.rates import FS_PER_S, SQRT_EV_PER_AMU_IN_A_PER_FS
    from mtcv_core.units import kT_eV

    out, _ = run_dir
    summary = json.loads((out / "summary.json").read_text())
    rows = {(r["from"], r["to"]): r for r in summary["rates"]}
    assert set(rows) == {("left", "right"), ("right", "left")}
    kt, a_ev, mass = kT_eV(300.0), 0.04, 1.008
    x = np.linspace(-3.0, 0.0, 30001)
    basin = np.trapezoid(np.exp(-a_ev * (x**2 - 1) ** 2 / kt), x)
    exact = (np.sqrt(kt / (2 * np.pi * mass)) * SQRT_EV_PER_AMU_IN_A_PER_FS
             * np.exp(-a_ev / kt) / basin * FS_PER_S)
    for r in rows.values():
        assert r["kappa"] == 1.0
        assert r["rate_per_s"] == pytest.approx(exact, rel=0.1), (r, exact)
    assert "## Rates along xi" in (out / "report.md").read_text()


def _builtin_names() -> set[str]:
    registry = load_plugins()
    names = {n for kind in KINDS for n in registry.names(kind)}
    # core's own words that happen to equal a component name: the frame
    # variable "energy" and the stage names
    return names - {"energy"} - set(STAGES)


#: (module, name) pairs allowed in mtcv_core: defaults of config dataclasses
DEFAULTS = {("training.py", "classifier"), ("training.py", "cartesian"),
            ("estimate.py", "mbar"), ("rate.py", "reactive_flux"),
            # core's own words that the systems "ase" and "openmm" happen to
            # share: the MD engine option ("fast" or "ase") and the ase and
            # openmm distributions' names in the recorded package versions
            ("pipeline.py", "ase"), ("schema.py", "ase"), ("schema.py", "openmm")}


def test_core_names_no_builtin_component():
    names = _builtin_names()
    found = []
    for path in sorted((ROOT / "mtcv_core").rglob("*.py")):
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, ast.Module | ast.ClassDef | ast.FunctionDef)
                      and n.body and isinstance(n.body[0], ast.Expr)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str)
                    and node.value in names and id(node) not in docstrings
                    and (path.name, node.value) not in DEFAULTS):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, "mtcv_core names built-in components:\n" + "\n".join(found)


def test_no_plugin_imports_another():
    packages = {p.name for p in (ROOT / "plugins").iterdir() if (p / "__init__.py").exists()}
    found = []
    for pkg in sorted(packages):
        for path in sorted((ROOT / "plugins" / pkg).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                mods = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                        [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
                for mod in mods:
                    top = mod.split(".")[0]
                    if top in packages and top != pkg:
                        found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {mod}")
    assert not found, "plugins import each other:\n" + "\n".join(found)
