"""The table of layer kinds by name, and the Python plugins that add to it.

nnspec's own kinds register when `nnspec.layers` imports its modules. Any other kind comes from
Python code that the user installed or ran, never from a spec: an entry point in the group
`nnspec.layers` of an installed package, or `nnspec.register_layer(cls)` before a spec is loaded.
Every installed entry point loads the first time the table is read (checking a spec, `nnspec
layers`), whatever the spec names: a spec can only look kinds up, so it cannot choose what gets
imported.

A kind from outside nnspec may make the generated model.py import modules of its own package
(`Layer.imports`). The registry checks them when it accepts the kind and records them, and
emit/verify.py allows exactly those imports: what generated code may import is decided by the
installed Python, not by spec text. A plugin that fails to import, or registers a kind that
exists, is skipped with a one-line error naming it; every other kind still works.
"""
from __future__ import annotations

import keyword
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from types import ModuleType
from typing import Any, Callable

LAYER_GROUP = "nnspec.layers"    # entry points that register layer kinds
INTERP_GROUP = "nnspec.interp"   # entry points that register interpreter rules (nnspec.interp)
# names that model.py binds at module level (emit/source.py): a plugin's import must not rebind
# them, and nnspec's own modules are never a plugin's to import
TAKEN_ROOTS = frozenset({"math", "torch", "nn", "F", "Model", "LAYERS", "nnspec"})


class PluginError(ValueError):
    """A layer kind that cannot be registered; the message is one line that names its source."""


@dataclass(frozen=True)
class Origin:
    """Where a layer kind that is not built into nnspec came from."""

    module: str                      # the module that defines its class
    imports: tuple[str, ...]         # the modules generated code imports for it
    plugin: str | None = None        # the entry point's name; None for register_layer()
    distribution: str | None = None  # "name version" of the package declaring the entry point

    def __str__(self) -> str:
        if self.plugin is None:
            return f"nnspec.register_layer in module {self.module}"
        return f"plugin `{self.plugin}` of {self.distribution}, module {self.module}"


@dataclass(frozen=True)
class Plugin:
    """One installed entry point: its name, its distribution, and how to import it."""

    name: str
    distribution: str
    load: Callable[[], Any]


def installed_plugins(group: str) -> list[Plugin]:
    """The entry points of `group` that importlib.metadata finds on sys.path, in a fixed order."""
    found = []
    for ep in entry_points(group=group):
        dist = getattr(ep, "dist", None)
        where = f"{dist.name} {dist.version}" if dist is not None else ep.value
        found.append(Plugin(ep.name, where, ep.load))
    return sorted(found, key=lambda p: (p.distribution, p.name))


def failure_line(plugin: Plugin, err: BaseException) -> str:
    """One line for a plugin that raised while it was imported: no traceback, its name first."""
    text = " ".join(str(err).split()) or "(no message)"
    return (f"plugin `{plugin.name}` ({plugin.distribution}) failed to load: "
            f"{type(err).__name__}: {text}; its layer kinds are skipped")


def report(line: str) -> None:
    """Say on stderr, once, that a plugin was skipped; the run goes on without it."""
    print(f"nnspec: error: {line}", file=sys.stderr)


def _is_module_name(name: object) -> bool:
    parts = name.split(".") if isinstance(name, str) else []
    return bool(parts) and all(p.isidentifier() and not keyword.iskeyword(p)
                               and not p.startswith("__") for p in parts)


