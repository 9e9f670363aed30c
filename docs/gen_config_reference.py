"""Generate the configuration reference page from the config schema.

The page is never written by hand, so it cannot drift from the code. It
introspects

* the run-config dataclasses (:class:`mtcv_core.pipeline.RunConfig` and the
  tables it holds, :class:`mtcv_core.training.TrainConfig`,
  :class:`mtcv_core.stages.UmbrellaStageConfig`,
  :class:`mtcv_core.stages.EstimateStageConfig`): key, type, default, bounds
  (``min`` / ``gt`` / ``max`` field metadata) and the ``doc`` metadata;
* the options of the built-in components a config names (data sources,
  loss heads, featurizers, samplers, estimators, systems): their dataclass
  fields (or a head's ``Options`` dataclass), else the keyword parameters of
  the factory with the descriptions of its NumPy-style ``Parameters``
  section.

A key without a description fails the build: document it where it is
defined (``doc`` metadata, or the factory's docstring) or, for fields whose
definition should not change, in :data:`FALLBACK` below.

Two uses:

* the mkdocs hook named in ``mkdocs.yml`` (``on_files`` adds the page
  ``configuration.md``, generated in memory at every build);
* ``python docs/gen_config_reference.py [OUT]`` prints the page (or writes
  it to ``OUT``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import inspect
import math
import os
import re
import sys
import tomllib
import types
import typing
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PAGE = "configuration.md"

#: descriptions of keys whose definition carries none, by "Class.key"
#: (dataclasses) or "component.key" (factory parameters)
FALLBACK: dict[str, str] = {
    "RunConfig.system": "system plugin (`mtcv plugins` lists them: `muller_brown_5d`, "
                        "`three_well_5d`, `alanine_dipeptide`, ...)",
    "RunConfig.system_options": "options of the system (see [systems](#systems))",
    "RunConfig.execution": "the [`[execution]`](#execution) table",
    "RunConfig.sample": "the [`[sample]`](#sample) table",
    "RunConfig.train": "the [`[train]`](#train) table (empty: the stage does nothing)",
    "RunConfig.umbrella": "the [`[umbrella]`](#umbrella) table (empty: the stage does nothing)",
    "RunConfig.estimate": "the [`[estimate]`](#estimate) table (empty: the stage does "
                          "nothing)",
    "RunConfig.rate": "the [`[rate]`](#rate) table (empty or `enabled = false`: no rates)",
    "RunConfig.ensemble": "the [`[ensemble]`](#ensemble) table (empty: one CV, no ensemble)",
    "SampleConfig.sources": "data source name -> its options "
                            "([`[sample.sources.NAME]`](#data-sources)); each source runs on "
                            "the train and the test split",
    "BasinMD.basins": "basins to start trajectories in (default: all of the system's)",
}


class ConfigReferenceError(RuntimeError):
    """The reference cannot be generated (an undocumented key, a broken plugin)."""


# ----------------------------------------------------------------- rendering
def type_name(tp: Any) -> str:
    """A readable name of the annotation ``tp`` (``list[int]``, ``float or None``)."""
    if tp is type(None):
        return "None"
    if tp is Any:
        return "any"
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(type_name(a) for a in typing.get_args(tp))
    if origin is typing.Literal:
        return " or ".join(toml_value(a) for a in typing.get_args(tp))
    if origin is not None:
        args = typing.get_args(tp)
        name = getattr(origin, "__name__", str(origin))
        if origin in (dict, Mapping):
            return "table"
        return f"{name}[{', '.join(type_name(a) for a in args)}]" if args else name
    if dataclasses.is_dataclass(tp):
        return "table"
    if isinstance(tp, str):
        return tp
    return getattr(tp, "__name__", str(tp))


def toml_value(value: Any) -> str:
    """``value`` as it would be written in TOML (``None`` as ``none``)."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, Mapping):
        if not value:
            return "{}"
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    return repr(value)


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


