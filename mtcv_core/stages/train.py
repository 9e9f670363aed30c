"""The train stage: the multitask CV on the train split, evaluated on the
test split -> ``model.pt``, ``cv.ts``, ``training.nc`` and figures."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import xarray as xr

from mtcv_core.config import ConfigError
from mtcv_core.io import read_frames, write_dataset
from mtcv_core.plugins import PluginError, build_component
from mtcv_core.stages.common import (
    classifier_basins,
    model_cv_function,
    split,
    system_n_atoms,
)
from mtcv_core.stages.context import RunContext
from mtcv_core.training import TrainConfig


def _featurizer_declares(ctx: RunContext, name: Any, flag: str) -> bool:
    """Whether featurizer ``name`` declares ``flag`` (``uses_dof_mask``,
    ``uses_cell``, ``uses_reference``; False for an unknown name: building it reports that)."""
    try:
        factory = ctx.registry.get("featurizer", str(name)).factory
    except PluginError:
        return False
    return bool(getattr(factory, flag, False))


def train_config(ctx: RunContext) -> TrainConfig:
    """The ``[train]`` table as a TrainConfig; the system's active degrees of
    freedom become the featurizer's ``dof_mask`` when it declares
    ``uses_dof_mask``, and a periodic system's cell its ``cell`` and ``pbc``
    when it declares ``uses_cell`` and the start structure of its first basin
    its ``reference`` when it declares ``uses_reference``, unless the table
    gives them."""
    raw = dict(ctx.config.train)
    options = dict(raw.get("featurizer_options", {}))
    name = raw.get("featurizer", TrainConfig.featurizer)
    mask = ctx.system.dof_mask
    if mask is not None and _featurizer_declares(ctx, name, "uses_dof_mask"):
        options.setdefault("dof_mask", mask.tolist())
    cell, pbc = ctx.system.cell, ctx.system.pbc
    if cell is not None and pbc is not None and np.any(pbc) \
            and _featurizer_declares(ctx, name, "uses_cell"):
        options.setdefault("cell", np.asarray(cell, float).tolist())
        options.setdefault("pbc", [bool(b) for b in pbc])
    if cell is not None and pbc is not None and np.any(pbc) \
            and _featurizer_declares(ctx, name, "uses_reference") \
            and "reference" not in options:
        atoms = ctx.system.make_atoms(ctx.system.basins[0])
        options["reference"] = np.asarray(atoms.get_positions(), float).tolist()
    raw["featurizer_options"] = options
    raw.setdefault("seed", ctx.config.seed)
    return TrainConfig.from_mapping(raw, "train")


def check_train(ctx: RunContext) -> TrainConfig:
    """The ``[train]`` table against the plugins it names: the featurizer
    and every head are built (for the system's atoms) with their options, and
    the torch device is parsed, so that a typo fails before sampling. With
    ``cv_file``, that CV is checked on the basins' start structures instead
    of the heads."""
    cfg = train_config(ctx)
    if cfg.cv_file:
        _import(ctx, cfg, _start_positions(ctx), dest=None)
        return cfg
    try:
        torch.device(cfg.device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(f"train.device: {cfg.device!r} is not a torch device "
                          f"({str(exc).splitlines()[0]})") from None
    featurizer = build_component(ctx.registry, "featurizer", cfg.featurizer,
                                 cfg.featurizer_options, "train.featurizer_options",
                                 name_where="train.featurizer")
    n_atoms = system_n_atoms(ctx.system)
    try:
        n_features = int(featurizer.n_features(n_atoms))
    except (TypeError, ValueError, IndexError) as exc:
        raise ConfigError(f"train.featurizer_options: featurizer {cfg.featurizer!r} does not "
                          f"fit the {n_atoms} atoms of {ctx.system.name!r} ({exc})") from None
    if n_features < 1:
        raise ConfigError(f"train.featurizer_options: featurizer {cfg.featurizer!r} gives "
                          f"{n_features} features for {ctx.system.name!r}; expected >= 1")
    for name, options in cfg.heads.items():
        build_component(ctx.registry, "loss_head", name, options, "train",
                        name_where="train.heads", latent_dim=cfg.latent_dim,
                        n_features=n_features, n_classes=len(ctx.system.basins))
    return cfg


def run_train(ctx: RunContext) -> None:
    """Train the multitask CV on the train split; evaluate on the test split.

    Writes ``model.pt``, ``cv.ts``, ``training.nc`` and figures."""
    from mtcv_core import sanity
    from mtcv_core.export import export_torchscript
    from mtcv_core.spectators import SpectatorAugmenter, declares_spectators
    from mtcv_core.training import evaluate, train

    sanity.clear(ctx.summary, "train")
    data = read_frames(ctx.out / "data.nc")
    cfg = ctx.train or train_config(ctx)
    if cfg.cv_file:
        _run_import(ctx, cfg, data)
        return
    train_frames = split(data, "train")
    augment = None
    if cfg.spectator_augmentation > 0 and declares_spectators(ctx.system):
        augment = SpectatorAugmenter(ctx.system, train_frames["coordinates"].values,
                                     cfg.spectator_augmentation)
    model, history = train(train_frames, cfg, ctx.registry, progress=ctx.progress,
                           augment=augment)
    model.save(ctx.out / "model.pt")
    export_torchscript(model, ctx.out / "cv.ts",
                       example_positions=train_frames["coordinates"].values[:4])
    test = split(data, "test")
    metrics = evaluate(model, test)
    history.attrs.update({f"test_{k}": v for k, v in metrics.items()
                          if isinstance(v, (int, float))})
    write_dataset(history, ctx.out / "training.nc")
    ctx.summary.update(test_accuracy=metrics.get("accuracy"),
                       test_energy_mae_eV=metrics.get("energy_mae_eV"),
                       n_train=int(train_frames.sizes["frame"]),
                       n_test=int(test.sizes["frame"]))
    sanity.check_accuracy(ctx.summary, metrics.get("accuracy"), test["label"].values)
    if declares_spectators(ctx.system):
        ctx.summary["spectator_sensitivity"] = spectator_report(
            ctx.system, model_cv_function(model), classifier_basins(model, ctx),
            train_frames["coordinates"].values)
    else:
        ctx.summary.pop("spectator_sensitivity", None)
    _train_figures(ctx, model, history, test)


def _start_positions(ctx: RunContext) -> np.ndarray:
    """(n_basins, n_atoms, 3) angstrom: the start structure of every basin."""
    return np.stack([np.asarray(ctx.system.make_atoms(b).get_positions(), float)
                     for b in ctx.system.basins])


def _import(ctx: RunContext, cfg: TrainConfig, positions: np.ndarray,
            dest: Any) -> tuple[Any, int]:
    """:func:`mtcv_core.imported_cv.import_cv` of ``cfg.cv_file`` with the
    run's featurizer when ``cv_input = "features"``."""
    from mtcv_core.imported_cv import import_cv

    featurizer = None
    if cfg.cv_input == "features":
        featurizer = build_component(ctx.registry, "featurizer", cfg.featurizer,
                                     cfg.featurizer_options, "train.featurizer_options",
                                     name_where="train.featurizer")
    return import_cv(cfg.cv_file, positions, featurizer=featurizer, dest=dest,
                     where="train.cv_file")


def _run_import(ctx: RunContext, cfg: TrainConfig, data: xr.Dataset) -> None:
    """``train.cv_file``: the external CV checked on the training frames and
    written as ``cv.ts``; its basins by a linear classifier on xi of the
    labelled training frames, whose test accuracy is the run's."""
    from mtcv_core.spectators import declares_spectators
    from mtcv_core.stages.common import evaluate_cv, linear_basins

    train_frames = split(data, "train")
    test = split(data, "test")
    cv, _ = _import(ctx, cfg, train_frames["coordinates"].values, ctx.out / "cv.ts")
    (ctx.out / "model.pt").unlink(missing_ok=True)  # the CV is cv.ts alone
    basin_of = linear_basins(ctx, cv, train_frames)
    label = test["label"].values
    xi_test = evaluate_cv(cv, test["coordinates"].values)
    labelled = label >= 0
    accuracy = (float(np.mean(basin_of(xi_test[labelled]) == label[labelled]))
                if labelled.any() else None)
    ctx.summary.update(test_accuracy=accuracy, test_energy_mae_eV=None,
                       n_train=int(train_frames.sizes["frame"]),
                       n_test=int(test.sizes["frame"]), imported_cv=str(cfg.cv_file))
    if declares_spectators(ctx.system):
        ctx.summary["spectator_sensitivity"] = spectator_report(
            ctx.system, lambda pos: evaluate_cv(cv, np.asarray(pos)), basin_of,
            train_frames["coordinates"].values)
    else:
        ctx.summary.pop("spectator_sensitivity", None)
    figs = ctx.out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    if xi_test.shape[1] == 1:
        from mtcv_core.plots import plot_along_cv

        plot_along_cv(xi_test, test["energy"].values, label=label,
                      basins=list(ctx.system.basins), path=figs / "along_xi.png")


def spectator_report(system: Any, cv: Any, basin_of: Any, train_positions: np.ndarray, *,
                     k: float = 5.0) -> dict[str, Any]:
    """The CV's spectator sensitivity (:func:`mtcv_core.spectators.spectator_sensitivity`)
    rounded for ``summary.json``: per landmark the spread of xi with the
    spectators moved over ``k`` times their training range, and the share of
    basin-minimum draws classified into another basin. ``cv``: positions
    (n, n_atoms, 3) -> xi (n, d) numpy."""
    from mtcv_core.spectators import spectator_sensitivity

    res = spectator_sensitivity(system, cv, basin_of, train_positions, k=k)

    def rounded(v: Any) -> Any:
        if isinstance(v, float):
            return round(v, 4)
        if isinstance(v, dict):
            return {key: rounded(x) for key, x in v.items()}
        if isinstance(v, list):
            return [rounded(x) for x in v]
        return v

    return rounded(res)


def _train_figures(ctx: RunContext, model: Any, history: xr.Dataset, test: xr.Dataset) -> None:
    from mtcv_core.plots import plot_along_cv, plot_cv_plane, plot_history
    from mtcv_core.training import predict

    figs = ctx.out / "figures"
    figs.mkdir(parents=True, exist_ok=True)
    plot_history(history, path=figs / "training_history.png")
    pred = predict(model, test)
    try:
        true = ctx.system.true_cv(test["coordinates"].values)
    except NotImplementedError:
        true = None
    if true is not None and true.shape[1] >= 2:
        names = [f"{n} ({ctx.system.true_cv_units})" for n in ctx.system.true_cv_names[:2]]
        plot_cv_plane(true[:, 0], true[:, 1], pred["xi"], names=names,
                      path=figs / "xi_plane.png")
    if pred["xi"].shape[1] == 1:
        plot_along_cv(pred["xi"], test["energy"].values, energy_pred=pred.get("energy"),
                      label=test["label"].values, probability=pred.get("probability"),
                      basins=list(ctx.system.basins), path=figs / "along_xi.png")


__all__ = ["run_train", "train_config", "check_train", "spectator_report"]
