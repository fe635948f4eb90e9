"""The plugin host: finds, loads and lists plugins, and collects the components they register.

Plugins come from three places, loaded one at a time so one broken plugin never breaks the rest:

* built-ins: every module in ``vila2/default_plugins`` (shown by ``vila2 plugins --all``);
* installed packages: entry points in the group ``vila2`` (``importlib.metadata``);
* one-file plugins: ``--plugin FILE`` on any command, or ``plugins:`` in a recipe.

Environment: ``VILA2_LOAD_PLUGINS=a,b`` loads only those installed plugins (``''`` loads none);
``VILA2_DISABLE_PLUGINS=x,y`` blocks plugins (installed or built-in); both match an entry-point
name or a distribution name. ``VILA2_STRICT_PLUGINS=1`` turns every plugin failure into an error.
"""

from __future__ import annotations

import difflib
import importlib
import importlib.metadata as metadata
import importlib.util
import os
import pkgutil
import sys
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pluggy

from vila2 import PROJECT, hookspecs
from vila2.components import (
    KINDS,
    Captioner,
    ComponentError,
    Evaluator,
    Executor,
    Filter,
    Specialist,
    validate,
)
from vila2.errors import PluginError

ENTRY_POINT_GROUP = PROJECT
BUILTIN_PACKAGE = "vila2.default_plugins"
_CONTRIBUTION_HOOKS = {f"register_{kind}s": kind for kind in KINDS}



@dataclass
class PluginInfo:
    """What ``vila2 plugins`` shows for one plugin."""

    name: str
    distribution: str | None = None
    version: str | None = None
    builtin: bool = False
    source: str = "entry-point"  # entry-point | builtin | file | object
    status: str = "loaded"  # loaded | failed | blocked
    reason: str | None = None
    explicit: bool = False  # named by the user (--plugin, recipe, register()): failures are errors
    hooks: list[str] = field(default_factory=list)
    components: dict[str, list[str]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "distribution": self.distribution,
            "version": self.version,
            "builtin": self.builtin,
            "source": self.source,
            "status": self.status,
            "reason": self.reason,
            "hooks": self.hooks,
            "components": self.components,
        }


def _env_list(var: str) -> set[str] | None:
    value = os.environ.get(var)
    if value is None:
        return None
    return {part.strip() for part in value.split(",") if part.strip()}


def _strict() -> bool:
    return os.environ.get("VILA2_STRICT_PLUGINS", "").lower() in {"1", "true", "yes"}


