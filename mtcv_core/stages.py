"""The pipeline's stages. Each takes the :class:`~mtcv_core.pipeline.RunContext`,
writes its outputs under ``ctx.out`` atomically and updates ``ctx.summary``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mtcv_core.config import ConfigError, doc, positive


def _client(ctx: Any) -> Any:
    if getattr(ctx, "_client", None) is None:
        ctx._client = ctx.client_factory()
    return ctx._client


def close_client(ctx: Any) -> None:
    client = getattr(ctx, "_client", None)
    if client is not None:
        cluster = getattr(client, "cluster", None)
        client.close()
        if cluster is not None:
            cluster.close()
        ctx._client = None


def _check_against_system(ctx: Any, component: Any, where: str) -> None:
    """Call a component's optional ``check(system)`` (options that only the
    system can judge: basin names, files); its ConfigError gets ``where``."""
    check = getattr(component, "check", None)
    if callable(check):
        try:
            check(ctx.system)
        except ConfigError as exc:
            raise ConfigError(f"{where}.{exc}") from None


def _source_options(ctx: Any, name: str, options: dict[str, Any]) -> Any:
    """Build data source ``name`` from its config table, with the run's
    ``[sample]`` engine and thermostat settings as defaults."""
    import dataclasses

    from mtcv_core.plugins import PluginError, build_component

    if not isinstance(options, dict):
        raise ConfigError(f"sample.sources.{name}: expected a table of options, got {options!r}")
    try:
        factory = ctx.registry.get("data_source", name).factory
    except PluginError as exc:
        raise PluginError(f"sample.sources: {exc}") from None
    merged = dict(options)
    if dataclasses.is_dataclass(factory):
        fields = {f.name for f in dataclasses.fields(factory)}
        for key in ("engine", "timestep_fs", "friction_per_fs"):
            if key in fields and key not in merged:
                merged[key] = getattr(ctx.config.sample, key)
    source = build_component(ctx.registry, "data_source", name, merged, f"sample.sources.{name}",
                             name_where="sample.sources")
    _check_against_system(ctx, source, f"sample.sources.{name}")
    return source


def validate(ctx: Any) -> None:
    """Check every table of the run's config against its stage's schema and
    the plugins it names before any stage runs, so that a typo in
    ``[estimate]`` fails in a second, not after hours of sampling. Raises
    ConfigError naming the key, the value and what was expected."""

    from mtcv_core.config import from_mapping

    cfg = ctx.config
    for name, opts in cfg.sample.sources.items():
        _source_options(ctx, name, opts)
    if cfg.train:
        _check_train(ctx)
    if cfg.umbrella:
        ucfg = from_mapping(UmbrellaStageConfig, cfg.umbrella, "umbrella")
        for pair in ucfg.transitions:
            if len(pair) != 2 or any(b not in ctx.system.basins for b in pair):
                raise ConfigError(f"umbrella.transitions: {pair!r} is not a pair of basins of "
                                  f"{list(ctx.system.basins)}")
        _sampler(ctx, ucfg)
        if ucfg.reference and ucfg.reference_cvs:
            try:
                reference_cv(ctx, ucfg.reference_cvs)
            except NotImplementedError:
                pass
        if ucfg.reference:
            _sampler(ctx, ucfg, reference=True)
    if cfg.estimate:
        ecfg = from_mapping(EstimateStageConfig, cfg.estimate, "estimate")
        _estimator(ctx, ecfg, reference=False)
        _estimator(ctx, ecfg, reference=True)


def _estimator(ctx: Any, cfg: Any, reference: bool) -> Any:
    """The ``[estimate]`` estimator, with ``reference_options`` on top of
    ``options`` for the true-CV reference."""
    from mtcv_core.plugins import build_component

    if reference:
        return build_component(ctx.registry, "estimator", cfg.estimator,
                               {**cfg.options, **cfg.reference_options},
                               "estimate.reference_options", name_where="estimate.estimator")
    return build_component(ctx.registry, "estimator", cfg.estimator, cfg.options,
                           "estimate.options", name_where="estimate.estimator")


def _n_atoms(system: Any) -> int:
    """Atoms of ``system``, from its ``dof_mask`` (n_atoms, 3) where it has one:
    ``make_atoms()`` may be expensive (the 5D systems locate their minima)."""
    mask = system.dof_mask
    if mask is not None:
        return len(mask)
    return len(system.make_atoms())


def _check_train(ctx: Any) -> None:
    """The ``[train]`` table against the plugins it names: the featurizer
    and every head are built (for the system's atoms) with their options, and
    the torch device is parsed, so that a typo fails before sampling."""
    import torch

    from mtcv_core.plugins import build_component

    cfg = _train_config(ctx)
    try:
        torch.device(cfg.device)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise ConfigError(f"train.device: {cfg.device!r} is not a torch device "
                          f"({str(exc).splitlines()[0]})") from None
    featurizer = build_component(ctx.registry, "featurizer", cfg.featurizer,
                                 cfg.featurizer_options, "train.featurizer_options",
                                 name_where="train.featurizer")
    n_atoms = _n_atoms(ctx.system)
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


def run_sample(ctx: Any) -> None:
    """Run every data source on the train and test splits; write ``data.nc``."""
    from mtcv_core.config import ConfigError
    from mtcv_core.io import write_dataset
    from mtcv_core.plugins import blame
    from mtcv_core.schema import concat_frames, provenance, validate_frames
    from mtcv_core.summary import frame_counts

    cfg = ctx.config
    if not cfg.sample.sources:
        raise ConfigError("sample.sources: no data source configured (e.g. [sample.sources."
                          "basin_md])")
    sources = {name: _source_options(ctx, name, opts)
               for name, opts in cfg.sample.sources.items()}
    f = cfg.sample.test_fraction
    scales = {"train": 1.0, "test": f / (1.0 - f)}
    parts_dir = ctx.out / "sample"
    parts = []
    blow_ups: list[Any] = []
    for name, source in sources.items():
        for split, scale in scales.items():
            part_path = parts_dir / f"{name}_{split}.nc"
            part = _stored_part(part_path)  # finished before an interruption
            if part is None:
                with blame(_component(ctx, "data_source", name), _system_component(ctx),
                           action=f"sampling the {split} split"):
                    part = source.run(ctx.system, seed=cfg.seed, client=_client(ctx),
                                      split=split, scale=scale,
                                      temperature_K=_sample_temperature(cfg, source, split),
                                      progress=ctx.progress)
                if part.sizes.get("frame", 0):  # a source may find nothing in a split
                    validate_frames(part, where=f"sample.sources.{name} ({split} split)")
                part.attrs.update(provenance(seed=cfg.seed))
                write_dataset(part, part_path)
            blow_ups += _blow_ups(part)
            parts.append(part)
    _note_blow_ups(ctx, "sample", blow_ups)
    data = concat_frames(parts)
    data.attrs.update(provenance(config=ctx.summary["config"], seed=cfg.seed,
                                 system=ctx.system.name))
    write_dataset(data, ctx.out / "data.nc")
    ctx.summary.update(frame_counts(data))
    try:
        true = ctx.system.true_cv(data["coordinates"].values)
    except NotImplementedError:
        return  # no true CVs to plot against
    from mtcv_core.plots import plot_frames

    plot_frames(data, true, ctx.out / "figures" / "data.png",
                names=list(ctx.system.true_cv_names) or ["cv0", "cv1"])


def _stored_part(path: Any) -> Any:
    """A data source's split saved by an earlier, interrupted run, or None
    when there is none or it cannot be read (damaged after it was written:
    it is sampled again, with a warning)."""
    import warnings

    from mtcv_core.errors import MtcvError
    from mtcv_core.io import read_frames

    if not path.exists():
        return None
    try:
        return read_frames(path)
    except MtcvError as exc:
        warnings.warn(f"{exc}; sampling it again", RuntimeWarning, stacklevel=2)
        return None


def _component(ctx: Any, kind: str, name: str) -> Any:
    """The registry entry of a component (for error messages)."""
    return ctx.registry.get(kind, name)


def _system_component(ctx: Any) -> Any:
    return ctx.registry.get("system", ctx.config.system)


def _blow_ups(ds: Any) -> list[Any]:
    """The blow-ups a dataset reports (its ``blow_ups`` attribute, a JSON list)."""
    import json

    raw = ds.attrs.get("blow_ups")
    if not raw:
        return []
    try:
        found = json.loads(raw)
    except (TypeError, ValueError):
        return [{"unparsed": str(raw)}]
    return list(found) if isinstance(found, list) else [found]


def _note_blow_ups(ctx: Any, key: str, found: list[Any]) -> None:
    """Record the trajectories/windows/shots that blew up (each with its
    seed and step) in ``summary.json["blow_ups"][key]``; nothing when none did."""
    table = ctx.summary.get("blow_ups", {})
    if found:
        table[key] = found
    else:
        table.pop(key, None)
    if table:
        ctx.summary["blow_ups"] = table
    else:
        ctx.summary.pop("blow_ups", None)


def _sample_temperature(cfg: Any, source: Any, split: str) -> float:
    """K: a source's own ``temperature_K`` option, else the split's
    (``[sample] train_temperature_K`` / ``test_temperature_K``), else the
    run's."""
    own = getattr(source, "temperature_K", None)
    if own is not None:
        return float(own)
    train = cfg.sample.train_temperature_K or cfg.temperature_K
    if split == "test" and cfg.sample.test_temperature_K is not None:
        return float(cfg.sample.test_temperature_K)
    return float(train)


def _train_config(ctx: Any) -> Any:
    """The ``[train]`` table as a TrainConfig; the system's active degrees of
    freedom become the featurizer's ``dof_mask`` unless given."""
    from mtcv_core.training import TrainConfig

    raw = dict(ctx.config.train)
    options = dict(raw.get("featurizer_options", {}))
    mask = ctx.system.dof_mask
    featurizer = raw.get("featurizer", TrainConfig.featurizer)
    if mask is not None and _featurizer_uses_dof_mask(ctx, featurizer):
        options.setdefault("dof_mask", mask.tolist())
    raw["featurizer_options"] = options
    raw.setdefault("seed", ctx.config.seed)
    return TrainConfig.from_mapping(raw, "train")


def _featurizer_uses_dof_mask(ctx: Any, name: Any) -> bool:
    """Whether featurizer ``name`` declares ``uses_dof_mask`` (False for an
    unknown name: building it reports that)."""
    from mtcv_core.plugins import PluginError

    try:
        factory = ctx.registry.get("featurizer", str(name)).factory
    except PluginError:
        return False
    return bool(getattr(factory, "uses_dof_mask", False))


def _split(frames: Any, name: str) -> Any:
    codes = frames["split"].attrs["flag_meanings"].split()
    return frames.isel(frame=frames["split"].values == codes.index(name))


def run_train(ctx: Any) -> None:
    """Train the multitask CV on the train split; evaluate on the test split.

    Writes ``model.pt``, ``cv.ts``, ``training.nc`` and figures."""
    from mtcv_core.export import export_torchscript
    from mtcv_core.io import read_frames, write_dataset
    from mtcv_core.spectators import SpectatorAugmenter, declares_spectators
    from mtcv_core.training import evaluate, train

    data = read_frames(ctx.out / "data.nc")
    cfg = _train_config(ctx)
    train_frames = _split(data, "train")
    augment = None
    if cfg.spectator_augmentation > 0 and declares_spectators(ctx.system):
        augment = SpectatorAugmenter(ctx.system, train_frames["coordinates"].values,
                                     cfg.spectator_augmentation)
    model, history = train(train_frames, cfg, ctx.registry, progress=ctx.progress,
                           augment=augment)
    model.save(ctx.out / "model.pt")
    export_torchscript(model, ctx.out / "cv.ts",
                       example_positions=train_frames["coordinates"].values[:4])
    test = _split(data, "test")
    metrics = evaluate(model, test)
    history.attrs.update({f"test_{k}": v for k, v in metrics.items()
                          if isinstance(v, (int, float))})
    write_dataset(history, ctx.out / "training.nc")
    ctx.summary.update(test_accuracy=metrics.get("accuracy"),
                       test_energy_mae_eV=metrics.get("energy_mae_eV"),
                       n_train=int(_split(data, "train").sizes["frame"]),
                       n_test=int(test.sizes["frame"]))
    if declares_spectators(ctx.system):
        ctx.summary["spectator_sensitivity"] = spectator_report(
            ctx.system, model, _classifier_basins(model, ctx),
            train_frames["coordinates"].values)
    else:
        ctx.summary.pop("spectator_sensitivity", None)
    _train_figures(ctx, model, history, test)


def model_cv_function(model: Any) -> Any:
    """positions (n, n_atoms, 3) angstrom -> xi (n, d) numpy, by ``model.cv``."""
    import numpy as np
    import torch

    def cv(positions: Any) -> Any:
        with torch.no_grad():
            pos = torch.as_tensor(np.asarray(positions), dtype=model.dtype, device=model.device)
            return model.cv(pos).double().cpu().numpy()

    return cv


def spectator_report(system: Any, model: Any, basin_of: Any, train_positions: Any, *,
                     k: float = 5.0) -> dict[str, Any]:
    """The CV's spectator sensitivity (:func:`mtcv_core.spectators.spectator_sensitivity`)
    rounded for ``summary.json``: per landmark the spread of xi with the
    spectators moved over ``k`` times their training range, and the share of
    basin-minimum draws classified into another basin."""
    from mtcv_core.spectators import spectator_sensitivity

    res = spectator_sensitivity(system, model_cv_function(model), basin_of, train_positions,
                                k=k)

    def rounded(v: Any) -> Any:
        if isinstance(v, float):
            return round(v, 4)
        if isinstance(v, dict):
            return {key: rounded(x) for key, x in v.items()}
        if isinstance(v, list):
            return [rounded(x) for x in v]
        return v

    return rounded(res)


def _train_figures(ctx: Any, model: Any, history: Any, test: Any) -> None:
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


# ------------------------------------------------------------------ umbrella
@dataclass
class UmbrellaStageConfig:
    """The ``[umbrella]`` table."""

    transitions: list[list[str]] = field(default_factory=lambda: [["A", "B"]], metadata={
        "doc": "basin pairs the windows must connect (1D CV: windows span the first pair)"})
    n_windows: int = positive(24, "windows along a 1D CV (before refinement)")
    width_factor: float = positive(0.5, "window width sqrt(kT/k) in units of the spacing "
                                        "(0.5: neighbours two thermal widths apart)")
    refine_overlap: float = field(default=0.02, metadata={
        "min": 0, "doc": "add a window between 1D neighbours whose overlap is below this"})
    max_refinements: int = field(default=4, metadata={
        "min": 0, "doc": "passes that add windows where the previous pass fell short"})
    grid_points: int = positive(14, "grid nodes per dimension for a 2D CV")
    sampler: str = doc("umbrella", "sampler plugin")
    sampler_options: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "options of the sampler (walkers_per_window, n_steps, stride, ...)"})
    reference: bool = doc(True, "also run umbrella sampling along the system's true CVs")
    reference_cvs: list[str] = field(default_factory=list, metadata={
        "doc": "true CVs to restrain for the reference (default: all of them); one CV gets "
               "windows along a line, like a 1D xi"})
    reference_spacing: float = positive(1.0, "grid spacing of the true-CV windows (their units)")
    reference_windows: int = positive(24, "windows along a single reference CV (before "
                                          "refinement)")
    reference_sampler_options: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "sampler options that differ for the true-CV windows (e.g. fewer walkers for "
               "their many 2D windows)"})