@dataclasses.dataclass
class Key:
    """One documented key of a table."""

    name: str
    type: str
    default: str
    description: str
    bounds: str = ""


def _bounds(meta: Mapping[str, Any]) -> str:
    parts = []
    if "min" in meta:
        parts.append(f">= {meta['min']}")
    if "gt" in meta:
        parts.append(f"> {meta['gt']}")
    if "max" in meta:
        parts.append(f"<= {meta['max']}")
    return ", ".join(parts)


def dataclass_keys(cls: type, missing: list[str], owner: str | None = None) -> list[Key]:
    """The init fields of dataclass ``cls`` as :class:`Key` rows; names of
    fields without a description are appended to ``missing``."""
    hints = typing.get_type_hints(cls)
    owner = owner or cls.__name__
    rows = []
    for f in dataclasses.fields(cls):
        if not f.init:
            continue
        if f.default is not dataclasses.MISSING:
            default = toml_value(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            value = f.default_factory()
            default = ("see its table" if dataclasses.is_dataclass(value)
                       else toml_value(value))
        else:
            default = "required"
        text = f.metadata.get("doc") or _fallback(cls, f.name)
        if not text:
            missing.append(f"{owner}.{f.name} ({cls.__module__}.{cls.__qualname__})")
            text = ""
        rows.append(Key(f.name, type_name(hints.get(f.name, f.type)), default, text,
                        _bounds(f.metadata)))
    return rows


def _fallback(cls: type, name: str) -> str | None:
    for klass in getattr(cls, "__mro__", (cls,)):
        text = FALLBACK.get(f"{klass.__name__}.{name}")
        if text:
            return text
    return None


_PARAM_LINE = re.compile(r"^(\w+(?:\s*,\s*\w+)*)\s*:\s*(.*)$")


def docstring_parameters(doc: str) -> dict[str, str]:
    """Parameter descriptions of a NumPy-style ``Parameters`` section
    (also the compact one-line form ``name : type    description``)."""
    lines = inspect.cleandoc(doc or "").splitlines()
    out: dict[str, str] = {}
    i = 0
    while i < len(lines) - 1:
        if lines[i].strip().startswith("Parameters") and set(lines[i + 1].strip()) == {"-"}:
            break
        i += 1
    else:
        return out
    i += 2
    current: list[str] = []
    body: list[str] = []

    def flush() -> None:
        for name in current:
            out[name] = " ".join(body).strip()

    while i < len(lines):
        line = lines[i]
        if i + 1 < len(lines) and line.strip() and set(lines[i + 1].strip()) == {"-"}:
            break  # the next section
        if line and not line[0].isspace():
            m = _PARAM_LINE.match(line)
            if m is None:
                if not line.strip():
                    i += 1
                    continue
                break
            flush()
            current = [n.strip() for n in m.group(1).split(",")]
            rest = m.group(2)
            gap = re.split(r"\s{2,}", rest, maxsplit=1)
            body = []
            if len(gap) == 2:  # compact form "name : type, unit    description"
                unit = gap[0].partition(",")[2].strip()
                body = [gap[1] + (f", {unit}" if unit else "")]
            if not body and not (i + 1 < len(lines) and lines[i + 1][:1].isspace()):
                body = [rest]
        elif line.strip():
            body.append(line.strip())
        elif not current:
            pass
        i += 1
    flush()
    return out


def signature_keys(name: str, factory: Callable[..., Any], missing: list[str],
                   skip: tuple[str, ...] = ()) -> list[Key]:
    """The parameters of ``factory`` (no ``*args``/``**kwargs``) as rows."""
    sig = inspect.signature(factory)
    try:
        hints = typing.get_type_hints(factory.__init__ if inspect.isclass(factory) else factory)
    except Exception:  # pragma: no cover - unresolvable annotations
        hints = {}
    docs: dict[str, str] = {}
    for klass in getattr(factory, "__mro__", (factory,)):  # a base class may document them
        for key, text in docstring_parameters(klass.__doc__ or "").items():
            docs.setdefault(key, text)
    rows = []
    for p in sig.parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD) or p.name in skip:
            continue
        default = "required" if p.default is p.empty else toml_value(p.default)
        tp = hints.get(p.name, p.annotation)
        text = docs.get(p.name) or FALLBACK.get(f"{name}.{p.name}")
        if not text:
            missing.append(f"{name}.{p.name} ({factory.__module__}.{factory.__qualname__})")
            text = ""
        rows.append(Key(p.name, "" if tp is p.empty else type_name(tp), default, text))
    return rows


