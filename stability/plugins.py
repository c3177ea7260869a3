"""Plugins: models, policies, data sources and families from outside the package.

A plugin is named three ways, tried in this order:

- ``path/to/file.py:Name``: the object ``Name`` of a Python file, executed as a module whose
  name is fixed by the file's absolute path (so checkpoints that pickle its objects load again);
- ``package.module:Name``: the object ``Name`` of an importable module (``Name`` may be
  dotted, ``Class.factory``);
- ``name``: a Python entry point of the group of its kind (`GROUPS`), e.g. ``kde`` in
  ``stability.models``. Another distribution registers its plugins in its own pyproject.toml::

      [project.entry-points."stability.models"]
      my-model = "my_package.models:MyModel"

The shipped models, policies, data sources, rewards, verifiers and corrections are registered
the same way in this distribution's pyproject.toml. In a source checkout whose installed
metadata is older than its pyproject.toml (an editable install not yet reinstalled), the
checkout's own tables are read instead of the installed ones, so the shipped names always match
the code that runs.

Everything found wrong (an import that fails, a missing name or method, a factory that refuses
its parameters) raises a one-line `UsageError` naming the plugin, before anything is written.
The model protocol itself (fit / sample / state, checked return shapes, one model per run) is
`stability.plugin_models`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import importlib.util
import inspect
import json
import math
import re
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stability.errors import UsageError

DIST = "retrain-stability"
GROUPS = {
    "model": "stability.models",
    "policy": "stability.policies",
    "data": "stability.data",
    "family": "stability.families",
    "reward": "stability.rewards",
    "verifier": "stability.verifiers",
    "correction": "stability.corrections",
}
_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message`` of an exception (for one-line errors)."""
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__


@dataclass(frozen=True)
class Entry:
    """A registered plugin name.

    Parameters
    ----------
    name : str
        The entry point's name (``kde``).
    value : str
        What it names, ``module:attr``.
    source : str
        Who registers it: ``"<distribution> <version>"``, or this checkout's pyproject.toml.
    """

    name: str
    value: str
    source: str


@dataclass(frozen=True)
class PluginRef:
    """What a plugin specification resolved to, as recorded in a run's config.json.

    Parameters
    ----------
    kind : str
        A key of `GROUPS` (``"model"``).
    spec : str
        The specification as given (``kde`` or ``my.py:KDE``).
    target : str
        ``/absolute/file.py:Name`` or ``module:Name``.
    origin : str
        ``"file"``, ``"module"`` or ``"entry point of <source>"``.
    sha256 : str or None
        The file's SHA-256 (file plugins), to refuse resuming a run with a changed file.
    """

    kind: str
    spec: str
    target: str
    origin: str
    sha256: str | None = None

    @property
    def label(self) -> str:
        """``model plugin 'kde'``: how errors name the plugin."""
        return f"{self.kind} plugin {self.spec!r}"

    def record(self) -> dict:
        """The JSON record of config.json."""
        out = {"spec": self.spec, "target": self.target, "origin": self.origin}
        if self.sha256:
            out["sha256"] = self.sha256
        return out


@functools.lru_cache(maxsize=1)
def _checkout_tables() -> dict | None:
    """Entry-point tables of the pyproject.toml beside this package, if it is this project's."""
    path = Path(__file__).resolve().parent.parent / "pyproject.toml"
    if not path.is_file():
        return None
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10: the same parser under its original name
        import tomli as tomllib
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, ValueError):
        return None
    project = data.get("project", {})
    if project.get("name") != DIST:
        return None
    return project.get("entry-points", {})


def _dist_name(ep) -> str:
    dist = getattr(ep, "dist", None)
    return "" if dist is None else re.sub(r"[-_.]+", "-", dist.name).lower()