def _sampler(ctx: Any, cfg: UmbrellaStageConfig, reference: bool = False) -> Any:
    import dataclasses

    from mtcv_core.plugins import PluginError, build_component

    try:
        factory = ctx.registry.get("sampler", cfg.sampler).factory
    except PluginError as exc:
        raise PluginError(f"umbrella.sampler: {exc}") from None
    merged = dict(cfg.sampler_options)
    where = "umbrella.sampler_options"
    if reference:
        merged.update(cfg.reference_sampler_options)
        where = "umbrella.reference_sampler_options"
    if dataclasses.is_dataclass(factory):
        names = {f.name for f in dataclasses.fields(factory)}
        for key in ("engine", "timestep_fs", "friction_per_fs"):
            if key in names and key not in merged:
                merged[key] = getattr(ctx.config.sample, key)
    return build_component(ctx.registry, "sampler", cfg.sampler, merged, where)


def _kT(ctx: Any) -> float:
    from mtcv_core.units import kT_eV

    return kT_eV(ctx.config.temperature_K)


def run_umbrella(ctx: Any) -> None:
    """Umbrella windows along the learned CV (``umbrella.nc``) and, as a
    reference, along the true CVs (``umbrella_reference.nc``)."""
    import torch

    from mtcv_core.config import from_mapping
    from mtcv_core.execution import task_rng
    from mtcv_core.export import load_cv
    from mtcv_core.io import read_frames, write_dataset
    from mtcv_core.plugins import blame

    cfg = from_mapping(UmbrellaStageConfig, ctx.config.umbrella, "umbrella")
    for pair in cfg.transitions:
        if len(pair) != 2 or any(b not in ctx.system.basins for b in pair):
            raise ConfigError(f"umbrella.transitions: {pair!r} is not a pair of basins of "
                              f"{list(ctx.system.basins)}")
    data = read_frames(ctx.out / "data.nc")
    train = _split(data, "train")
    positions = train["coordinates"].values
    labels = train["label"].values
    cv = load_cv(ctx.out / "cv.ts").to(torch.float64)
    xi = _evaluate_cv(cv, positions)
    sampler = _sampler(ctx, cfg)
    rng = task_rng(ctx.config.seed, "umbrella-plan")
    windows = ctx.out / "umbrella_windows"
    kT = _kT(ctx)
    names = tuple(f"xi{i}" for i in range(xi.shape[1])) if xi.shape[1] > 1 else ("xi",)
    run_kw = dict(seed=ctx.config.seed, client=_client(ctx),
                  temperature_K=ctx.config.temperature_K, progress=ctx.progress)
    if xi.shape[1] == 1:
        a, b = (ctx.system.basins.index(n) for n in cfg.transitions[0])
        plan = sampler.plan_line(xi[:, 0], labels, a, b, n_windows=cfg.n_windows, kT=kT,
                                 rng=rng, width_factor=cfg.width_factor)
    else:
        span = xi.max(axis=0) - xi.min(axis=0)
        plan = sampler.plan_grid(xi, spacing=span / cfg.grid_points, kT=kT, rng=rng,
                                 width_factor=cfg.width_factor)
    with blame(_component(ctx, "sampler", cfg.sampler), _system_component(ctx),
               action="running umbrella windows along xi"):
        result, added = _refined_run(
            sampler, ctx, cv, plan, positions, xi, cfg.max_refinements,
            lambda res, pl: (sampler.refine_line(res, pl, xi[:, 0],
                                                 threshold=cfg.refine_overlap, kT=kT, rng=rng,
                                                 positions=positions, cv=cv,
                                                 masses=train["masses"].values)
                             if xi.shape[1] == 1 else sampler.refine_grid(res, pl)),
            store=windows / "xi", cv_names=names, cv_units="1", **run_kw)
    _note_blow_ups(ctx, "umbrella", _blow_ups(result))
    ctx.summary["umbrella_windows_added"] = added
    write_dataset(result, ctx.out / "umbrella.nc")
    ctx.summary["umbrella_windows"] = int(result.sizes["window"])
    if cfg.reference:
        _run_reference(ctx, cfg, sampler=_sampler(ctx, cfg, reference=True), positions=positions,
                       labels=labels, masses=train["masses"].values, rng=rng,
                       store=windows / "true_cv", run_kw=run_kw)


