"""Plugin manager and registry.

Plugins are modules that implement hooks of :mod:`mtcv_core.hookspecs`. They
are found through the entry-point group ``mtcv`` -- mtcv's built-in plugins
(``plugins/`` in the source tree) are registered that way too, exactly as a
third-party package would be.

Environment switches
--------------------
``MTCV_DISABLE_PLUGIN_AUTOLOAD``
    If set to a non-empty value other than ``0``, entry points are not loaded.
``MTCV_PLUGINS``
    Comma-separated module names to load explicitly (also when autoload is off).
``MTCV_BLOCK_PLUGINS``
    Comma-separated plugin names (entry-point names or module names) to skip.

A plugin that fails to import or raises while registering is recorded in
:attr:`Registry.broken` with its error; the others are unaffected. A
component that raises while it is built (:func:`build_component`) or while it
runs (:func:`blame`) is named, with its plugin and version, in the error.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.metadata as md
import inspect
import os
import traceback
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pluggy

from mtcv_core import hookspecs
from mtcv_core.errors import MtcvError

ENTRY_POINT_GROUP = "mtcv"
ENV_DISABLE_AUTOLOAD = "MTCV_DISABLE_PLUGIN_AUTOLOAD"
ENV_PLUGINS = "MTCV_PLUGINS"
ENV_BLOCK = "MTCV_BLOCK_PLUGINS"

#: kind name -> hook name
KINDS: dict[str, str] = {
    "system": "mtcv_register_systems",
    "data_source": "mtcv_register_data_sources",
    "featurizer": "mtcv_register_featurizers",
    "loss_head": "mtcv_register_loss_heads",
    "sampler": "mtcv_register_samplers",
    "estimator": "mtcv_register_estimators",
    "rate_estimator": "mtcv_register_rate_estimators",
    "thermo_head": "mtcv_register_thermo_heads",
}


class PluginError(MtcvError, LookupError):
    """A component was asked for that no loaded plugin provides, or a
    plugin's component raised while it was built or run (the message names
    the component, its plugin and version; ``__cause__`` is the original
    exception)."""


@dataclass(frozen=True)
class Component:
    """One registered component: ``factory(**options)`` builds it."""

    kind: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    version: str

    def as_dict(self) -> dict[str, str]:
        return {"kind": self.kind, "name": self.name, "plugin": self.plugin,
                "version": self.version}


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be imported or could not register."""

    plugin: str
    stage: str  # "import" or the hook name
    error: str
    traceback: str = ""

    def as_dict(self) -> dict[str, str]:
        return {"plugin": self.plugin, "stage": self.stage, "error": self.error}


@dataclass
class Registry:
    """All components the loaded plugins provide, by kind and name."""

    components: dict[str, dict[str, Component]] = field(
        default_factory=lambda: {k: {} for k in KINDS})
    broken: list[BrokenPlugin] = field(default_factory=list)
    plugins: dict[str, str] = field(default_factory=dict)  # plugin name -> version

    def get(self, kind: str, name: str) -> Component:
        """The component ``name`` of ``kind``; a :class:`PluginError` names the
        available choices (and broken plugins) when it is missing."""
        if kind not in self.components:
            raise PluginError(f"unknown component kind {kind!r}; kinds are {sorted(KINDS)}")
        try:
            return self.components[kind][name]
        except KeyError:
            have = ", ".join(sorted(self.components[kind])) or "none"
            msg = f"no {kind} named {name!r} is installed (available: {have})"
            if self.broken:
                msg += "; broken plugins: " + ", ".join(
                    f"{b.plugin} ({b.error})" for b in self.broken)
            raise PluginError(msg) from None

    def create(self, kind: str, name: str, /, **options: Any) -> Any:
        """Build the component ``name`` of ``kind`` with ``options``."""
        return self.get(kind, name).factory(**options)

    def names(self, kind: str) -> list[str]:
        return sorted(self.components[kind])

    def __iter__(self):
        for kind in KINDS:
            yield from (self.components[kind][n] for n in sorted(self.components[kind]))