class Registry(Mapping):
    """Layer kinds by name. Reading it loads the installed plugins first (once per process)."""

    def __init__(self, base: type):
        self._base = base                    # every kind subclasses it (nnspec.layers.Layer)
        self._kinds: dict[str, type] = {}
        self._origins: dict[str, Origin] = {}
        self._loading: Plugin | None = None  # the entry point being imported
        self._loaded = False
        self.errors: list[str] = []          # one line per plugin problem, as reported
        self.failed: list[str] = []          # the names of plugins with a problem

    # ---- reading: the Mapping interface, plugins loaded first --------------------------------
    def __getitem__(self, kind: str) -> type:
        self._load()
        return self._kinds[kind]

    def __contains__(self, kind: object) -> bool:
        self._load()
        return kind in self._kinds

    def __iter__(self) -> Iterator[str]:
        self._load()
        return iter(list(self._kinds))

    def __len__(self) -> int:
        self._load()
        return len(self._kinds)

    def builtin(self) -> list[str]:
        """nnspec's own kinds (what the layer reference documents); loads no plugin."""
        return [k for k in self._kinds if k not in self._origins]

    def origin(self, kind: str) -> Origin | None:
        """Where a kind came from; None for nnspec's own."""
        self._load()
        return self._origins.get(kind)

    def plugin_imports(self) -> frozenset[str]:
        """Every module that some accepted kind's generated code may import."""
        self._load()
        return frozenset(m for o in self._origins.values() for m in o.imports)

    def unknown_kind_help(self, hint: str | None) -> str:
        """The help line for an unknown name that reads as a layer kind."""
        text = "`nnspec layers` lists every layer kind, those of installed plugins too"
        text = f"{hint} {text}" if hint else (
            f"{text}; a new kind comes only from a Python plugin (docs/plugins.md)")
        if self.failed:
            names = " and ".join(f"`{name}`" for name in self.failed)
            text += f"; plugin {names} failed to load (see the error above)"
        return text

    # ---- writing --------------------------------------------------------------------------------
    def add(self, cls: type) -> type:
        """Register a kind. nnspec's own are checked by assertion (a clash is an nnspec bug); any
        other is checked in full, and a problem raises PluginError, or inside a plugin's import
        is reported and skips only that kind."""
        if self._loading is None and getattr(cls, "__module__", "").startswith("nnspec."):
            assert cls.kind and cls.kind not in self._kinds, cls.kind
            self._kinds[cls.kind] = cls
            return cls
        try:
            origin = self._accept(cls)
        except PluginError as err:
            if self._loading is None:
                raise
            self._fail(self._loading.name, str(err))
            return cls
        self._kinds[cls.kind] = cls
        self._origins[cls.kind] = origin
        return cls

    def forget_plugins(self) -> None:
        """Drop every kind that is not nnspec's own; the next read loads the installed plugins
        again. For tests: a plugin module still in sys.modules is not imported again, so its
        kinds come back only if the caller dropped it from sys.modules too."""
        for kind in list(self._origins):
            del self._kinds[kind], self._origins[kind]
        self._loaded = False
        self.errors.clear()
        self.failed.clear()

    def _source(self, cls: Any) -> str:
        if self._loading is not None:
            return f"plugin `{self._loading.name}` ({self._loading.distribution})"
        return f"nnspec.register_layer({getattr(cls, '__qualname__', repr(cls))})"

    def _accept(self, cls: Any) -> Origin:
        source = self._source(cls)
        if not (isinstance(cls, type) and issubclass(cls, self._base)):
            raise PluginError(f"{source}: {cls!r} is not a subclass of nnspec.layers.Layer")
        kind = cls.kind
        if not (isinstance(kind, str) and kind.isidentifier() and not keyword.iskeyword(kind)
                and not kind.startswith("_")):
            raise PluginError(f"{source}: its `kind` {kind!r} is not a name a spec can write "
                              "(an identifier, not starting with _)")
        if kind in self._kinds:
            other = self._origins.get(kind)
            where = "built into nnspec" if other is None else f"registered (from {other})"
            raise PluginError(f"{source}: layer kind `{kind}` is already {where}; give the "
                              "plugin's kind another name")
        package = cls.__module__.split(".")[0]
        imports = cls.imports
        for name in imports if isinstance(imports, tuple) else [imports]:
            if not (_is_module_name(name) and name.split(".")[0] == package
                    and package not in TAKEN_ROOTS):
                raise PluginError(f"{source}: `imports` entry {name!r} of kind `{kind}` is not a "
                                  f"module of its own package `{package}`; generated code may "
                                  "import only the plugin's own modules")
        if self._loading is None:
            return Origin(cls.__module__, tuple(imports))
        return Origin(cls.__module__, tuple(imports), self._loading.name,
                      self._loading.distribution)

    def _fail(self, plugin: str, line: str) -> None:
        self.errors.append(line)
        if plugin not in self.failed:
            self.failed.append(plugin)
        report(line)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True  # before importing: a plugin that reads the table must not recurse
        for plugin in installed_plugins(LAYER_GROUP):
            before = set(self._kinds)
            self._loading = plugin
            try:
                self._take(plugin.load())
            except Exception as err:  # a broken plugin is reported and skipped, never fatal
                for kind in set(self._kinds) - before:
                    del self._kinds[kind], self._origins[kind]
                self._fail(plugin.name, failure_line(plugin, err))
            finally:
                self._loading = None

    def _take(self, obj: Any) -> None:
        """What an entry point names: a module whose import registered its kinds, or a Layer
        subclass that the registry adds here."""
        if isinstance(obj, ModuleType):
            return
        if isinstance(obj, type) and issubclass(obj, self._base):
            if self._kinds.get(getattr(obj, "kind", None)) is not obj:
                self.add(obj)
            return
        raise PluginError(f"the entry point names {obj!r}, which is neither a module nor a "
                          "subclass of nnspec.layers.Layer")