class Host:
    """A pluggy plugin manager plus vila2's registries of components.

    ``Host(entry_points=False, builtins=False)`` is an empty sandbox (see ``vila2.testing``).
    """

    def __init__(self, *, entry_points: bool = True, builtins: bool = True) -> None:
        self.pm = pluggy.PluginManager(PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.infos: dict[str, PluginInfo] = {}
        self._components: dict[str, dict[str, Any]] | None = None
        if builtins:
            self.load_builtins()
        if entry_points:
            self.load_entry_points()

    # ---------------------------------------------------------------- loading
    def _blocked(self, *names: str | None) -> bool:
        blocked = _env_list("VILA2_DISABLE_PLUGINS") or set()
        return any(n in blocked for n in names if n)

    def _fail(self, info: PluginInfo, reason: str, exc: BaseException | None = None) -> None:
        info.status, info.reason = "failed", reason
        self.infos[info.name] = info
        where = f" (distribution {info.distribution})" if info.distribution else ""
        message = f"plugin {info.name!r}{where} failed: {reason}"
        if info.explicit:
            raise PluginError(message) from exc
        if _strict():
            raise PluginError(message + "  [VILA2_STRICT_PLUGINS=1]") from exc
        message = "vila2: " + message
        print(message + " — skipped", file=sys.stderr)

    def _register(self, plugin: object, info: PluginInfo) -> bool:
        """Register one plugin object; refuse it whole if any hook is unknown or malformed."""
        if info.name in self.infos and self.infos[info.name].status == "loaded":
            self._fail(info, f"a plugin named {info.name!r} is already loaded")
            return False
        try:
            self.pm.register(plugin, name=info.name)
        except pluggy.PluginValidationError as exc:
            self._fail(info, f"bad hook implementation: {exc}", exc)
            return False
        except ValueError as exc:  # pluggy: already registered
            self._fail(info, str(exc), exc)
            return False
        unknown = [c.name for c in self.pm.get_hookcallers(plugin) or [] if c.spec is None]
        if unknown:
            self.pm.unregister(plugin)
            hints = []
            for hook in unknown:
                close = difflib.get_close_matches(hook, self.hook_names(), n=1)
                hints.append(f"{hook!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            self._fail(info, "unknown hook " + ", ".join(hints))
            return False
        info.hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
        info.status = "loaded"
        self.infos[info.name] = info
        self._components = None
        return True

    def load_builtins(self) -> None:
        package = importlib.import_module(BUILTIN_PACKAGE)
        for module_info in sorted(pkgutil.iter_modules(package.__path__), key=lambda m: m.name):
            name = f"{BUILTIN_PACKAGE}.{module_info.name}"
            info = PluginInfo(name=name, distribution="vila2", version=_version("vila2"),
                              builtin=True, source="builtin")
            if self._blocked(name, module_info.name):
                info.status = "blocked"
                self.infos[name] = info
                continue
            try:
                module = importlib.import_module(name)
            except Exception as exc:
                self._fail(info, f"import failed: {exc!r}", exc)
                continue
            self._register(module, info)

    def load_entry_points(self) -> None:
        allowed = _env_list("VILA2_LOAD_PLUGINS")
        for ep in sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
            dist = ep.dist.name if ep.dist is not None else None
            info = PluginInfo(name=ep.name, distribution=dist,
                              version=ep.dist.version if ep.dist is not None else None)
            if (allowed is not None and not ({ep.name, dist} & allowed)) or self._blocked(ep.name, dist):
                info.status = "blocked"
                self.infos.setdefault(ep.name, info)
                continue
            try:
                plugin = ep.load()
            except Exception as exc:
                last = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
                where = f" at {last.filename}:{last.lineno}" if last else ""
                self._fail(info, f"import failed: {exc!r}{where}", exc)
                continue
            self._register(plugin, info)

    def load_file(self, path: str | os.PathLike[str]) -> str:
        """Load a one-file plugin. A file the user named that cannot load is an error."""
        file = Path(path).expanduser().resolve()
        name = f"file:{file}"
        if name in self.infos and self.infos[name].status == "loaded":
            return name
        if not file.is_file():
            raise PluginError(f"plugin file {str(path)!r} does not exist")
        module_name = f"vila2_plugin_{file.stem}_{abs(hash(str(file))):x}"
        spec = importlib.util.spec_from_file_location(module_name, file)
        if spec is None or spec.loader is None:
            raise PluginError(f"plugin file {str(path)!r} is not a Python module")
        module = importlib.util.module_from_spec(spec)
        try:
            spec.loader.exec_module(module)
        except Exception as exc:
            raise PluginError(f"plugin file {str(path)!r} failed to import: {exc!r}") from exc
        info = PluginInfo(name=name, source="file", explicit=True)
        self._register(module, info)
        self._collect()  # a bad component in a file the user named is an error now, not later
        return name

    def register(self, plugin: object, name: str | None = None) -> str:
        """Register a plugin object (a module or any object with hookimpls). Returns its name."""
        name = name or getattr(plugin, "__name__", None) or f"object-{id(plugin):x}"
        info = PluginInfo(name=name, source="object", explicit=True)
        self._register(plugin, info)
        self._collect()
        return name

    def unregister(self, name: str) -> None:
        plugin = self.pm.get_plugin(name)
        if plugin is not None:
            self.pm.unregister(plugin)
        self.infos.pop(name, None)
        self._components = None

    def check_pending(self) -> None:
        """Fail, naming the plugin, if any registered hookimpl matches no hook spec."""
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            raise PluginError(str(exc)) from exc

    def hook_names(self) -> list[str]:
        return sorted(name for name in dir(hookspecs) if name.startswith(("register_", "on_", "finetune_")))

    @property
    def hook(self) -> Any:
        return self.pm.hook

    # ---------------------------------------------------------------- components
    def _collect(self) -> dict[str, dict[str, Any]]:
        if self._components is not None:
            return self._components
        found: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
        for info in self.infos.values():
            info.components = {}
        for hook_name, kind in _CONTRIBUTION_HOOKS.items():
            caller = getattr(self.pm.hook, hook_name)
            # pluggy keeps implementations in registration order (it calls them in reverse); one
            # plugin's implementations are called through pluggy, so wrappers work as anywhere
            plugins = list(dict.fromkeys(impl.plugin_name for impl in caller.get_hookimpls()))
            for plugin_name in plugins:
                info = self.infos.get(plugin_name)
                if info is not None and info.status != "loaded":
                    continue
                staged: list[Any] = []

                def register(component: Any, _kind: str = kind, _plugin: str = plugin_name,
                             _staged: list[Any] = staged) -> None:
                    _staged.append(validate(component, _kind, _plugin))

                others = [p for name, p in self.pm.list_name_plugin() if name != plugin_name]
                try:
                    self.pm.subset_hook_caller(hook_name, remove_plugins=others)(register=register)
                    for component in staged:
                        other = found[kind].get(component.name)
                        if other is not None:
                            raise ComponentError(
                                f"{kind} name {component.name!r} is registered by both plugin "
                                f"{other.plugin!r} and plugin {plugin_name!r}"
                            )
                        found[kind][component.name] = component
                        if info is not None:
                            info.components.setdefault(kind, []).append(component.name)
                except Exception as exc:
                    reason = str(exc) if isinstance(exc, ComponentError) else f"{hook_name} raised {exc!r}"
                    if info is None:
                        raise PluginError(f"plugin {plugin_name!r}: {reason}") from exc
                    # the failed plugin contributes nothing; collect again without it
                    plugin = self.pm.get_plugin(plugin_name)
                    if plugin is not None:
                        self.pm.unregister(plugin)
                    self._components = None
                    self._fail(info, reason, exc)
                    return self._collect()
        self._components = found
        return found

    def components(self, kind: str) -> dict[str, Any]:
        """All registered components of one kind (``captioner``, ``filter``...), by name."""
        return dict(self._collect()[kind])

    def captioners(self) -> dict[str, Captioner]:
        return self.components("captioner")

    def filters(self) -> dict[str, Filter]:
        return self.components("filter")

    def specialists(self) -> dict[str, Specialist]:
        return self.components("specialist")

    def evaluators(self) -> dict[str, Evaluator]:
        return self.components("evaluator")

    def executors(self) -> dict[str, Executor]:
        """Where caption shards can run (``local`` built in; ``ray`` with ``vila2-ray``)."""
        return self.components("executor")

    def get(self, kind: str, name: str) -> Any:
        """One component by name; an unknown name lists the ones that exist."""
        table = self.components(kind)
        if name in table:
            return table[name]
        known = ", ".join(sorted(table)) or "none"
        hint = difflib.get_close_matches(name, list(table), n=1)
        extra = f" Did you mean {hint[0]!r}?" if hint else ""
        raise PluginError(f"no {kind} named {name!r}; installed: {known}.{extra}")

    def find_evaluator(self, benchmark: str, backend: str = "builtin") -> Evaluator:
        """The evaluator that scores ``benchmark`` with ``backend``; exact names win over 'any'."""
        evaluators = list(self.evaluators().values())
        exact = [e for e in evaluators if e.backend == backend and e.benchmarks and benchmark in e.benchmarks]
        if len(exact) > 1:
            names = " and ".join(f"{e.name!r} (plugin {e.plugin!r})" for e in exact)
            raise PluginError(f"benchmark {benchmark!r} ({backend}) is claimed by {names}")
        if exact:
            return exact[0]
        anyname = [e for e in evaluators if e.backend == backend and e.benchmarks is None]
        if anyname:
            return anyname[0]
        offered = sorted({f"{b} ({e.backend})" for e in evaluators for b in (e.benchmarks or ("*",))})
        raise PluginError(
            f"no evaluator for benchmark {benchmark!r} with backend {backend!r}; "
            f"available: {', '.join(offered) or 'none'}"
        )

    def plugin_infos(self, *, include_builtins: bool = False) -> list[PluginInfo]:
        self._collect()
        return [i for i in self.infos.values() if include_builtins or not i.builtin]


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


_HOST: Host | None = None


def get_host() -> Host:
    """The process-wide host, created on first use."""
    global _HOST
    if _HOST is None:
        _HOST = Host()
    return _HOST


def set_host(host: Host | None) -> Host | None:
    """Swap the process-wide host (tests); returns the previous one."""
    global _HOST
    previous, _HOST = _HOST, host
    return previous


__all__ = [
    "ENTRY_POINT_GROUP",
    "Host",
    "PluginError",
    "PluginInfo",
    "get_host",
    "set_host",
]