def _env_list(name: str) -> list[str]:
    return [s.strip() for s in os.environ.get(name, "").split(",") if s.strip()]


def _autoload_disabled() -> bool:
    return os.environ.get(ENV_DISABLE_AUTOLOAD, "") not in ("", "0")


def _dist_version(ep: md.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return dist.version if dist is not None else "unknown"


def _module_version(module: Any) -> str:
    version = getattr(module, "__version__", None)
    if version:
        return str(version)
    top = getattr(module, "__name__", "").split(".")[0]
    try:
        for dist in md.packages_distributions().get(top, []):
            return md.version(dist)
    except Exception:  # pragma: no cover - metadata quirks
        pass
    return "unknown"


def get_plugin_manager(
    extra_plugins: Iterable[tuple[str, Any]] = (),
) -> tuple[pluggy.PluginManager, dict[str, str], list[BrokenPlugin]]:
    """A pluggy manager with entry-point plugins (unless disabled), the
    modules of ``MTCV_PLUGINS`` and ``extra_plugins`` (name, module) loaded.

    Returns the manager, the versions of the loaded plugins and the plugins
    that failed to import.
    """
    pm = pluggy.PluginManager("mtcv")
    pm.add_hookspecs(hookspecs)
    blocked = set(_env_list(ENV_BLOCK))
    for name in blocked:
        pm.set_blocked(name)
    versions: dict[str, str] = {}
    broken: list[BrokenPlugin] = []

    def add(name: str, module: Any, version: str) -> None:
        if name in blocked or getattr(module, "__name__", "") in blocked:
            return
        if pm.is_registered(module) or pm.has_plugin(name):
            return
        try:
            pm.register(module, name=name)
        except Exception as exc:  # a hookimpl with a bad signature, say
            broken.append(BrokenPlugin(name, "register", f"{type(exc).__name__}: {exc}",
                                       traceback.format_exc()))
            return
        versions[name] = version

    if not _autoload_disabled():
        eps = sorted(md.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name)
        for ep in eps:
            if ep.name in blocked or ep.value in blocked:
                continue
            try:
                module = ep.load()
            except Exception as exc:
                broken.append(BrokenPlugin(ep.name, "import", f"{type(exc).__name__}: {exc}",
                                           traceback.format_exc()))
                continue
            add(ep.name, module, _dist_version(ep))
    for modname in _env_list(ENV_PLUGINS):
        if modname in blocked:
            continue
        try:
            module = importlib.import_module(modname)
        except Exception as exc:
            broken.append(BrokenPlugin(modname, "import", f"{type(exc).__name__}: {exc}",
                                       traceback.format_exc()))
            continue
        add(modname, module, _module_version(module))
    for name, module in extra_plugins:
        add(name, module, _module_version(module))
    return pm, versions, broken


def build_registry(pm: pluggy.PluginManager, versions: dict[str, str],
                   broken: list[BrokenPlugin] | None = None) -> Registry:
    """Call every registration hook, one plugin at a time, so that a plugin
    raising inside its hook is recorded and the others still register."""
    registry = Registry(broken=list(broken or []), plugins=dict(versions))
    for kind, hook_name in KINDS.items():
        hook = getattr(pm.hook, hook_name)
        for impl in hook.get_hookimpls():
            plugin_name = impl.plugin_name
            found: list[Component] = []

            def register(name: str, factory: Callable[..., Any], /, *, _kind=kind,
                         _plugin=plugin_name, _found=found) -> None:
                if not isinstance(name, str) or not name:
                    raise TypeError(f"component name must be a non-empty string, got {name!r}")
                if not callable(factory):
                    raise TypeError(f"{_kind} {name!r}: factory {factory!r} is not callable")
                _found.append(Component(_kind, name, factory, _plugin,
                                        versions.get(_plugin, "unknown")))

            try:
                impl.function(register=register)
            except Exception as exc:
                registry.broken.append(BrokenPlugin(
                    plugin_name, hook_name, f"{type(exc).__name__}: {exc}",
                    traceback.format_exc()))
                continue
            for comp in found:
                existing = registry.components[kind].get(comp.name)
                if existing is not None and existing.plugin != comp.plugin:
                    registry.broken.append(BrokenPlugin(
                        comp.plugin, hook_name,
                        f"{kind} {comp.name!r} is already provided by {existing.plugin}; "
                        "the first registration is kept"))
                    continue
                registry.components[kind][comp.name] = comp
    providing = {c.plugin for by_name in registry.components.values() for c in by_name.values()}
    failed = {b.plugin for b in registry.broken}
    for plugin in sorted(set(versions) - providing - failed):
        registry.broken.append(BrokenPlugin(
            plugin, "register", "registers no component: none of its hooks (mtcv_register_*) "
            "called register(); check its entry point and hook names"))
    return registry


_REGISTRY: Registry | None = None


def load_plugins(*, reload: bool = False) -> Registry:
    """The registry of all installed components (loaded once, then cached)."""
    global _REGISTRY
    if _REGISTRY is None or reload:
        pm, versions, broken = get_plugin_manager()
        _REGISTRY = build_registry(pm, versions, broken)
    return _REGISTRY


def _describe(comp: Component) -> str:
    return f"{comp.kind} {comp.name!r} (plugin {comp.plugin} {comp.version})"


def build_component(registry: Registry, kind: str, name: str, options: Mapping[str, Any],
                    where: str, *, name_where: str | None = None, **context: Any) -> Any:
    """Build component ``name`` of ``kind`` from the config table ``options``
    found at ``where`` (e.g. ``"system_options"``); ``name_where`` is the
    config key that named the component (e.g. ``"system"``), for the error
    when no plugin provides it; ``context`` are arguments mtcv itself passes
    (e.g. a head's ``latent_dim``).

    Raises
    ------
    PluginError
        No installed plugin provides it, or its factory raised something
        other than a bad-option error (named with its plugin and version).
    ConfigError
        The options do not fit the factory: an unknown key, a wrong type or
        value (the message names ``where``, the key and the plugin).
    """
    from mtcv_core.config import ConfigError, check_options

    try:
        comp = registry.get(kind, name)
    except PluginError as exc:
        if name_where is None:
            raise
        raise PluginError(f"{name_where}: {exc}") from None
    factory = comp.factory
    opts = dict(options)
    if dataclasses.is_dataclass(factory):
        opts = check_options(factory, opts, where)
    else:
        try:
            params = inspect.signature(factory).parameters
        except (TypeError, ValueError):  # no introspectable signature
            params = None
        if params is not None and not any(p.kind is p.VAR_KEYWORD for p in params.values()):
            allowed = sorted(k for k, p in params.items()
                             if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)
                             and k not in context)
            unknown = sorted(set(opts) - set(allowed))
            if unknown:
                raise ConfigError(f"{where}.{unknown[0]}: unknown option of {_describe(comp)}; "
                                  f"allowed options: {allowed}")
    try:
        return factory(**context, **opts)
    except ConfigError as exc:
        text = str(exc)
        head = text.split(":", 1)[0]
        raise ConfigError(f"{where}.{text}" if " " not in head and "/" not in head
                          else f"{where}: {text}") from None
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {_describe(comp)} rejected the options {opts!r} "
                          f"({type(exc).__name__}: {exc})") from exc
    except MtcvError:
        raise
    except Exception as exc:
        raise PluginError(f"{_describe(comp)} raised {type(exc).__name__} while being built "
                          f"from {where}: {exc}") from exc


@contextlib.contextmanager
def blame(*components: Component | None, action: str) -> Iterator[None]:
    """Run a block that calls into plugins' components; an exception that is
    not an mtcv error (:class:`~mtcv_core.errors.MtcvError`) becomes a
    :class:`PluginError` naming every component involved, its plugin and
    version, and ``action`` (e.g. ``"running the sample stage"``); the
    original exception is its ``__cause__``."""
    try:
        yield
    except MtcvError:
        raise
    except Exception as exc:
        names = " on ".join(_describe(c) for c in components if c is not None)
        raise PluginError(f"{names} raised {type(exc).__name__} while {action}: {exc}"
                          ) from exc
