"""Helpers several stages use: building components from their config
tables, blow-up reports, the train/test split, CV evaluation."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
import xarray as xr

from mtcv_core.config import ConfigError
from mtcv_core.plugins import Component, PluginError, build_component
from mtcv_core.schema import category_names
from mtcv_core.stages.context import RunContext


def component(ctx: RunContext, kind: str, name: str) -> Component:
    """The registry entry of a component (for error messages)."""
    return ctx.registry.get(kind, name)


def system_n_atoms(system: Any) -> int:
    """Atoms of ``system``, from its ``dof_mask`` (n_atoms, 3) where it has one:
    ``make_atoms()`` may be expensive (the 5D systems locate their minima)."""
    mask = system.dof_mask
    if mask is not None:
        return len(mask)
    return len(system.make_atoms())


def system_component(ctx: RunContext) -> Component:
    return ctx.registry.get("system", ctx.config.system)


def require_interface(built: Any, interface: type, kind: str, name: str) -> Any:
    """``built`` if it implements ``interface``, else a PluginError saying so
    (a component the stage would call methods on that it does not declare)."""
    if not isinstance(built, interface):
        raise PluginError(f"{kind} {name!r} is a {type(built).__name__}, not a "
                          f"mtcv_core.interfaces.{interface.__name__}: subclass it, so that "
                          "it declares what the pipeline calls")
    return built


def build_checked(ctx: RunContext, kind: str, name: str, options: Mapping[str, Any],
                  where: str, *, name_where: str, interface: type) -> Any:
    """Component ``name`` of ``kind`` built from its config table, required to
    implement ``interface`` and checked against the system
    (:meth:`DataSource.check`, :meth:`Sampler.check`); errors name ``where``."""
    if not isinstance(options, Mapping):
        raise ConfigError(f"{where}: expected a table of options, got {options!r}")
    built = require_interface(
        build_component(ctx.registry, kind, name, options, where, name_where=name_where),
        interface, kind, name)
    try:
        built.check(ctx.system)
    except ConfigError as exc:
        raise ConfigError(f"{where}.{exc}") from None
    return built


def blow_ups(ds: xr.Dataset) -> list[Any]:
    """The blow-ups a dataset reports (its ``blow_ups`` attribute, a JSON list)."""
    raw = ds.attrs.get("blow_ups")
    if not raw:
        return []
    try:
        found = json.loads(raw)
    except (TypeError, ValueError):
        return [{"unparsed": str(raw)}]
    return list(found) if isinstance(found, list) else [found]


def note_blow_ups(ctx: RunContext, key: str, found: list[Any]) -> None:
    """Record the trajectories/windows/shots that blew up (each with its seed
    and step) in ``summary.json["blow_ups"][key]``; nothing when none did."""
    table = ctx.summary.get("blow_ups", {})
    if found:
        table[key] = found
    else:
        table.pop(key, None)
    if table:
        ctx.summary["blow_ups"] = table
    else:
        ctx.summary.pop("blow_ups", None)


def split(frames: xr.Dataset, name: str) -> xr.Dataset:
    """The frames of split ``name`` (``"train"`` or ``"test"``)."""
    return frames.isel(frame=frames["split"].values == category_names(frames, "split").index(
        name))


def train_frames(ctx: RunContext) -> xr.Dataset:
    """The train split of ``data.nc``."""
    from mtcv_core.io import read_frames

    return split(read_frames(ctx.out / "data.nc"), "train")


def evaluate_cv(cv: Any, positions: np.ndarray, chunk: int = 65536) -> np.ndarray:
    """A CV module on positions (n, n_atoms, 3) angstrom -> (n, d), float64."""
    out = []
    with torch.no_grad():
        for s in range(0, len(positions), chunk):
            out.append(cv(torch.as_tensor(positions[s:s + chunk], dtype=torch.float64)).numpy())
    return np.concatenate(out)


def model_cv_function(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    """positions (n, n_atoms, 3) angstrom -> xi (n, d) numpy, by ``model.cv``."""

    def cv(positions: Any) -> Any:
        with torch.no_grad():
            pos = torch.as_tensor(np.asarray(positions), dtype=model.dtype, device=model.device)
            return model.cv(pos).double().cpu().numpy()

    return cv


def classifier_basins(model: Any, ctx: RunContext) -> Callable[[np.ndarray], np.ndarray]:
    """xi (n, d) -> basin index by the model's head predicting basin
    probabilities (argmax); for a CV without one (a single-task baseline), by
    a linear classifier fitted on xi of the labelled training frames."""
    from mtcv_core.interfaces import BASIN_PROBABILITY

    found = model.head_predicting(BASIN_PROBABILITY)
    if found is None:
        from mtcv_core.training import cv_values, fit_latent_classifier

        train = train_frames(ctx)
        return fit_latent_classifier(cv_values(model, train), train["label"].values,
                                     len(ctx.system.basins))
    head = found[1]

    def basin_of(xi: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.as_tensor(np.asarray(xi), dtype=model.dtype)
            return head.predict(t).argmax(dim=1).cpu().numpy()

    return basin_of


def linear_basins(ctx: RunContext, cv: Any, train: xr.Dataset | None = None
                  ) -> Callable[[np.ndarray], np.ndarray]:
    """xi (n, d) -> basin index by a linear classifier fitted on ``cv``
    (a CV module, positions -> xi) of the labelled training frames
    (``train``, default: read from data.nc)."""
    from mtcv_core.evaluation import fit_latent_classifier

    train = train_frames(ctx) if train is None else train
    return fit_latent_classifier(evaluate_cv(cv, train["coordinates"].values),
                                 train["label"].values, len(ctx.system.basins))


def trained_cv(ctx: RunContext) -> tuple[Callable[[np.ndarray], np.ndarray],
                                         Callable[[np.ndarray], np.ndarray]]:
    """The run's CV and its basins: ``(cv, basin_of)`` with ``cv`` positions
    (n, n_atoms, 3) angstrom -> xi (n, d) numpy and ``basin_of`` xi (n, d) ->
    basin index. The trained model (``model.pt``) with its classifier head
    (:func:`classifier_basins`); a CV given by ``train.cv_file``: ``cv.ts``
    with :func:`linear_basins`."""
    if ctx.config.train.get("cv_file"):
        from mtcv_core.export import load_cv

        module = load_cv(ctx.out / "cv.ts").to(torch.float64)
        return (lambda positions: evaluate_cv(module, np.asarray(positions))), \
            linear_basins(ctx, module)
    from mtcv_core.export import load_model

    model = load_model(ctx.out / "model.pt", ctx.registry)
    return model_cv_function(model), classifier_basins(model, ctx)


def check_transitions(ctx: RunContext, transitions: list[list[str]], where: str) -> None:
    """ConfigError unless every entry is a pair of the system's basins."""
    for pair in transitions:
        if len(pair) != 2 or any(b not in ctx.system.basins for b in pair):
            raise ConfigError(f"{where}: {pair!r} is not a pair of basins of "
                              f"{list(ctx.system.basins)}")


__all__ = ["component", "system_component", "build_checked", "blow_ups", "note_blow_ups",
           "split", "train_frames", "evaluate_cv", "model_cv_function", "classifier_basins",
           "linear_basins", "trained_cv",
           "check_transitions", "PluginError"]
