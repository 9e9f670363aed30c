"""Every example script in examples/ runs, on small settings.

The scripts are found by glob, so a new ``examples/*.py`` is run here
automatically: it must take ``--small`` (the test settings, seconds) and
``--out DIR``, have a module docstring with its usage and an ``if __name__
== "__main__":`` guard, and have an entry in :data:`EXPECTED` (what its
output must say) -- a script without one fails :func:`test_example_script`.
"""

from __future__ import annotations

import ast
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).parents[1] / "examples"
SCRIPTS = sorted(EXAMPLES.glob("*.py"))

#: script name -> lines its --small run must print (substrings)
EXPECTED: dict[str, list[str]] = {
    "attach_umbrella_bias.py": ["with UmbrellaBias(EMT", "mean CV"],
    "plumed_pytorch_cv.py": ["cv.ts: torch.jit.load gives the eager xi",
                             "cv_plumed.ts: flat float32 input gives the eager xi",
                             "plumed.dat"],
    "read_with_ase_and_mdtraj.py": ["ase.io.read:", "positions agree"],
    "tutorial_muller_brown.py": ["test accuracy", "A->B barrier", "wrote"],
    "tutorial_three_well.py": ["test accuracy", "A->C barrier", "B->C barrier", "A->B barrier",
                               "wrote"],
    "tutorial_alanine_dipeptide.py": ["test accuracy", "C7eq->C7ax barrier", "wrote"],
    "tutorial_thermo.py": ["force matching: final loss", "force + energy: final loss",
                           "CG MD on force + energy A at 390 K", "wrote"],
    "mlcolvar_cv.py": ["A->B: barrier along the deep_tda CV", '"model": "deep_tda"'],
}

#: extra arguments per script
ARGS: dict[str, list[str]] = {
    "mlcolvar_cv.py": ["--model", "deep_tda", "--quiet"],
    # the alanine system needs OpenMM (optional); any system shows the round trip
    "read_with_ase_and_mdtraj.py": ([] if importlib.util.find_spec("openmm")
                                    else ["--system", "muller_brown_5d"]),
}

#: files each script must leave in its --out folder
OUTPUTS: dict[str, list[str]] = {
    "attach_umbrella_bias.py": ["cv.txt"],
    "plumed_pytorch_cv.py": ["cv.ts", "cv_plumed.ts", "plumed.dat"],
    "read_with_ase_and_mdtraj.py": ["frames.nc"],
    "tutorial_muller_brown.py": ["small.toml", "run/summary.json", "xi_plane.png", "pmf.png",
                                 "along_xi.png", "training.png"],
    "tutorial_three_well.py": ["small.toml", "run/summary.json", "xi_plane.png", "fes.png",
                               "latent.png", "training.png"],
    "tutorial_alanine_dipeptide.py": ["small.toml", "run/summary.json", "xi_phi_psi.png",
                                      "along_xi.png", "training.png", "fes.png"],
    "tutorial_thermo.py": ["free_energy.png", "thermo.png", "cg_md.png"],
    "mlcolvar_cv.py": ["sample_run/data.nc", "deep_tda.ts", "deep_tda.toml",
                       "deep_tda_run/summary.json", "deep_tda_run/report.md"],
}


@pytest.fixture(scope="module")
def run_example(tmp_path_factory):
    """Run a script once with --small (cached for the module); returns
    (completed process, its --out folder)."""
    cache: dict[str, tuple[subprocess.CompletedProcess, Path]] = {}

    def run(script: Path):
        if script.name not in cache:
            cwd = tmp_path_factory.mktemp(script.stem)
            out = cwd / "out"
            env = dict(os.environ)
            for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
                env.setdefault(var, "1")
            res = subprocess.run(
                [sys.executable, str(script), "--small", "--out", str(out),
                 *ARGS.get(script.name, [])],
                capture_output=True, text=True, cwd=cwd, env=env, timeout=300)
            cache[script.name] = (res, out)
        return cache[script.name]

    return run


#: scripts whose --small run takes about a minute each on 2 cores: run with
#: ``-m slow`` (benchmarks/slow_tests.py) to keep the default suite short; the
#: Muller-Brown and thermo tutorials stay in it and cover the shared code
SLOW = {"tutorial_three_well.py", "tutorial_alanine_dipeptide.py"}


def _params(scripts):
    return [pytest.param(p, marks=pytest.mark.slow) if p.name in SLOW else p for p in scripts]