def reference_cv(ctx: Any, names: list[str] | None) -> tuple[Any, list[int]]:
    """The true-CV module restricted to ``names`` (all when None or empty)
    and the column indices; ConfigError for a name the system lacks."""
    import torch

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


def _run_reference(ctx: Any, cfg: Any, *, sampler: Any, positions: Any, labels: Any,
                   masses: Any, rng: Any, store: Any, run_kw: dict[str, Any]) -> None:
    """Windows along the true CVs (or the subset ``reference_cvs``):
    along a line between the first transition's basins for one CV, on a grid
    (``reference_spacing``) for two."""
    import numpy as np

    from mtcv_core.io import write_dataset

    try:
        true_cv, index = reference_cv(ctx, cfg.reference_cvs)
    except NotImplementedError:
        return
    s = ctx.system.true_cv(positions)[:, index]
    periods = np.zeros(len(index))
    if ctx.system.true_cv_periods:
        periods = np.asarray(ctx.system.true_cv_periods, float)[index]
    kT = _kT(ctx)
    names = tuple(ctx.system.true_cv_names[i] for i in index)
    if len(index) == 1:
        a, b = (ctx.system.basins.index(n) for n in cfg.transitions[0])
        plan = sampler.plan_line(s[:, 0], labels, a, b, n_windows=cfg.reference_windows,
                                 kT=kT, rng=rng, width_factor=cfg.width_factor)

        def refine(res: Any, pl: Any) -> Any:
            return sampler.refine_line(res, pl, s[:, 0], threshold=cfg.refine_overlap, kT=kT,
                                       rng=rng, positions=positions, cv=true_cv, masses=masses)
    else:
        plan = sampler.plan_grid(s, spacing=cfg.reference_spacing, kT=kT, rng=rng,
                                 width_factor=cfg.width_factor)

        def refine(res: Any, pl: Any) -> Any:
            return sampler.refine_grid(res, pl)
    from mtcv_core.plugins import blame

    with blame(_component(ctx, "sampler", cfg.sampler), _system_component(ctx),
               action="running umbrella windows along the true CVs"):
        ref, added = _refined_run(sampler, ctx, true_cv, plan, positions, s,
                                  cfg.max_refinements, refine, store=store, cv_names=names,
                                  cv_units=ctx.system.true_cv_units,
                                  cv_periods=periods if periods.any() else None, **run_kw)
    _note_blow_ups(ctx, "umbrella_reference", _blow_ups(ref))
    write_dataset(ref, ctx.out / "umbrella_reference.nc")
    ctx.summary["umbrella_reference_windows"] = int(ref.sizes["window"])
    ctx.summary["umbrella_reference_windows_added"] = added


