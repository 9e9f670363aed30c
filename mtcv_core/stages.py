"""The pipeline's stages. Each takes the :class:`~mtcv_core.pipeline.RunContext`,
writes its outputs under ``ctx.out`` atomically and updates ``ctx.summary``."""

from __future__ import annotations

from typing import Any


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


def _source_options(ctx: Any, name: str, options: dict[str, Any]) -> Any:
    """Build data source ``name`` from its config table, with the run's
    ``[sample]`` engine and thermostat settings as defaults."""
    import dataclasses

    from mtcv_core.config import ConfigError, check_options

    if not isinstance(options, dict):
        raise ConfigError(f"sample.sources.{name}: expected a table of options, got {options!r}")
    factory = ctx.registry.get("data_source", name).factory
    merged = dict(options)
    if dataclasses.is_dataclass(factory):
        fields = {f.name for f in dataclasses.fields(factory)}
        for key in ("engine", "timestep_fs", "friction_per_fs"):
            if key in fields and key not in merged:
                merged[key] = getattr(ctx.config.sample, key)
    merged = check_options(factory, merged, f"sample.sources.{name}")
    return factory(**merged)


def run_sample(ctx: Any) -> None:
    """Run every data source on the train and test splits; write ``data.nc``."""
    from mtcv_core.config import ConfigError
    from mtcv_core.io import read_frames, write_dataset
    from mtcv_core.schema import concat_frames, provenance
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
    for name, source in sources.items():
        for split, scale in scales.items():
            part_path = parts_dir / f"{name}_{split}.nc"
            if part_path.exists():  # finished before an interruption
                parts.append(read_frames(part_path))
                continue
            part = source.run(ctx.system, seed=cfg.seed, client=_client(ctx), split=split,
                              scale=scale, temperature_K=cfg.temperature_K,
                              progress=ctx.progress)
            part.attrs.update(provenance(seed=cfg.seed))
            write_dataset(part, part_path)
            parts.append(part)
    data = concat_frames(parts)
    data.attrs.update(provenance(config=ctx.summary["config"], seed=cfg.seed,
                                 system=ctx.system.name))
    write_dataset(data, ctx.out / "data.nc")
    ctx.summary.update(frame_counts(data))
    try:
        from mtcv_core.plot_data import plot_frames

        plot_frames(data, ctx.system, ctx.out / "figures" / "data.png")
    except NotImplementedError:
        pass  # no true CVs to plot against