def table(rows: list[Key]) -> list[str]:
    if not rows:
        return ["(no options)", ""]
    out = ["| key | type | default | description |", "|---|---|---|---|"]
    for r in rows:
        text = r.description + (f" ({r.bounds})" if r.bounds else "")
        default = r.default if r.default == "see its table" else f"`{_cell(r.default)}`"
        out.append(f"| `{r.name}` | {_cell(r.type)} | {default} | {_cell(text)} |")
    return out + [""]


# ------------------------------------------------------------------ plugins
def builtin_plugins() -> dict[str, str]:
    """Entry-point name -> module of mtcv's own plugins (``pyproject.toml``)."""
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return dict(data["project"]["entry-points"]["mtcv"])


@contextlib.contextmanager
def _plain_plugin_env() -> Iterator[None]:
    names = ("MTCV_DISABLE_PLUGIN_AUTOLOAD", "MTCV_PLUGINS", "MTCV_BLOCK_PLUGINS")
    saved = {n: os.environ.get(n) for n in names}
    try:
        os.environ["MTCV_DISABLE_PLUGIN_AUTOLOAD"] = "1"
        os.environ.pop("MTCV_PLUGINS", None)
        os.environ.pop("MTCV_BLOCK_PLUGINS", None)
        yield
    finally:
        for n, v in saved.items():
            if v is None:
                os.environ.pop(n, None)
            else:
                os.environ[n] = v


def builtin_registry() -> Any:
    """A registry of the built-in plugins only, whatever else is installed
    and whatever the ``MTCV_*`` switches say; a broken one is an error."""
    from mtcv_core.plugins import build_registry, get_plugin_manager

    modules = [(name, importlib.import_module(mod)) for name, mod in builtin_plugins().items()]
    with _plain_plugin_env():
        pm, versions, broken = get_plugin_manager(extra_plugins=modules)
    registry = build_registry(pm, versions, broken)
    if registry.broken:
        raise ConfigReferenceError("built-in plugins failed to load: " + "; ".join(
            f"{b.plugin} ({b.stage}): {b.error}" for b in registry.broken))
    return registry


def component_keys(comp: Any, missing: list[str],
                   skip: tuple[str, ...] = ()) -> tuple[list[Key], str]:
    """Rows for a component's options and where they are defined."""
    factory = comp.factory
    where = f"`{factory.__module__}.{factory.__qualname__}`"
    if dataclasses.is_dataclass(factory):
        return dataclass_keys(factory, missing, owner=comp.name), where
    options = getattr(factory, "Options", None)
    if dataclasses.is_dataclass(options):
        return (dataclass_keys(options, missing, owner=comp.name),
                f"`{options.__module__}.{options.__qualname__}`")
    return signature_keys(comp.name, factory, missing, skip=skip), where


# --------------------------------------------------------------------- page
def sections() -> list[tuple[str, type]]:
    """(TOML table, dataclass) of the run-config schema, in page order."""
    from mtcv_core.pipeline import ExecutionConfig, RunConfig, SampleConfig
    from mtcv_core.stages import (
        EnsembleConfig,
        EstimateStageConfig,
        RateStageConfig,
        UmbrellaStageConfig,
    )
    from mtcv_core.training import TrainConfig

    return [("top level", RunConfig), ("execution", ExecutionConfig),
            ("sample", SampleConfig), ("train", TrainConfig),
            ("umbrella", UmbrellaStageConfig), ("estimate", EstimateStageConfig),
            ("rate", RateStageConfig), ("ensemble", EnsembleConfig)]


