"""Which callables a config may name, decided without importing them.

A config names what it builds by ``_target_`` (and Hydra's logging config by
``class`` and ``()``); whoever wrote the config chooses the callable and its
arguments. lit_train allows the packages its own configs use
(:data:`DEFAULT_ALLOWED`) plus the user's ``allowed_targets``, and refuses,
whoever asks, the callables in :data:`DENIED` that run code or load pickles.
A target the user typed on the command line is the user's own choice and needs
no ``allowed_targets`` entry; the deny-list still applies to it.

A name is judged by what it is, not by how it is spelled:
``some_module.call`` that ``some_module`` imported as ``from subprocess import
call`` is ``subprocess.call``. :func:`spellings` follows such imports by reading
the modules' source, so nothing is imported (and torch stays unloaded).
"""

import ast
import fnmatch
import functools
import importlib.machinery
import importlib.util
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lit_train._compat import HYDRA_CORE_PLUGINS

#: The packages lit_train's configs, and the Hydra plugins they pick, name (``conf/``, Hydra's own groups, the
#: lit_optuna sweeper's samplers and pruners, Hydra's logging handlers), and torchmetrics, a dependency for the
#: user's metrics. A test composes every option of every group and holds each target against this list.
DEFAULT_ALLOWED = (
    "hydra", "hydra_plugins", "lightning", "lit_callbacks", "lit_train", "logging", "optuna", "pytorch_optimizer",
    "torch", "torchmetrics",
)

_RUNS_CODE = "can run arbitrary code"
_LOADS_PICKLES = "loads pickles, which can run arbitrary code"
_BUILDS_ANYTHING = "builds whatever classes its arguments name"
#: Callables refused wherever they come from, the command line included, by pattern (``*`` spans dots; the
#: first that matches is reported). A name is refused if it, or what it is another name for, matches.
DENIED = {
    # Python itself: running code, starting processes, importing by name.
    "builtins.*": _RUNS_CODE,
    "os.*": _RUNS_CODE,
    "posix.*": _RUNS_CODE,
    "nt.*": _RUNS_CODE,
    "sys.*": _RUNS_CODE,
    "subprocess.*": _RUNS_CODE,
    "multiprocessing.*": _RUNS_CODE,
    "pty.*": _RUNS_CODE,
    "importlib.*": _RUNS_CODE,
    "runpy.*": _RUNS_CODE,
    "code.*": _RUNS_CODE,
    "codeop.*": _RUNS_CODE,
    "ctypes.*": _RUNS_CODE,
    "timeit.*": _RUNS_CODE,
    "cProfile.*": _RUNS_CODE,
    "profile.*": _RUNS_CODE,
    "pdb.*": _RUNS_CODE,
    "bdb.*": _RUNS_CODE,
    "doctest.*": _RUNS_CODE,
    "pydoc.*": _RUNS_CODE,
    "webbrowser.*": _RUNS_CODE,
    "logging.config.*": _RUNS_CODE,
    # Pickles, whoever reads them.
    "pickle.*": _LOADS_PICKLES,
    "_pickle.*": _LOADS_PICKLES,
    "marshal.*": _LOADS_PICKLES,
    "shelve.*": _LOADS_PICKLES,
    "dill.*": _LOADS_PICKLES,
    "cloudpickle.*": _LOADS_PICKLES,
    "joblib.*": _LOADS_PICKLES,
    "numpy.load": _LOADS_PICKLES,
    "numpy.*.load": _LOADS_PICKLES,
    "pandas.read_pickle": _LOADS_PICKLES,
    "yaml.load": _RUNS_CODE,
    "yaml.unsafe_load": _RUNS_CODE,
    "yaml.full_load": _RUNS_CODE,
    # Torch: loading, downloading and compiling code, launching processes.
    "torch.load": _LOADS_PICKLES,
    "torch.serialization.*": _LOADS_PICKLES,
    "torch.hub.*": _RUNS_CODE,
    "torch.utils.model_zoo.*": _RUNS_CODE,
    "torch.package.*": _RUNS_CODE,
    "torch.jit.load": _RUNS_CODE,
    "torch.fx.*": _RUNS_CODE,
    "torch.ops.*": _RUNS_CODE,
    "torch.classes.*": _RUNS_CODE,
    "torch.distributed.run.*": _RUNS_CODE,
    "torch.distributed.launch.*": _RUNS_CODE,
    "torch.distributed.launcher.*": _RUNS_CODE,
    "torch.distributed.elastic.*": _RUNS_CODE,
    "torch.multiprocessing.*": _RUNS_CODE,
    "torch.utils.cpp_extension.*": _RUNS_CODE,
    "torch.utils.collect_env.*": _RUNS_CODE,
    "torch.utils.benchmark.*": _RUNS_CODE,
    "torch.*.load": _LOADS_PICKLES,
    # Lightning: checkpoints loaded with torch.load, command lines that build anything.
    "lightning.fabric.utilities.cloud_io.*": _LOADS_PICKLES,
    "lightning.fabric.utilities.load.*": _LOADS_PICKLES,
    "lightning.pytorch.core.saving.*": _LOADS_PICKLES,
    "lightning.pytorch.utilities.upgrade_checkpoint.*": _LOADS_PICKLES,
    "lightning.pytorch.cli.*": _BUILDS_ANYTHING,
    "lightning.fabric.cli.*": _RUNS_CODE,
    "lightning.*.load": _LOADS_PICKLES,
    "*.load_from_checkpoint": _LOADS_PICKLES,
    "*.load_checkpoint": _LOADS_PICKLES,
}
#: Packages whose private names (a part starting with ``_``) are refused as written: their public API is what
#: lit_train trusts. Hydra's own plugins (:data:`~lit_train._compat.HYDRA_CORE_PLUGINS`) are the exception.
_PUBLIC_ONLY = (
    "hydra", "lightning", "lit_callbacks", "lit_train", "optuna", "pytorch_optimizer", "torch", "torchmetrics",
)
_PUBLIC_EXCEPTIONS = (HYDRA_CORE_PLUGINS,)
#: Targets whose ``path`` argument names another callable, which they return: that name is a target too.
LOCATORS = frozenset({"hydra.utils.get_class", "hydra.utils.get_method", "hydra.utils.get_object",
                      "hydra.utils.get_static_method"})
