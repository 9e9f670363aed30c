"""Check every table of a run's config before any stage runs."""

from __future__ import annotations

from mtcv_core.stages.context import RunContext
from mtcv_core.stages.ensemble import ensemble_config
from mtcv_core.stages.estimate import build_estimator, estimate_config
from mtcv_core.stages.sample import build_sources
from mtcv_core.stages.train import check_train
from mtcv_core.stages.umbrella import build_sampler, reference_cv, umbrella_config


def validate(ctx: RunContext) -> None:
    """Check every table of the run's config against its stage's schema and
    the plugins it names, and keep the parsed stage configs on ``ctx``, so
    that a typo in ``[estimate]`` fails in a second, not after hours of
    sampling. Raises ConfigError naming the key, the value and what was
    expected."""
    cfg = ctx.config
    build_sources(ctx)
    if cfg.train:
        ctx.train = check_train(ctx)
    if cfg.umbrella:
        ucfg = umbrella_config(ctx)
        build_sampler(ctx, ucfg)
        if ucfg.reference and ucfg.reference_cvs:
            try:
                reference_cv(ctx, ucfg.reference_cvs)
            except NotImplementedError:
                pass
        if ucfg.reference:
            build_sampler(ctx, ucfg, reference=True)
        ctx.umbrella = ucfg
    if cfg.estimate:
        ecfg = estimate_config(ctx)
        build_estimator(ctx, ecfg)
        build_estimator(ctx, ecfg, reference=True)
        ctx.estimate = ecfg
    if cfg.ensemble:
        ensemble_config(ctx)


__all__ = ["validate"]