def entries(kind: str) -> dict[str, list[Entry]]:
    """Every registered name of a kind: name -> its registrations (several when ambiguous).

    Parameters
    ----------
    kind : str
        A key of `GROUPS`.

    Returns
    -------
    dict
        Names in alphabetical order.
    """
    from importlib.metadata import entry_points

    group = GROUPS[kind]
    found: dict[str, list[Entry]] = {}
    own = _checkout_tables()
    if own is not None:
        for name, value in own.get(group, {}).items():
            found.setdefault(name, []).append(Entry(name, value, f"{DIST} (this checkout)"))
    for ep in entry_points(group=group):
        if own is not None and _dist_name(ep) == DIST:
            continue  # the checkout's own table replaces its (possibly stale) installed copy
        dist = getattr(ep, "dist", None)
        source = f"{dist.name} {dist.version}" if dist is not None else "an unnamed distribution"
        entry = Entry(ep.name, ep.value, source)
        if all(e.value != entry.value for e in found.get(ep.name, [])):
            found.setdefault(ep.name, []).append(entry)
    return dict(sorted(found.items()))


def names(kind: str) -> list[str]:
    """The registered names of a kind, sorted (for --help and error messages)."""
    return list(entries(kind))


def _is_file_spec(target: str) -> bool:
    return target.endswith(".py") or "/" in target or "\\" in target


def _load_file(path: str, attr: str, label: str) -> tuple[Any, str, str]:
    file = Path(path).expanduser()
    if not file.is_file():
        raise UsageError(f"{label}: no such file {path!r}")
    resolved = file.resolve()
    try:
        digest = hashlib.sha256(resolved.read_bytes()).hexdigest()
    except OSError as exc:
        raise UsageError(f"{label}: cannot read {path!r}: {first_line(exc)}") from None
    # The module's name depends on the path only, so that objects pickled in a checkpoint
    # find their class again when a resumed run loads the same file.
    modname = "stability_plugin_" + hashlib.sha1(str(resolved).encode()).hexdigest()[:12]
    module = sys.modules.get(modname)
    if module is None or getattr(module, "__plugin_sha256__", None) != digest:
        spec = importlib.util.spec_from_file_location(modname, resolved)
        module = importlib.util.module_from_spec(spec)
        sys.modules[modname] = module
        try:
            spec.loader.exec_module(module)
        except Exception as exc:  # any failure of the user's file is bad input
            sys.modules.pop(modname, None)
            raise UsageError(f"{label}: cannot import {path}: {first_line(exc)}") from None
        module.__plugin_sha256__ = digest
    return _attribute(module, attr, path, label), f"{resolved}:{attr}", digest


def _load_module(modname: str, attr: str, label: str) -> Any:
    try:
        module = importlib.import_module(modname)
    except Exception as exc:  # ImportError, or any error raised while importing it
        raise UsageError(f"{label}: cannot import module {modname!r}: {first_line(exc)}") from None
    return _attribute(module, attr, f"module {modname!r}", label)


def _attribute(module, attr: str, where: str, label: str) -> Any:
    obj = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{label}: {where} defines no {attr!r}")
        obj = getattr(obj, part)
    return obj


def load(kind: str, spec: str) -> tuple[Any, PluginRef]:
    """The object a plugin specification names, and what it resolved to.

    Parameters
    ----------
    kind : str
        A key of `GROUPS`.
    spec : str
        ``file.py:Name``, ``package.module:Name`` or a registered name.

    Returns
    -------
    obj : object
        The class, function or instance named.
    ref : PluginRef

    Raises
    ------
    UsageError
        One line naming the plugin: unknown name, ambiguous name, import failure, missing
        attribute.
    """
    spec = str(spec).strip()
    label = f"{kind} plugin {spec!r}"
    if ":" in spec:
        target, attr = spec.rsplit(":", 1)
        if not target or not _KEY.match(attr or ""):
            raise UsageError(f"{label}: expected FILE.py:NAME or package.module:NAME")
        if _is_file_spec(target):
            obj, resolved, digest = _load_file(target, attr, label)
            return obj, PluginRef(kind, spec, resolved, "file", digest)
        return _load_module(target, attr, label), PluginRef(kind, spec, spec, "module")
    found = entries(kind).get(spec)
    if not found:
        known = ", ".join(names(kind)) or "none"
        raise UsageError(
            f"unknown {kind} {spec!r}; registered: {known} (or give FILE.py:NAME or "
            "package.module:NAME)"
        )
    if len(found) > 1:
        who = "; ".join(f"{e.value} by {e.source}" for e in found)
        raise UsageError(f"{kind} {spec!r} is registered twice ({who}); give its import path")
    entry = found[0]
    modname, _, attr = entry.value.partition(":")
    obj = _load_module(modname.strip(), attr.strip(), label)
    return obj, PluginRef(kind, spec, entry.value, f"entry point of {entry.source}")