INTRO = """\
# Configuration reference

!!! note "Generated"
    This page is generated at every documentation build from the config
    schema (`docs/gen_config_reference.py` reads the dataclasses of
    `mtcv_core.pipeline`, `mtcv_core.training` and `mtcv_core.stages`, and
    the options of the built-in plugins); it cannot drift from the code.

A run is one TOML file (`mtcv run CONFIG`; without one, the built-in
`examples/quick.toml`). Every table is validated before any stage runs: an
unknown key, a wrong type or a value out of bounds stops the run at once with
the file, the key path (`sample.sources.basin_md.n_steps`) and what was
expected. Units are in the key names or the descriptions (K, fs, 1/fs,
angstrom, eV). A table that is absent or empty skips its stage's work
(`[train]`, `[umbrella]`, `[estimate]`).

```toml
name = "quick"
system = "muller_brown_5d"
temperature_K = 300.0
seed = 2026

[execution]
workers = 2

[sample.sources.basin_md]
trajectories_per_basin = 64

[train]
heads = { classifier = {}, energy = { n_bins = 1 } }

[umbrella]
sampler_options = { walkers_per_window = 16, n_steps = 10000 }

[estimate]
options = { n_bins = 50 }
```

The example configs in `examples/` are complete, commented runs.
"""

NOTES: dict[str, str] = {
    "top level": "The top-level keys of the file.",
    "execution": "Where the independent tasks (trajectories, shooting chains, umbrella "
                 "windows) run. `mtcv run --workers N` and `--scheduler ADDR` override "
                 "these keys. The results for a seed do not depend on the number of workers.",
    "sample": "The sample stage. `engine`, `timestep_fs` and `friction_per_fs` are also "
              "the defaults of every data source and of the umbrella sampler that has these "
              "options and does not set them itself.",
    "train": "The multitask CV and its training (`mtcv_core.training.train`). In "
             "`mtcv run`, `seed` defaults to the run's `seed`, and with the `cartesian` "
             "featurizer `featurizer_options.dof_mask` defaults to the system's active "
             "coordinates.",
    "umbrella": "Umbrella windows along the learned CV xi (a line between the first "
                "transition's basins for a 1D xi, a grid for a 2D one), refined where they "
                "fall short, and the reference windows along the system's true CVs.",
    "estimate": "Free energies from the umbrella windows (along xi, and along the true CVs "
                "when the reference ran).",
    "rate": "Rate constants along a 1D xi after the estimate stage (`rates.nc`, "
            "`summary.json[\"rates\"]`, the report's *Rates along xi* and `figures/rates.png`): "
            "transition-state theory on the PMF times the transmission coefficient from "
            "shots off the dividing surface, the committor test there, and optionally "
            "brute-force MD as a reference. Off unless `enabled = true`.",
    "ensemble": "The CV's own uncertainty: more CVs trained with other seeds, umbrella + "
                "estimate on each in `ensemble/member_k/`, every barrier and dF reported as "
                "mean ± total with its statistical and CV-to-CV parts "
                "(`summary.json[\"ensemble\"]`, the report's *CV ensemble*).",
}