def _refined_run(sampler: Any, ctx: Any, cv: Any, plan: Any, frames: Any, values: Any,
                 max_refinements: int, refine: Any, **kw: Any) -> tuple[Any, int]:
    """Run the windows of ``plan``, then up to ``max_refinements`` passes of
    ``refine(result, plan) -> plan`` that add windows (each pass runs only
    the new ones; the rest come back from the store). Every walker starts
    from its own frame of ``frames`` (n, n_atoms, 3), drawn among those whose
    CV ``values`` (n, d) lie nearest the window's centre, so the walkers of
    a window begin spread over the configurations the data hold there.
    -> (result, number of windows added)."""
    def run(plan: Any) -> Any:
        starts = _walker_starts(values, plan.centers, sampler.walkers_per_window,
                                ctx.config.seed)
        return sampler.run(ctx.system, cv, centers=plan.centers,
                           spring_constants=plan.spring_constants,
                           start_positions=frames[starts], **kw)

    result = run(plan)
    added = 0
    for _ in range(max_refinements):
        new = refine(result, plan)
        if len(new.centers) == len(plan.centers):
            break
        added += len(new.centers) - len(plan.centers)
        plan = new
        result = run(plan)
    return result, added


def _walker_starts(values: Any, centers: Any, walkers: int, seed: int, pool: int = 4) -> Any:
    """(n_windows, walkers) frame indices: for window ``w``, ``walkers`` of
    the ``pool * walkers`` frames whose CV values are nearest its centre
    (Euclidean in CV units), drawn without replacement with the window's own
    random stream (``seed``, window index), so a window's starts do not
    depend on the other windows."""
    import numpy as np
    from scipy.spatial import cKDTree

    from mtcv_core.execution import task_rng

    values = np.asarray(values, float).reshape(len(values), -1)
    n_near = min(len(values), pool * walkers)
    _, near = cKDTree(values).query(np.asarray(centers, float), k=n_near)
    near = np.asarray(near).reshape(len(centers), n_near)
    out = np.empty((len(centers), walkers), dtype=int)
    for w in range(len(centers)):
        rng = task_rng(seed, "umbrella-starts", w)
        out[w] = near[w, rng.choice(n_near, size=walkers, replace=n_near < walkers)]
    return out


