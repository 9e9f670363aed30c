"""The plugin surface: discovery, isolation of broken plugins, env switches."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import mtcv_core
from mtcv_core import hookspecs
from mtcv_core.plugins import KINDS, PluginError, build_registry, get_plugin_manager


def make_distribution(root: Path, dist: str, module: str, body: str, version: str = "1.2.3"):
    """A throwaway installed distribution: a module plus its dist-info with an
    entry point in group ``mtcv`` -- what ``pip install`` would leave."""
    (root / f"{module}.py").write_text(textwrap.dedent(body))
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    (info / "entry_points.txt").write_text(f"[mtcv]\n{dist} = {module}\n")


GOOD = """
    from mtcv_core import hookimpl

    class Toy:
        def __init__(self, size=1):
            self.size = size

    @hookimpl
    def mtcv_register_systems(register):
        register("toy_system", Toy)

    @hookimpl
    def mtcv_register_loss_heads(register):
        register("toy_head", Toy)
"""


def run_cli(*args: str, path: Path | None = None, env: dict | None = None):
    full_env = dict(os.environ)
    if path is not None:
        full_env["PYTHONPATH"] = str(path) + os.pathsep + full_env.get("PYTHONPATH", "")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "mtcv_core.cli", *args], env=full_env,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def third_party(tmp_path):
    make_distribution(tmp_path, "mtcv_toy", "mtcv_toy_plugin", GOOD)
    make_distribution(tmp_path, "mtcv_broken", "mtcv_broken_plugin",
                      "raise RuntimeError('this plugin is broken on purpose')\n")
    make_distribution(tmp_path, "mtcv_raises", "mtcv_raises_plugin", """
        from mtcv_core import hookimpl

        @hookimpl
        def mtcv_register_samplers(register):
            raise ValueError("cannot register today")
    """)
    make_distribution(tmp_path, "mtcv_empty", "mtcv_empty_plugin", """
        from mtcv_core import hookimpl

        @hookimpl
        def mtcv_register_samplers(register):
            pass  # forgot to register
    """)
    return tmp_path


def test_builtin_systems_listed():
    out = run_cli("plugins", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    names = {(c["kind"], c["name"]) for c in data["components"]}
    assert ("system", "muller_brown_5d") in names
    assert ("system", "three_well_5d") in names
    assert data["broken"] == []


def test_third_party_discovered_and_broken_reported(third_party):
    out = run_cli("plugins", "--json", path=third_party)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    comps = {(c["kind"], c["name"]): c for c in data["components"]}
    assert comps[("system", "toy_system")]["plugin"] == "mtcv_toy"
    assert comps[("system", "toy_system")]["version"] == "1.2.3"
    assert ("loss_head", "toy_head") in comps
    assert ("system", "muller_brown_5d") in comps  # the others still load
    broken = {b["plugin"]: b for b in data["broken"]}
    assert broken["mtcv_broken"]["stage"] == "import"
    assert "broken on purpose" in broken["mtcv_broken"]["error"]
    assert broken["mtcv_raises"]["stage"] == "mtcv_register_samplers"
    assert "cannot register today" in broken["mtcv_raises"]["error"]
    assert broken["mtcv_empty"]["stage"] == "register"
    assert "registers no component" in broken["mtcv_empty"]["error"]
    table = run_cli("plugins", path=third_party)
    assert table.returncode == 0
    assert "toy_system" in table.stdout and "mtcv_toy" in table.stdout
    assert "BROKEN plugin mtcv_broken" in table.stderr


def test_env_switch_disables_autoload(third_party):
    out = run_cli("plugins", "--json", path=third_party,
                  env={"MTCV_DISABLE_PLUGIN_AUTOLOAD": "1"})
    data = json.loads(out.stdout)
    assert data["components"] == [] and data["broken"] == []
    # explicit loading still works with autoload off
    out = run_cli("plugins", "--json", path=third_party,
                  env={"MTCV_DISABLE_PLUGIN_AUTOLOAD": "1", "MTCV_PLUGINS": "mtcv_toy_plugin"})
    names = {c["name"] for c in json.loads(out.stdout)["components"]}
    assert names == {"toy_system", "toy_head"}


def test_block_plugins(third_party):
    out = run_cli("plugins", "--json", path=third_party,
                  env={"MTCV_BLOCK_PLUGINS": "mtcv_toy,mtcv_broken"})
    data = json.loads(out.stdout)
    names = {c["name"] for c in data["components"]}
    assert "toy_system" not in names and "muller_brown_5d" in names
    assert "mtcv_broken" not in {b["plugin"] for b in data["broken"]}


def test_registry_create_and_clear_errors():
    registry = mtcv_core.load_plugins(reload=True)
    system = registry.create("system", "muller_brown_5d")
    assert system.name == "muller_brown_5d"
    with pytest.raises(PluginError, match="no system named 'nope'.*muller_brown_5d"):
        registry.get("system", "nope")
    with pytest.raises(PluginError, match="unknown component kind"):
        registry.get("widget", "x")


def test_duplicate_names_keep_first(monkeypatch):
    import types

    def plugin(tag):
        mod = types.ModuleType(f"dup_{tag}")

        @mtcv_core.hookimpl
        def mtcv_register_estimators(register):
            register("same", lambda: tag)

        mod.mtcv_register_estimators = mtcv_register_estimators
        return mod

    monkeypatch.setenv("MTCV_DISABLE_PLUGIN_AUTOLOAD", "1")
    pm, versions, broken = get_plugin_manager([("one", plugin("one")), ("two", plugin("two"))])
    reg = build_registry(pm, versions, broken)
    assert len(reg.components["estimator"]) == 1
    assert any("already provided" in b.error for b in reg.broken)


def test_every_hook_documented():
    """Each kind has a hook, each hook a docstring naming its interface."""
    for kind, hook in KINDS.items():
        fn = getattr(hookspecs, hook)
        assert fn.__doc__ and "mtcv_core.interfaces." in fn.__doc__, kind
