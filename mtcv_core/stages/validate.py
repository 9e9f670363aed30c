"""Check every table of a run's config before any stage runs."""

from __future__ import annotations

from typing import Any

from mtcv_core.stages.context import RunContext
from mtcv_core.stages.ensemble import ensemble_config
from mtcv_core.stages.estimate import build_estimator, estimate_config
from mtcv_core.stages.rate import build_rate_estimator, rate_config
from mtcv_core.stages.sample import build_sources
from mtcv_core.stages.train import check_train
from mtcv_core.stages.umbrella import build_sampler, reference_cv, umbrella_config


def validate(ctx: RunContext, *, allow_large: bool = False) -> None:
    """Check every table of the run's config against its stage's schema and
    the plugins it names, and keep the parsed stage configs on ``ctx``, so
    that a typo in ``[estimate]`` fails in a second, not after hours of
    sampling; then the memory and disk the sources and samplers will need
    against the machine (:mod:`mtcv_core.footprint`; skipped with
    ``allow_large``). Raises ConfigError naming the key, the value and what
    was expected."""
    cfg = ctx.config
    sources = build_sources(ctx)
    samplers = []
    if cfg.train:
        ctx.train = check_train(ctx)
    if cfg.umbrella:
        ucfg = umbrella_config(ctx)
        samplers.append(("umbrella.sampler_options", build_sampler(ctx, ucfg),
                         ctx.train.latent_dim if ctx.train else 1))
        n_ref = None
        if ucfg.reference and ucfg.reference_cvs:
            try:
                n_ref = len(reference_cv(ctx, ucfg.reference_cvs)[1])
            except NotImplementedError:
                pass
        if ucfg.reference:
            n_ref = n_ref or len(ctx.system.true_cv_names) or 1
            samplers.append(("umbrella.reference_sampler_options",
                             build_sampler(ctx, ucfg, reference=True), n_ref))
        ctx.umbrella = ucfg
    if cfg.estimate:
        ecfg = estimate_config(ctx)
        estimator = build_estimator(ctx, ecfg)
        build_estimator(ctx, ecfg, reference=True)
        ctx.estimate = ecfg
        if samplers:
            check_schemas(ctx, samplers[0][1], estimator)
    if cfg.rate:
        rcfg = rate_config(ctx)
        if rcfg.enabled:
            if ctx.train is not None and ctx.train.latent_dim != 1:
                from mtcv_core.config import ConfigError

                raise ConfigError(f"rate.enabled: rates along xi need a 1D CV, but "
                                  f"train.latent_dim = {ctx.train.latent_dim}")
            build_rate_estimator(ctx, rcfg)
    if cfg.ensemble:
        ensemble_config(ctx)
    if not allow_large:
        _check_sizes(ctx, sources, samplers)


def check_schemas(ctx: RunContext, sampler: Any, estimator: Any) -> None:
    """ConfigError unless the estimator reads what the sampler writes
    (:attr:`Sampler.samples_schema` in :attr:`Estimator.accepts`), naming
    the registered estimators that would."""
    from mtcv_core.config import ConfigError

    produced = getattr(sampler, "samples_schema", "mtcv.umbrella/1")
    accepted = tuple(getattr(estimator, "accepts", ("mtcv.umbrella/1",)))
    if produced in accepted:
        return
    fitting = []
    for name in ctx.registry.names("estimator"):
        factory = ctx.registry.get("estimator", name).factory
        if produced in tuple(getattr(factory, "accepts", ("mtcv.umbrella/1",))):
            fitting.append(name)
    hint = (f"estimators that read it: {', '.join(repr(n) for n in fitting)}" if fitting
            else "no registered estimator reads it")
    raise ConfigError(f"estimate.estimator: {ctx.estimate.estimator!r} reads "
                      f"{', '.join(accepted)} samples, but the sampler "
                      f"{ctx.umbrella.sampler!r} writes {produced} ({hint})")


def _check_sizes(ctx: RunContext, sources: dict[str, Any],
                 samplers: list[tuple[str, Any, int]]) -> None:
    """Refuse a run whose sources or samplers cannot fit this machine."""
    from mtcv_core.footprint import check_footprints
    from mtcv_core.stages.common import system_n_atoms

    n_atoms = system_n_atoms(ctx.system)
    f = ctx.config.sample.test_fraction
    items = []
    for name, source in sources.items():
        for split, scale in (("train", 1.0), ("test", f / (1.0 - f))):
            items.append((f"sample.sources.{name} ({split} split)",
                          source.footprint(ctx.system, n_atoms=n_atoms, scale=scale)))
    for where, sampler, dim in samplers:
        items.append((where, sampler.footprint(ctx.system, n_atoms=n_atoms, cv_dim=dim)))
    check_footprints(items, ctx.out)


__all__ = ["validate", "check_schemas"]