def accepts(factory, name: str) -> bool:
    """Whether a callable takes a keyword argument called `name` (explicitly, not **kwargs)."""
    try:
        params = inspect.signature(factory).parameters
    except (TypeError, ValueError):
        return False
    p = params.get(name)
    return p is not None and p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)


def call(factory, ref: PluginRef, kwargs: Mapping[str, Any]) -> Any:
    """``factory(**kwargs)``, any failure reported as one `UsageError` line naming the plugin.

    A `UsageError` the factory raises itself (its own validation) passes unchanged.
    """
    try:
        return factory(**kwargs)
    except UsageError:
        raise
    except Exception as exc:  # a factory refusing its parameters is bad input
        args = ", ".join(f"{k}={v!r}" for k, v in kwargs.items())
        raise UsageError(f"{ref.label}: {ref.spec}({args}) failed: {first_line(exc)}") from None


def check_methods(obj, ref: PluginRef, required: Iterable[str], what: str) -> None:
    """Raise a one-line UsageError naming the plugin unless `obj` has every required method."""
    required = tuple(required)
    missing = [m for m in required if not callable(getattr(obj, m, None))]
    if missing:
        raise UsageError(
            f"{ref.label} is not a {what}: it lacks {', '.join(missing)} "
            f"(a {what} needs {', '.join(required)})"
        )


def instantiate(kind: str, spec: str, params: Mapping[str, Any], required, what: str):
    """Load a plugin and build it: a class or factory is called with `params`.

    An object that already has the required methods is used as it is (it takes no params).

    Returns
    -------
    obj : the built object, checked for `required`
    ref : PluginRef
    """
    obj, ref = load(kind, spec)
    if all(callable(getattr(obj, m, None)) for m in required) and not inspect.isclass(obj):
        if params:
            raise UsageError(f"{ref.label} is a ready {what}: it takes no parameters")
    elif callable(obj):
        obj = call(obj, ref, params)
    check_methods(obj, ref, required, what)
    return obj, ref


def load_function(kind: str, spec: str) -> tuple[Any, PluginRef]:
    """A callable plugin (reward, verifier, correction): loaded and checked to be callable."""
    obj, ref = load(kind, spec)
    if not callable(obj):
        raise UsageError(f"{ref.label} is not callable (a {kind} is a function f(x, real))")
    return obj, ref


def parse_value(text: str) -> Any:
    """A parameter value from the command line: JSON (numbers, true, lists), inf, or a string.

    ``1,0`` (numbers separated by commas) is the list [1, 0].
    """
    text = text.strip()
    lower = text.lower()
    if lower in ("inf", "+inf", "-inf", "nan"):
        return float(lower)
    try:
        return json.loads(text)
    except ValueError:
        pass
    if "," in text:
        parts = [parse_value(p) for p in text.split(",")]
        if all(isinstance(p, (int, float)) and not isinstance(p, bool) for p in parts):
            return parts
    return text


def parse_params(items: Iterable[str] | None, what: str) -> dict[str, Any]:
    """``KEY=VALUE`` items as a dict (``-`` in keys read as ``_``); UsageError if malformed."""
    out: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not _KEY.fullmatch(key):
            raise UsageError(f"{what}: expected KEY=VALUE, got {item!r}")
        out[key] = parse_value(text)
    return out


def format_params(params: Mapping[str, Any]) -> list[str]:
    """Parameters as sorted ``KEY=VALUE`` strings that `parse_params` reads back to the same."""
    out = []
    for key in sorted(params):
        value = params[key]
        if isinstance(value, str):
            text = value if parse_value(value) == value else json.dumps(value)
        elif isinstance(value, float) and not math.isfinite(value):
            text = repr(value)
        else:
            text = json.dumps(value)
        out.append(f"{key}={text}")
    return out


__all__ = [
    "DIST",
    "GROUPS",
    "Entry",
    "PluginRef",
    "accepts",
    "call",
    "check_methods",
    "entries",
    "first_line",
    "format_params",
    "instantiate",
    "load",
    "load_function",
    "names",
    "parse_params",
    "parse_value",
]