def test_examples_found():
    assert {p.name for p in SCRIPTS} >= set(EXPECTED)


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_script_shape(script):
    """Docstring with usage, a --small flag, a __main__ guard."""
    source = script.read_text()
    tree = ast.parse(source)
    doc = ast.get_docstring(tree)
    assert doc and "Usage" in doc and "--small" in doc, f"{script.name}: docstring with usage"
    # the pipeline tutorials get --small from tutorial_muller_brown.tutorial_main
    assert '"--small"' in source or "tutorial_main(__doc__" in source, (
        f"{script.name}: needs a --small flag")
    assert 'if __name__ == "__main__":' in source, f"{script.name}: needs a __main__ guard"


@pytest.mark.parametrize("script", _params(SCRIPTS), ids=lambda p: p.name)
def test_example_script(script, run_example):
    assert script.name in EXPECTED, (
        f"examples/{script.name} has no test: add what its --small run must print to "
        "EXPECTED in tests/test_examples.py")
    res, out = run_example(script)
    assert res.returncode == 0, f"{script.name} failed:\n{res.stdout[-2000:]}\n{res.stderr[-4000:]}"
    for text in EXPECTED[script.name]:
        assert text in res.stdout, f"{script.name}: {text!r} not in its output:\n{res.stdout}"
    for name in OUTPUTS.get(script.name, []):
        assert (out / name).is_file(), f"{script.name} did not write {name}"


@pytest.mark.parametrize("script", _params(sorted(EXAMPLES.glob("tutorial_*.py"))),
                         ids=lambda p: p.name)
def test_tutorial_figures_are_pngs(script, run_example):
    """The figures a tutorial writes are non-empty PNG files."""
    res, out = run_example(script)
    assert res.returncode == 0, res.stderr[-4000:]
    figures = [name for name in OUTPUTS[script.name] if name.endswith(".png")]
    assert figures
    for name in figures:
        data = (out / name).read_bytes()
        assert len(data) > 1000 and data.startswith(b"\x89PNG"), f"{script.name}: {name}"


def test_mdtraj_reads_mtcv_frames(run_example):
    """The MDTraj half of read_with_ase_and_mdtraj.py (skipped without MDTraj)."""
    pytest.importorskip("mdtraj")
    res, out = run_example(EXAMPLES / "read_with_ase_and_mdtraj.py")
    assert res.returncode == 0, res.stderr[-4000:]
    assert "mdtraj.load:" in res.stdout and "positions agree" in res.stdout.split(
        "mdtraj.load:")[1], res.stdout


def test_plumed_input_matches_the_model(run_example):
    res, out = run_example(EXAMPLES / "plumed_pytorch_cv.py")
    assert res.returncode == 0, res.stderr[-4000:]
    text = (out / "plumed.dat").read_text()
    assert "UNITS LENGTH=A ENERGY=eV" in text
    line = next(ln for ln in text.splitlines() if ln.startswith("xi: PYTORCH_MODEL"))
    assert "FILE=cv_plumed.ts" in line
    assert line.split("ARG=")[1].split(",") == [f"p{i}.{c}" for i in range(2) for c in "xyz"]
    assert "RESTRAINT ARG=xi.node-0" in text
    # the exported files load with torch alone and agree with each other
    import torch

    cv = torch.jit.load(str(out / "cv.ts"))
    flat = torch.jit.load(str(out / "cv_plumed.ts"))
    x = torch.randn(3, 2, 3, dtype=torch.float64) + 20.0
    torch.testing.assert_close(flat(x.reshape(3, 6)).double(), cv(x).double())


def test_the_mlcolvar_example_biases_along_mlcolvars_own_module(run_example):
    """``mlcolvar_cv.py --small`` (its run above): mtcv's cv.ts is mlcolvar's
    exported Deep-TDA after mtcv's cartesian featurizer, the run imported it
    (no model.pt) and went to the report."""
    pytest.importorskip("mlcolvar")
    import json

    import numpy as np
    import torch

    from mtcv_systems import MullerBrown5D

    res, out = run_example(EXAMPLES / "mlcolvar_cv.py")
    assert res.returncode == 0, res.stderr[-3000:]
    run = out / "deep_tda_run"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["stages_done"][-1] == "report" and not (run / "model.pt").exists()
    assert summary["imported_cv"] == str((out / "deep_tda.ts").resolve())
    system = MullerBrown5D()
    rng = np.random.default_rng(0)
    pos = np.stack([system.make_atoms(b).get_positions() for b in system.basins] * 3)
    pos = torch.as_tensor(pos + 0.05 * rng.standard_normal(pos.shape), dtype=torch.float64)
    features = pos.reshape(len(pos), -1)[:, torch.as_tensor(system.dof_mask.reshape(-1))]
    mlc = torch.jit.load(str(out / "deep_tda.ts")).double()
    cv = torch.jit.load(str(run / "cv.ts"))
    with torch.no_grad():
        np.testing.assert_allclose(cv(pos).numpy(), mlc(features).numpy(), rtol=1e-10)
