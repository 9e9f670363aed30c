"""The umbrella stage: the sampler along the learned CV (``umbrella.nc``)
and, as a reference, along the system's true CVs (``umbrella_reference.nc``).

The sampler owns its algorithm (:class:`mtcv_core.interfaces.Sampler`): the
stage hands it the CV, the labelled training frames with their CV values as
candidate starts, the transitions to connect and the run's MD settings."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from mtcv_core.config import ConfigError, doc, from_mapping
from mtcv_core.interfaces import CollectiveVariable, Sampler, StartFrames
from mtcv_core.io import write_dataset
from mtcv_core.plugins import PluginError, blame
from mtcv_core.stages.common import (
    blow_ups,
    build_checked,
    check_transitions,
    component,
    evaluate_cv,
    note_blow_ups,
    system_component,
    train_frames,
)
from mtcv_core.stages.context import RunContext


@dataclass
class UmbrellaStageConfig:
    """The ``[umbrella]`` table."""

    transitions: list[list[str]] = field(default_factory=lambda: [["A", "B"]], metadata={
        "doc": "basin pairs the sampling must connect (1D CV: windows span the first pair)"})
    sampler: str = doc("umbrella", "sampler plugin")
    sampler_options: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "options of the sampler (for umbrella: walkers_per_window, n_steps, stride, "
               "n_windows, grid_points, ...; see the configuration reference)"})
    reference: bool = doc(True, "also sample along the system's true CVs")
    reference_cvs: list[str] = field(default_factory=list, metadata={
        "doc": "true CVs to restrain for the reference (default: all of them); one CV gets "
               "windows along a line, like a 1D xi"})
    reference_sampler_options: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "sampler options that differ for the true-CV reference (e.g. grid_spacing, "
               "fewer walkers for its many 2D windows)"})


def umbrella_config(ctx: RunContext) -> UmbrellaStageConfig:
    """The ``[umbrella]`` table, parsed and checked against the system. A
    key that is an option of the sampler (rather than of the stage) is
    refused with a pointer to ``sampler_options``."""
    raw = dict(ctx.config.umbrella)
    name = str(raw.get("sampler", UmbrellaStageConfig.sampler))
    stage_keys = {f.name for f in dataclasses.fields(UmbrellaStageConfig)}
    try:
        factory = ctx.registry.get("sampler", name).factory
    except PluginError:
        factory = None
    sampler_keys = ({f.name for f in dataclasses.fields(factory)}
                    if factory is not None and dataclasses.is_dataclass(factory) else set())
    misplaced = sorted(k for k in raw if k not in stage_keys and k in sampler_keys)
    if misplaced:
        raise ConfigError(f"umbrella.{misplaced[0]}: an option of the sampler {name!r}, not of "
                          f"the stage; put it in [umbrella] sampler_options (or "
                          f"reference_sampler_options for the true-CV reference)")
    cfg = from_mapping(UmbrellaStageConfig, raw, "umbrella")
    check_transitions(ctx, cfg.transitions, "umbrella.transitions")
    return cfg


def build_sampler(ctx: RunContext, cfg: UmbrellaStageConfig, *,
                  reference: bool = False) -> Sampler:
    """The ``[umbrella]`` sampler; for the reference with
    ``reference_sampler_options`` on top of ``sampler_options``."""
    options = dict(cfg.sampler_options)
    where = "umbrella.sampler_options"
    if reference:
        options.update(cfg.reference_sampler_options)
        where = "umbrella.reference_sampler_options"
    return build_checked(ctx, "sampler", cfg.sampler, options, where,
                         name_where="umbrella.sampler", interface=Sampler)


def reference_cv(ctx: Any, names: list[str] | None) -> tuple[Any, list[int]]:
    """The true-CV module restricted to ``names`` (all when None or empty)
    and the column indices; ConfigError for a name the system lacks."""
    from mtcv_core.export import SelectCV

    all_names = list(ctx.system.true_cv_names)
    names = list(names) if names else all_names
    unknown = [n for n in names if n not in all_names]
    if unknown:
        raise ConfigError(f"umbrella.reference_cvs: {unknown!r} are not true CVs of "
                          f"{ctx.system.name!r}; expected a subset of {all_names}")
    index = [all_names.index(n) for n in names]
    module = ctx.system.true_cv_module()
    if index != list(range(len(all_names))):
        module = torch.jit.script(SelectCV(module, index))
    return module, index


def run_umbrella(ctx: RunContext) -> None:
    """Sample along the learned CV and, with ``reference``, the true CVs."""
    from mtcv_core.export import load_cv

    cfg = ctx.umbrella or umbrella_config(ctx)
    train = train_frames(ctx)
    positions = train["coordinates"].values
    labels = train["label"].values
    masses = train["masses"].values
    cv = load_cv(ctx.out / "cv.ts").to(torch.float64)
    xi = evaluate_cv(cv, positions)
    names = tuple(f"xi{i}" for i in range(xi.shape[1])) if xi.shape[1] > 1 else ("xi",)
    transitions = [tuple(ctx.system.basins.index(b) for b in pair) for pair in cfg.transitions]
    windows = ctx.out / "umbrella_windows"
    with blame(component(ctx, "sampler", cfg.sampler), system_component(ctx),
               action="sampling along xi"):
        result = build_sampler(ctx, cfg).run(
            ctx.system, CollectiveVariable(cv, names, "1"),
            frames=StartFrames(positions, xi, labels, masses), transitions=transitions,
            md=ctx.md(), seed=ctx.config.seed, client=ctx.client(), store=windows / "xi",
            progress=ctx.progress)
    note_blow_ups(ctx, "umbrella", blow_ups(result))
    ctx.summary["umbrella_windows_added"] = int(result.attrs.get("windows_added", 0))
    note_reseeding(ctx, "umbrella", result)
    write_dataset(result, ctx.out / "umbrella.nc")
    write_companions(ctx, build_sampler(ctx, cfg), result, cv)
    note_sample_counts(ctx, "umbrella", result)
    if not cfg.reference:
        return
    try:
        true_cv, index = reference_cv(ctx, cfg.reference_cvs)
    except NotImplementedError:
        return  # the system has no true CVs
    s = ctx.system.true_cv(positions)[:, index]
    periods = None
    if ctx.system.true_cv_periods:
        p = np.asarray(ctx.system.true_cv_periods, float)[index]
        periods = tuple(float(v) for v in p) if p.any() else None
    ref_cv = CollectiveVariable(true_cv, tuple(ctx.system.true_cv_names[i] for i in index),
                                ctx.system.true_cv_units, periods)
    with blame(component(ctx, "sampler", cfg.sampler), system_component(ctx),
               action="sampling along the true CVs"):
        ref = build_sampler(ctx, cfg, reference=True).run(
            ctx.system, ref_cv, frames=StartFrames(positions, s, labels, masses),
            transitions=transitions, md=ctx.md(), seed=ctx.config.seed, client=ctx.client(),
            store=windows / "true_cv", progress=ctx.progress)
    note_blow_ups(ctx, "umbrella_reference", blow_ups(ref))
    write_dataset(ref, ctx.out / "umbrella_reference.nc")
    note_sample_counts(ctx, "umbrella_reference", ref)
    ctx.summary["umbrella_reference_windows_added"] = int(ref.attrs.get("windows_added", 0))
    note_reseeding(ctx, "umbrella_reference", ref)


def note_sample_counts(ctx: RunContext, key: str, result: Any) -> None:
    """``summary[key + "_windows"]`` for windowed samples, ``..._walkers``
    for walkers under one bias (whatever dimensions the samples have)."""
    if "window" in result.sizes:
        ctx.summary[f"{key}_windows"] = int(result.sizes["window"])
    if "walker" in result.sizes:
        ctx.summary[f"{key}_walkers"] = int(result.sizes["walker"])


def write_companions(ctx: RunContext, sampler: Sampler, result: Any, cv: Any) -> None:
    """The sampler's extra files (:meth:`Sampler.companion_files`, e.g. a
    PLUMED input) written atomically beside ``umbrella.nc``; their names go
    to ``summary["umbrella_files"]``."""
    from pathlib import PurePath

    from mtcv_core.io import atomic_path

    files = sampler.companion_files(result, cv) or {}
    written = []
    for name, content in files.items():
        if PurePath(name).name != name or name in ("umbrella.nc", "summary.json"):
            raise PluginError(f"sampler {type(sampler).__name__}: companion file {name!r} "
                              "must be a plain file name other than the run's own files")
        with atomic_path(ctx.out / name) as tmp:
            tmp.write_bytes(content if isinstance(content, bytes) else str(content).encode())
        written.append(name)
    if written:
        ctx.summary["umbrella_files"] = written


def note_reseeding(ctx: RunContext, key: str, result: Any) -> None:
    """``summary[key + "_windows_reseeded"]`` and ``..._windows_disagreeing``
    from the sampler's optional attributes (:meth:`Sampler.run`); a warning
    naming the windows that still disagree."""
    import json
    import warnings

    for what in ("windows_reseeded", "windows_disagreeing"):
        raw = result.attrs.get(what)
        if raw is None:
            continue
        try:
            items = json.loads(raw)
        except (TypeError, ValueError):
            continue
        ctx.summary[f"{key}_{what}"] = items
        if what == "windows_disagreeing" and items:
            ids = ", ".join(str(i.get("window")) for i in items)
            warnings.warn(f"{key}: the walkers of window(s) {ids} still disagree beyond their "
                          "statistics after re-seeding (a mode slower than the run); their "
                          "samples are kept, the error bars may be too small there",
                          RuntimeWarning, stacklevel=2)


__all__ = ["UmbrellaStageConfig", "umbrella_config", "build_sampler", "reference_cv",
           "run_umbrella", "note_sample_counts", "write_companions"]