#: An ``allowed_targets`` entry: a package, module or class name, with or without a trailing dot.
_ENTRY = re.compile(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*\.?")
#: How far :func:`spellings` follows imports (a chain of re-exports is rarely longer than three).
_MAX_STEPS = 32


def under(name: str, prefix: str) -> bool:
    """Whether ``name`` is ``prefix`` or inside it: ``my_pkg`` holds ``my_pkg.X`` but not ``my_pkg2.X``."""
    prefix = prefix.rstrip(".")
    return name == prefix or name.startswith(prefix + ".")


def denial(name: str) -> str | None:
    """The :data:`DENIED` pattern that ``name`` matches, if any."""
    for pattern in DENIED:
        if fnmatch.fnmatchcase(name, pattern) or fnmatch.fnmatchcase(name, pattern + ".*") or (
                pattern.endswith(".*") and name == pattern[:-2]):
            return pattern
    return None


def entry_problem(entry: object) -> str | None:
    """Why ``entry`` cannot be an ``allowed_targets`` entry, or ``None``."""
    if isinstance(entry, str) and _ENTRY.fullmatch(entry):
        return None
    return f"each entry must be a package, module or class name such as my_pkg (or my_pkg.), got {entry!r}"


# Reading modules without importing them.

def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of the top-level module ``name`` (found, not imported)."""
    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):  # ValueError: a loaded module without a spec, such as __main__
        return None


def _module_of(parts: list[str]) -> tuple[str, str | None, bool, int] | None:
    """The longest leading part of ``parts`` that is a module on disk: its name, source file, whether it is a
    package, and how many parts it took; ``None`` if not even the first part is."""
    spec = _find_spec(parts[0])
    if spec is None:
        return None
    origin, locations, taken = spec.origin, spec.submodule_search_locations, 1
    while taken < len(parts) and locations is not None:
        sub = importlib.machinery.PathFinder.find_spec(".".join(parts[:taken + 1]), list(locations))
        if sub is None:
            break
        origin, locations, taken = sub.origin, sub.submodule_search_locations, taken + 1
    source = origin if origin and origin.endswith(".py") else None
    return ".".join(parts[:taken]), source, locations is not None, taken


def _dotted(node: ast.expr) -> str | None:
    """``a.b.c`` for an expression that is only names and attributes, else ``None``."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute) and (base := _dotted(node.value)):
        return f"{base}.{node.attr}"
    return None


@functools.lru_cache(maxsize=256)
def _bindings(source: str, module: str, package: bool) -> tuple[dict[str, tuple[str | None, ...]], tuple[str, ...]]:
    """What each top-level name of a module's source is bound to: the dotted name it imports or copies, or
    ``None`` for a definition of its own; and the modules it star-imports."""
    try:
        tree = ast.parse(Path(source).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return {}, ()
    names: dict[str, list[str | None]] = {}
    stars: list[str] = []
    here = module if package else module.rpartition(".")[0]

    def bind(name: str, to: str | None) -> None:
        names.setdefault(name, []).append(to)

    def visit(body: list[ast.stmt]) -> None:
        for stmt in body:
            if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bind(stmt.name, None)
            elif isinstance(stmt, ast.Import):
                for alias in stmt.names:
                    if alias.asname:
                        bind(alias.asname, alias.name)
                    else:
                        top = alias.name.partition(".")[0]
                        bind(top, top)
            elif isinstance(stmt, ast.ImportFrom):
                base = stmt.module or ""
                if stmt.level:
                    parent = here.rsplit(".", stmt.level - 1)[0] if stmt.level > 1 else here
                    base = f"{parent}.{base}" if base else parent
                for alias in stmt.names:
                    if alias.name == "*":
                        stars.append(base)
                    else:
                        bind(alias.asname or alias.name, f"{base}.{alias.name}")
            elif isinstance(stmt, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
                targets = stmt.targets if isinstance(stmt, ast.Assign) else [stmt.target]
                copied = _dotted(stmt.value) if isinstance(stmt, ast.Assign) and stmt.value is not None else None
                for target in targets:
                    for node in ast.walk(target):
                        if isinstance(node, ast.Name):
                            bind(node.id, f"{module}.{copied}" if copied and isinstance(target, ast.Name) else None)
            else:
                for field in ("body", "orelse", "finalbody"):
                    visit(getattr(stmt, field, []) or [])
                for handler in getattr(stmt, "handlers", []) or []:
                    visit(handler.body)
                for case in getattr(stmt, "cases", []) or []:
                    visit(case.body)

    visit(tree.body)
    return {name: tuple(to) for name, to in names.items()}, tuple(stars)


def _aliases(name: str) -> tuple[list[str], bool]:
    """What ``name`` is another spelling of (one step), and whether it may also be defined where it is named."""
    parts = name.split(".")
    found = _module_of(parts)
    if found is None or found[1] is None or found[3] == len(parts):
        return [], True
    module, source, package, taken = found
    attribute, rest = parts[taken], parts[taken + 1:]
    names, stars = _bindings(source, module, package)
    bound = names.get(attribute)
    if bound is None:
        # Maybe from a star import; a module that defines its names at run time keeps the name as written.
        for star in stars:
            star_found = _module_of(star.split("."))
            if star_found and star_found[1] and attribute in _bindings(star_found[1], star_found[0], star_found[2])[0]:
                return [".".join([star, attribute, *rest])], False
        return [], True
    # A copy of a module-local name (``load = _load``) is that name in the same module.
    aliases = [".".join([to, *rest]) for to in bound if to is not None and to != name]
    return aliases, None in bound or not aliases


def spellings(target: str) -> tuple[list[str], list[str]]:
    """Every name ``target`` goes by on the way to where it is defined (``target`` first), and the names where
    it ends (defined, or not followed further). Reads source files; imports nothing.

    Example::

        >>> spellings("torch.optim.AdamW")[1]
        ['torch.optim.adamw.AdamW']
    """
    seen, ends, todo = [target], [], [target]
    while todo and len(seen) < _MAX_STEPS:
        name = todo.pop(0)
        aliases, defined_here = _aliases(name)
        if defined_here:
            ends.append(name)
        for alias in aliases:
            if alias not in seen:
                seen.append(alias)
                todo.append(alias)
    return seen, ends or [target]


# Where a config names callables.

@dataclass(frozen=True)
class Site:
    """A place in a config that names a callable: its key (``model._target_``) and the name, or why it cannot
    be checked."""

    key: str
    target: str | None = None
    problem: str | None = None


def _plain_reference(text: str) -> bool:
    return re.fullmatch(r"\$\{[\w.\[\]]+\}", text.strip()) is not None


def _holds_target(node: object, keys: tuple[str, ...]) -> bool:
    if isinstance(node, dict):
        return any(key in keys or _holds_target(value, keys) for key, value in node.items())
    if isinstance(node, list):
        return any(_holds_target(item, keys) for item in node)
    return False


def sites(node: DictConfig | ListConfig, path: str = "", keys: tuple[str, ...] = ("_target_",)) -> Iterator[Site]:
    """Every :class:`Site` under ``node``, each key as Hydra or logging would read it.

    A name must be written out: an interpolation can resolve to one callable now and another when the run
    builds it (``${oc.env:...}`` after ``hydra.job.env_set``), so an interpolated ``_target_``, or a node with a
    ``_target_`` that an interpolation builds, is refused. A plain reference to another node (``${callbacks.a}``)
    is fine: that node is checked where it is. The ``path`` of a :data:`LOCATORS` target is a site too.
    """
    items = node.keys() if isinstance(node, DictConfig) else range(len(node))
    for key in items:
        if isinstance(node, DictConfig):
            child = f"{path}.{key}" if path else str(key)
        else:
            child = f"{path}[{key}]"
        interpolated = OmegaConf.is_interpolation(node, key)
        if interpolated:
            raw = str(OmegaConf.to_container(node, resolve=False)[key])
            if key in keys:
                yield Site(child, problem=f"must be written out, not an interpolation, got {raw!r} (what it "
                                          "resolves to can change before the run builds it)")
                continue
            try:
                value = node[key]
            except OmegaConfBaseException:
                continue  # reported by validate, or resolvable only once the run starts (Hydra's runtime values)
            if (isinstance(value, (DictConfig, ListConfig)) and not _plain_reference(raw)
                    and _holds_target(OmegaConf.to_container(value, resolve=False), keys)):
                yield Site(child, problem=f"a config with a _target_ must be written out, not built by an "
                                          f"interpolation, got {raw!r}")
            continue
        try:
            value = node[key]
        except OmegaConfBaseException:
            continue
        if key in keys and isinstance(value, str):
            yield Site(child, value)
            if value in LOCATORS and isinstance(node, DictConfig) and "path" in node:
                if OmegaConf.is_interpolation(node, "path"):
                    yield Site(f"{path}.path" if path else "path", problem="must be written out, not an interpolation")
                elif isinstance(node.path, str):
                    yield Site(f"{path}.path" if path else "path", node.path)
        elif isinstance(value, (DictConfig, ListConfig)):
            yield from sites(value, child, keys)


# Who asked for a target.

def _normal(key: str) -> str:
    return re.sub(r"\[(\d+)\]", r".\1", key.lstrip("+~"))


def _typed_values(key: str, value: object) -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield key, value
    elif isinstance(value, dict):
        for sub, item in value.items():
            yield from _typed_values(f"{key}.{sub}", item)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _typed_values(f"{key}.{i}", item)


def typed(command_line: Iterable[str]) -> frozenset[tuple[str, str]]:
    """Each ``(key, text)`` that ``command_line``'s overrides set (every value of a sweep, the keys inside a
    mapping): what the user wrote, not a config file.

    Example::

        >>> sorted(typed(["model._target_=my_pkg.A,my_pkg.B", "+callbacks.x={_target_: my_pkg.C}", "seed=1"]))
        [('callbacks.x._target_', 'my_pkg.C'), ('model._target_', 'my_pkg.A'), ('model._target_', 'my_pkg.B')]
    """
    parser = OverridesParser.create()
    found: set[tuple[str, str]] = set()
    for line in command_line:
        try:
            (override,) = parser.parse_overrides([line])
        except HydraException:
            continue  # reported as a bad override
        if override.is_delete():
            continue
        if override.is_sweep_override():
            try:
                values = list(override.sweep_iterator())
            except HydraException:
                continue  # a range only a sweeper samples: not a name
        else:
            values = [override.value()]
        for value in values:
            found.update((_normal(k), v) for k, v in _typed_values(override.key_or_group, value))
    return frozenset(found)


def sets_key(command_line: Iterable[str], key: str) -> bool:
    """Whether ``command_line`` sets ``key`` (``key=...``, ``+key=...``, ``++key=...``)."""
    return any(line.lstrip("+").partition("=")[0] == key for line in command_line)


@dataclass(frozen=True)
class TargetPolicy:
    """The allow-list (lit_train's packages plus ``additions``), the deny-list, and what the user typed."""

    additions: tuple[str, ...] = ()
    command_line: frozenset[tuple[str, str]] = frozenset()

    def allowed(self, name: str) -> bool:
        return any(under(name, prefix) for prefix in (*DEFAULT_ALLOWED, *self.additions))

    def _hint(self, name: str) -> str:
        added = [*self.additions, name.partition(".")[0]]
        return f"to allow it add allowed_targets=[{','.join(dict.fromkeys(added))}]"

    def problem(self, site: Site) -> str | None:
        """The one line refusing ``site``, or ``None`` when it may be built."""
        if site.problem is not None:
            return f"{site.key}: {site.problem}"
        target = site.target
        if not re.fullmatch(r"[A-Za-z_][\w.]*", target or ""):
            return f"{site.key}: {target!r} is not a dotted name of a callable"
        top = target.partition(".")[0]
        if special := next((part for part in target.split(".") if part.startswith("__")), None):
            return f"{site.key}: {target!r} is refused: {special!r} is a special attribute, not a callable to build"
        if any(under(target, package) for package in _PUBLIC_ONLY) and not any(
                under(target, exception) for exception in _PUBLIC_EXCEPTIONS):
            private = next((part for part in target.split(".")[1:] if part.startswith("_")), None)
            if private is not None:
                return (f"{site.key}: {target!r} is refused: {private!r} is private to {top}; only its public names "
                        "are allowed")
        names, ends = spellings(target)
        for name in names:
            if pattern := denial(name):
                which = "it" if name == target else f"it is {name}, which"
                return f"{site.key}: {target!r} is refused: {which} {DENIED[pattern]} (denied: {pattern})"
        if _find_spec(top) is None:
            return f"{site.key}: cannot import {target!r}: no module named {top!r}"
        if (_normal(site.key), target) in self.command_line:
            return None
        for name in dict.fromkeys([target, *ends]):
            if not self.allowed(name):
                via = "" if name == target else f" (it is {name})"
                return f"{site.key}: {target!r} is not an allowed target{via}; {self._hint(name)}"
        return None

    def problems(self, found: Iterable[Site]) -> list[str]:
        return [problem for site in found if (problem := self.problem(site)) is not None]