def _evaluate_cv(cv: Any, positions: Any, chunk: int = 65536) -> Any:
    import numpy as np
    import torch

    out = []
    with torch.no_grad():
        for s in range(0, len(positions), chunk):
            out.append(cv(torch.as_tensor(positions[s:s + chunk], dtype=torch.float64)).numpy())
    return np.concatenate(out)



# ------------------------------------------------------------------ estimate
@dataclass
class EstimateStageConfig:
    """The ``[estimate]`` table."""

    estimator: str = doc("mbar", "estimator plugin")
    options: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "options of the estimator (n_bins, n_bootstraps, ...)"})
    reference_options: dict[str, Any] = field(default_factory=dict, metadata={
        "doc": "options that differ for the true-CV reference (e.g. fewer bootstraps for "
               "its many 2D windows)"})


def _classifier_basins(model: Any, ctx: Any) -> Any:
    """xi (n, d) -> basin index by the model's head predicting basin
    probabilities (argmax); for a CV without one (a single-task baseline), by
    a linear classifier fitted on xi of the labelled training frames."""
    import numpy as np
    import torch

    from mtcv_core.interfaces import BASIN_PROBABILITY

    found = model.head_predicting(BASIN_PROBABILITY)
    head = found[1] if found is not None else None
    if head is None:
        from mtcv_core.io import read_frames
        from mtcv_core.training import cv_values, fit_latent_classifier

        train = _split(read_frames(ctx.out / "data.nc"), "train")
        return fit_latent_classifier(cv_values(model, train), train["label"].values,
                                     len(ctx.system.basins))

    def basin_of(xi: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            t = torch.as_tensor(np.asarray(xi), dtype=model.dtype)
            return head.predict(t).argmax(dim=1).cpu().numpy()

    return basin_of


def _reference_basins(ctx: Any) -> Any:
    """Basins along the reference CVs: the system's own regions when the
    reference restrains all true CVs; for a subset (``reference_cvs``, e.g.
    phi alone) a linear classifier fitted on those CVs of the labelled
    training frames, as for a learned CV without a classifier head."""
    from mtcv_core.config import from_mapping
    from mtcv_core.io import read_frames
    from mtcv_core.training import fit_latent_classifier

    cfg = from_mapping(UmbrellaStageConfig, ctx.config.umbrella, "umbrella")
    if not cfg.reference_cvs or list(cfg.reference_cvs) == list(ctx.system.true_cv_names):
        return ctx.system.basin_index_cv
    _, index = reference_cv(ctx, cfg.reference_cvs)
    train = _split(read_frames(ctx.out / "data.nc"), "train")
    values = ctx.system.true_cv(train["coordinates"].values)[:, index]
    return fit_latent_classifier(values, train["label"].values, len(ctx.system.basins))


def run_estimate(ctx: Any) -> None:
    """MBAR along xi (``fes.nc``) and along the true CVs
    (``fes_reference.nc``); barriers and free-energy differences beside the
    quadrature reference in ``summary.json``."""
    import math

    from mtcv_core.config import from_mapping
    from mtcv_core.export import load_model
    from mtcv_core.io import read_dataset, write_dataset
    from mtcv_core.plugins import blame
    from mtcv_core.schema_umbrella import transitions_table

    cfg = from_mapping(EstimateStageConfig, ctx.config.estimate, "estimate")
    estimator = _estimator(ctx, cfg, reference=False)
    model = load_model(ctx.out / "model.pt", ctx.registry)
    basins = list(ctx.system.basins)
    umbrella = read_dataset(ctx.out / "umbrella.nc")
    with blame(_component(ctx, "estimator", cfg.estimator), action="estimating along xi"):
        fes = estimator.estimate(umbrella, basin_of=_classifier_basins(model, ctx),
                                 basin_names=basins)
    write_dataset(fes, ctx.out / "fes.nc")
    along_xi = {(r["from"], r["to"]): r for r in transitions_table(fes)}
    true_cv: dict[tuple[str, str], dict[str, Any]] = {}
    if (ctx.out / "umbrella_reference.nc").exists():
        ref_estimator = _estimator(ctx, cfg, reference=True)
        with blame(_component(ctx, "estimator", cfg.estimator),
                   action="estimating along the true CVs"):
            ref = ref_estimator.estimate(read_dataset(ctx.out / "umbrella_reference.nc"),
                                         basin_of=_reference_basins(ctx), basin_names=basins)
        write_dataset(ref, ctx.out / "fes_reference.nc")
        true_cv = {(r["from"], r["to"]): r for r in transitions_table(ref)}
    exact = _exact_along_xi(ctx, fes, model, basins)
    quadrature = {(r["from"], r["to"]): r
                  for r in ctx.system.reference_transitions(ctx.config.temperature_K)}
    pairs = [tuple(p) for p in from_mapping(UmbrellaStageConfig, ctx.config.umbrella,
                                            "umbrella").transitions]
    rows = []
    for a, b in pairs:
        x = along_xi.get((a, b), {})
        t = true_cv.get((a, b), {})
        q = quadrature.get((a, b), {})

        def num(d: dict[str, Any], key: str) -> float | None:
            v = d.get(key)
            return None if v is None or not math.isfinite(v) else round(float(v), 4)

        rows.append({
            "from": a, "to": b,
            "barrier_eV": num(x, "barrier_eV"), "barrier_err_eV": num(x, "barrier_err_eV"),
            "delta_F_eV": num(x, "delta_F_eV"), "delta_F_err_eV": num(x, "delta_F_err_eV"),
            "reference_barrier_eV": num(q, "barrier_eV"),
            "reference_delta_F_eV": num(q, "delta_F_eV"),
            "reference_method": q.get("method"),
            "true_cv_barrier_eV": num(t, "barrier_eV"),
            "true_cv_barrier_err_eV": num(t, "barrier_err_eV"),
            "true_cv_delta_F_eV": num(t, "delta_F_eV"),
            "true_cv_delta_F_err_eV": num(t, "delta_F_err_eV"),
        })
        for label, ds in exact.items():
            if ds is None:
                continue
            from mtcv_core.exact_pmf import transition_values

            ev = transition_values(ds, a, b)
            rows[-1][f"{label}_barrier_eV"] = num(ev, "barrier_eV")
            rows[-1][f"{label}_delta_F_eV"] = num(ev, "delta_F_eV")
    ctx.summary["transitions"] = rows
    ctx.summary["min_neighbour_overlap"] = fes.attrs.get("min_neighbour_overlap")


def _exact_along_xi(ctx: Any, fes: Any, model: Any, basins: list[str]) -> dict[str, Any]:
    """The exact PMF along the learned CV on ``fes.nc``'s bins, for systems
    with quadrature (``System.equilibrium_nodes``): ``exact`` with the
    non-periodic spectators spread as in the training data (Gaussian, their
    std), written to ``fes_exact.nc``; ``exact_spectators_at_zero`` with them
    held at zero. Empty for other systems."""
    import json

    import numpy as np

    from mtcv_core.exact_pmf import exact_pmf, fes_edges
    from mtcv_core.io import read_frames, write_dataset
    from mtcv_core.spectators import declares_spectators, training_ranges

    spread = None
    if declares_spectators(ctx.system):
        train = _split(read_frames(ctx.out / "data.nc"), "train")
        ranges = training_ranges(ctx.system, train["coordinates"].values)
        spread = [0.0 if r["period"] > 0 else r["std"] for r in ranges.values()]
    options = json.loads(fes.attrs.get("estimator_options", "{}"))
    kw = dict(basin_of=_classifier_basins(model, ctx), basin_names=basins,
              diagonal=bool(options.get("diagonal_moves", False)), seed=ctx.config.seed)
    cv = model_cv_function(model)
    edges = fes_edges(fes)
    try:
        main = exact_pmf(ctx.system, cv, ctx.config.temperature_K, edges,
                         spectator_spread=spread, progress=ctx.progress, **kw)
    except NotImplementedError:
        return {}
    main.attrs["spectator_names"] = " ".join(getattr(ctx.system, "spectator_names", ()))
    write_dataset(main, ctx.out / "fes_exact.nc")
    out = {"exact": main}
    if spread is not None and np.any(np.asarray(spread) > 0):
        out["exact_spectators_at_zero"] = exact_pmf(
            ctx.system, cv, ctx.config.temperature_K, edges, spectator_spread=None, **kw)
    return out


# -------------------------------------------------------------------- report
def run_report(ctx: Any) -> None:
    """``report.md`` and the free-energy figures."""
    from mtcv_core.io import atomic_path, read_dataset
    from mtcv_core.plots import plot_fes

    figs = ctx.out / "figures"
    exact = read_dataset(ctx.out / "fes_exact.nc") if (ctx.out / "fes_exact.nc").exists() \
        else None
    for name in ("fes", "fes_reference"):
        path = ctx.out / f"{name}.nc"
        if path.exists():
            plot_fes(read_dataset(path), figs / f"{name}.png",
                     exact=exact if name == "fes" else None)
    s = ctx.summary
    lines = [f"# mtcv run: {ctx.config.name}", "",
             f"System `{s['system']}` at {s['temperature_K']} K, seed {ctx.config.seed}.", "",
             "## Data and CV", "",
             f"- frames: {s.get('n_train')} train, {s.get('n_test')} test",
             f"- test accuracy: {_fmt(s.get('test_accuracy'), 4)}",
             f"- test energy MAE: {_fmt(s.get('test_energy_mae_eV'), 4)} eV", "",
             "## Free energies (eV)", "",
             "Along xi: MBAR on the umbrella windows; *exact along xi*: the same "
             "observable by quadrature through the same CV where the system has one "
             "(MBAR - exact = sampling and estimator error); *quadrature*: the "
             "system's own reference (exact along xi - quadrature = the CV's price).", "",
             "| transition | barrier: MBAR along xi | exact along xi | along true CVs | "
             "quadrature | dF: MBAR along xi | exact along xi | along true CVs | quadrature |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in s.get("transitions", []):
        lines.append(
            f"| {r['from']}->{r['to']} | {_pm(r['barrier_eV'], r['barrier_err_eV'])} | "
            f"{_fmt(r.get('exact_barrier_eV'), 3)} | "
            f"{_pm(r['true_cv_barrier_eV'], r['true_cv_barrier_err_eV'])} | "
            f"{_fmt(r['reference_barrier_eV'], 3)} | "
            f"{_pm(r['delta_F_eV'], r['delta_F_err_eV'])} | "
            f"{_fmt(r.get('exact_delta_F_eV'), 3)} | "
            f"{_pm(r['true_cv_delta_F_eV'], r['true_cv_delta_F_err_eV'])} | "
            f"{_fmt(r['reference_delta_F_eV'], 3)} |")
    sens = s.get("spectator_sensitivity")
    if sens:
        lines += ["", "## Spectator sensitivity", "",
                  f"xi at the landmarks while only the spectators move over {sens['k']:g}x "
                  f"their training range (periodic ones over their period); separation of "
                  f"the basin minima on xi: {_fmt(sens.get('separation'), 3)}; basin-minimum "
                  f"draws classified into another basin: "
                  f"{_fmt(sens.get('misclassified_fraction'), 3)}.", "",
                  "| landmark | xi | spread (all) | " + " | ".join(
                      f"spread ({n})" for n in sens["training_ranges"]) + " |",
                  "|---|---|---|" + "---|" * len(sens["training_ranges"])]
        for mark, row in sens["landmarks"].items():
            lines.append(f"| {mark} | {', '.join(f'{v:.3f}' for v in row['xi'])} | "
                         f"{row['spread']:.3f} | " + " | ".join(
                             f"{row['spread_' + n]:.3f}" for n in sens["training_ranges"])
                         + " |")
    lines += ["", "## Timings (s)", ""]
    lines += [f"- {k}: {v}" for k, v in s.get("timings_s", {}).items()]
    lines += ["", "## Figures", ""]
    lines += [f"![{p.stem}](figures/{p.name})" for p in sorted(figs.glob("*.png"))]
    with atomic_path(ctx.out / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _fmt(value: Any, digits: int) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _pm(value: Any, err: Any) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + ("" if err is None else f" ± {err:.3f}")
