"""The documentation site: the generated configuration reference covers the
whole config schema, and ``mkdocs build --strict`` passes."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
GENERATOR = ROOT / "docs" / "gen_config_reference.py"


@pytest.fixture(scope="module")
def gen():
    spec = importlib.util.spec_from_file_location("gen_config_reference", GENERATOR)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


@pytest.fixture(scope="module")
def page(gen):
    return gen.generate()


def _section(page: str, heading: str) -> str:
    """The text under the first heading that starts with ``heading``, up to
    the next heading of the same or a higher level."""
    level = heading.split(" ")[0]
    start = page.index("\n" + heading) + 1
    stop = re.compile(rf"^#{{1,{len(level)}}} ", re.M)
    m = stop.search(page, start + len(heading))
    return page[start:m.start() if m else len(page)]


def _init_fields(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls) if f.init]


def test_every_run_config_field_is_documented(page):
    from mtcv_core.pipeline import ExecutionConfig, RunConfig, SampleConfig
    from mtcv_core.stages import EnsembleConfig, EstimateStageConfig, UmbrellaStageConfig
    from mtcv_core.training import TrainConfig

    tables = {"## Top-level keys": RunConfig, "## `[execution]`": ExecutionConfig,
              "## `[sample]`": SampleConfig, "## `[train]`": TrainConfig,
              "## `[umbrella]`": UmbrellaStageConfig, "## `[estimate]`": EstimateStageConfig,
              "## `[ensemble]`": EnsembleConfig}
    for heading, cls in tables.items():
        text = _section(page, heading)
        for name in _init_fields(cls):
            row = re.search(rf"^\| `{name}` \|[^\n]*\|$", text, re.M)
            assert row, f"{cls.__name__}.{name} missing under {heading!r}"
            description = row.group(0).rstrip("|").rsplit("|", 1)[1].strip()
            assert description, f"{cls.__name__}.{name} has no description"


def test_every_builtin_component_option_is_documented(gen, page):
    registry = gen.builtin_registry()
    checked = 0
    for comp in registry:
        if comp.kind not in ("data_source", "loss_head", "sampler", "estimator", "featurizer",
                             "system"):
            continue
        factory = comp.factory
        if dataclasses.is_dataclass(factory):
            names = _init_fields(factory)
        elif dataclasses.is_dataclass(getattr(factory, "Options", None)):
            names = _init_fields(factory.Options)
        else:
            import inspect

            names = [p.name for p in inspect.signature(factory).parameters.values()
                     if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
        text = _section(page, f"### `{comp.name}`")
        for name in names:
            assert f"| `{name}` |" in text, f"{comp.kind} {comp.name}: option {name} missing"
            checked += 1
    assert checked > 50


def test_undocumented_field_fails_the_build(gen, monkeypatch):
    @dataclasses.dataclass
    class Undocumented:
        documented: int = dataclasses.field(default=1, metadata={"doc": "has one"})
        forgotten: int = 2

    monkeypatch.setattr(gen, "sections", lambda: [("top level", Undocumented)])
    with pytest.raises(gen.ConfigReferenceError, match=r"Undocumented\.forgotten"):
        gen.generate()


def test_docstring_parameters(gen):
    doc = """Summary.

    Parameters
    ----------
    a, b : float
        Two numbers,
        in eV.
    site_mask : (n, 3) bool, active coordinates
    k0 : float, eV/A^2     stiffness

    Returns
    -------
    c : float
        Not a parameter.
    """
    params = gen.docstring_parameters(doc)
    assert params == {"a": "Two numbers, in eV.", "b": "Two numbers, in eV.",
                      "site_mask": "(n, 3) bool, active coordinates",
                      "k0": "stiffness, eV/A^2"}


def test_mkdocs_build_strict(tmp_path):
    pytest.importorskip("mkdocs")
    pytest.importorskip("mkdocstrings")
    pytest.importorskip("material")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict",
                           "--site-dir", str(site)], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    html = (site / "configuration" / "index.html").read_text()
    assert "walkers_per_window" in html and "trajectories_per_basin" in html
    assert (site / "api" / "core" / "index.html").is_file()
    assert not list(site.rglob("*.py")), "the hook module must not be published"


def test_griffe_extension_rewrites_rest():
    pytest.importorskip("griffe")
    spec = importlib.util.spec_from_file_location("griffe_rst", ROOT / "docs" / "griffe_rst.py")
    rst = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(rst)
    text = """See :class:`~mtcv_core.plugins.Registry` and :func:`mtcv_core.load_plugins`::

    code

=====  ==========
name   meaning
=====  ==========
``a``  first |x|
       continued
``b``  second
=====  ==========
"""
    out = rst.convert(text)
    assert out.splitlines()[0] == "See `Registry` and `mtcv_core.load_plugins`:"
    assert "| name | meaning |\n|---|---|\n| ``a`` | first \\|x\\| continued |\n" in out
    assert "| ``b`` | second |" in out and "=====" not in out