def generate() -> str:
    """The Markdown of the configuration reference; raises
    :class:`ConfigReferenceError` naming every undocumented key."""
    missing: list[str] = []
    registry = builtin_registry()
    lines = [INTRO]
    for name, cls in sections():
        title = "Top-level keys" if name == "top level" else f"`[{name}]`"
        anchor = "top-level" if name == "top level" else name
        lines += [f"## {title} {{#{anchor}}}", "", NOTES[name], "",
                  f"Schema: `{cls.__module__}.{cls.__qualname__}`.", ""]
        lines += table(dataclass_keys(cls, missing))

    def kind_section(kind: str, title: str, anchor: str, text: str,
                     skip: tuple[str, ...] = ()) -> None:
        nonlocal lines
        lines += [f"## {title} {{#{anchor}}}", "", text, ""]
        for comp in registry:
            if comp.kind != kind:
                continue
            rows, where = component_keys(comp, missing, skip=skip)
            lines += [f"### `{comp.name}`", "",
                      f"Plugin `{comp.plugin}`; options from {where}.", ""]
            lines += table(rows)

    kind_section("data_source", "Data sources: `[sample.sources.NAME]`", "data-sources",
                 "Each table under `[sample.sources]` names a data source and holds its "
                 "options. Unset `engine`, `timestep_fs` and `friction_per_fs` come from "
                 "`[sample]`; an unset `temperature_K` from `[sample] train_temperature_K` / "
                 "`test_temperature_K`, else the run's `temperature_K`.")
    kind_section("loss_head", "Loss heads: `[train] heads = { NAME = {...} }`", "loss-heads",
                 "The keys of `[train] heads` name loss heads; each value is the table of "
                 "that head's options. The trainer adds `latent_dim`, `n_features` and "
                 "`n_classes` itself. The thermodynamic heads (`force_matching`, "
                 "`energy_matching`, `second_cumulant`) train free-energy models "
                 "(`mtcv_thermo.train_free_energy`), not a CV.")
    kind_section("featurizer", "Featurizers: `[train] featurizer_options`", "featurizers",
                 "`[train] featurizer` names the featurizer, `featurizer_options` holds its "
                 "options (atom indices count from 0).")
    kind_section("sampler", "Samplers: `[umbrella] sampler_options`", "samplers",
                 "`[umbrella] sampler` names the sampler; `sampler_options` hold its options "
                 "for the windows along xi, and `reference_sampler_options` those that differ "
                 "for the windows along the true CVs. Unset `engine`, `timestep_fs` and "
                 "`friction_per_fs` come from `[sample]`; `temperature_K` is the run's.")
    kind_section("estimator", "Estimators: `[estimate] options`", "estimators",
                 "`[estimate] estimator` names the estimator; `options` hold its options, "
                 "`reference_options` those that differ for the true-CV reference.")
    kind_section("rate_estimator", "Rate estimators: `[rate] options`", "rate-estimators",
                 "`[rate] estimator` names the rate estimator; `options` hold its options. "
                 "Its MD runs at the run's temperature with `[sample]`'s `timestep_fs` and "
                 "`friction_per_fs` unless its sub-tables set them.")
    kind_section("system", "Systems: `system_options`", "systems",
                 "The top-level `system` names the system; the top-level table "
                 "`system_options` holds its options.")
    if missing:
        raise ConfigReferenceError(
            "configuration reference: no description for " + ", ".join(missing)
            + ". Document each key where it is defined (the field's 'doc' metadata, e.g. "
            "mtcv_core.config.doc(default, text), or the factory's NumPy 'Parameters' "
            "section), or add it to FALLBACK in docs/gen_config_reference.py.")
    return "\n".join(lines).rstrip() + "\n"


# -------------------------------------------------------------- mkdocs hook
def on_files(files: Any, config: Any) -> Any:
    """mkdocs hook: add the generated ``configuration.md`` to the site."""
    from mkdocs.exceptions import PluginError
    from mkdocs.structure.files import File

    if files.get_file_from_path(PAGE) is not None:
        raise PluginError(f"docs/{PAGE} is generated at build time by "
                          "docs/gen_config_reference.py; delete the file on disk")
    try:
        content = generate()
    except ConfigReferenceError as exc:
        raise PluginError(str(exc)) from None
    files.append(File.generated(config, PAGE, content=content))
    return files


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    text = generate()
    if args:
        Path(args[0]).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
