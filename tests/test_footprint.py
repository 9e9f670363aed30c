"""Absurd sizes fail fast (mtcv_core.footprint)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mtcv_core.config import ConfigError
from mtcv_core.footprint import check_footprints, human
from mtcv_core.interfaces import Footprint

BASE = """
name = "absurd"
system = "muller_brown_5d"
[sample.sources.basin_md]
trajectories_per_basin = {trajectories}
n_steps = 100
[train]
epochs = 1
[umbrella]
reference = false
[umbrella.sampler_options]
n_steps = {steps}
"""


def _run(tmp_path, *extra, trajectories=4, steps=1000):
    cfg = tmp_path / "absurd.toml"
    cfg.write_text(BASE.format(trajectories=trajectories, steps=steps))
    return subprocess.run([sys.executable, "-m", "mtcv_core.cli", "run", str(cfg), "--out",
                           str(tmp_path / "out"), "--quiet", *extra],
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("kw, where", [
    ({"trajectories": 10**9}, "sample.sources.basin_md (train split): would hold about"),
    ({"steps": 10**12}, "umbrella.sampler_options: would hold about"),
])
def test_absurd_configs_are_refused_at_validation_and_nothing_is_written(tmp_path, kw, where,
                                                                        reliability_counts):
    res = _run(tmp_path, "--until", "sample", **kw)
    assert res.returncode == 2
    line = res.stderr.strip().splitlines()[-1]
    assert where in line and "this machine has" in line and "--allow-large" in line
    assert not (tmp_path / "out").exists()
    reliability_counts["absurd_refused"] += 1


def test_allow_large_skips_the_refusal(tmp_path):
    from mtcv_core.pipeline import load_config
    from mtcv_core.plugins import build_component, load_plugins
    from mtcv_core.stages import RunContext, validate

    cfg = tmp_path / "absurd.toml"
    cfg.write_text(BASE.format(trajectories=10**9, steps=1000))
    config, _ = load_config(cfg)
    registry = load_plugins()
    system = build_component(registry, "system", config.system, {}, "system_options")
    ctx = RunContext(config=config, out=tmp_path / "o", registry=registry, system=system,
                     client_factory=None, progress=False, summary={})
    with pytest.raises(ConfigError, match="basin_md"):
        validate(ctx)
    validate(ctx, allow_large=True)


def test_the_largest_memory_and_the_summed_disk_are_checked(tmp_path):
    gib = 1024.0**3
    items = [("a", Footprint(2 * gib, 3 * gib, "x")), ("b", Footprint(1 * gib, 3 * gib, "y")),
             ("c", None)]
    check_footprints(items, tmp_path, memory=2.5 * gib, disk=7 * gib)
    with pytest.raises(ConfigError, match=r"^a: would hold about 2 GiB in memory \(x\)"):
        check_footprints(items, tmp_path, memory=1.5 * gib, disk=7 * gib)
    with pytest.raises(ConfigError, match=r"about 6 GiB \(a 3 GiB, b 3 GiB\).* 5 GiB free"):
        check_footprints(items, tmp_path, memory=2.5 * gib, disk=5 * gib)
    assert human(512) == "512 B" and human(1.5 * gib) == "1.5 GiB"
