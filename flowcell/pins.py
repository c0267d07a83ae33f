"""Which installed distributions a flow's code imports, and at which versions (its pins).

The flow's code (``%%flow`` module code and ``%%step`` bodies) is read statically
with ``ast``: every ``import x`` / ``from x import y`` names a top-level module,
which :func:`importlib.metadata.packages_distributions` maps to the distributions
that provide it (``yaml`` -> ``PyYAML``, ``sklearn`` -> ``scikit-learn``).  Standard
library modules, relative imports and flowcell itself (the export imports metaflow
instead) are not distributions and are left out; so is a module no installed
distribution provides (a helper file beside the notebook).

The mapping scans every installed distribution's file list (about 0.15 s), so it
is computed once per process and recomputed only when a ``sys.path`` folder
changes (a ``pip install`` in the kernel touches ``site-packages``).  After that,
:func:`distributions_for` costs a dictionary look-up per module: cheap enough for
the per-task fingerprints of reuse (SPEC section 10).

Exported pins live in ``flow.requirements.txt`` beside ``flow.py`` (the default)
or in Metaflow's own ``@pypi_base`` / ``@conda_base`` decorators; :func:`read_pins`
reads either back so :func:`drift` can compare them with the kernel.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata as metadata
import json
import os
import platform
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import PinError
from .model import FlowSource

if TYPE_CHECKING:
    from .store.metadata import MetadataStore

#: Modules that never become pins: flowcell is rewritten to metaflow on export.
_NOT_PINNED = frozenset({"flowcell", "__future__", "__main__"})
#: The export itself imports metaflow, so the requirements file names it too; inside
#: ``@pypi_base``/``@conda_base`` Metaflow provides itself and it is left out.
METAFLOW = "metaflow"
ENV_CHOICES = ("requirements", "pypi", "conda", "none")

_lock = threading.Lock()
_cache: dict[str, object] = {}


def normalize(name: str) -> str:
    """A distribution name in PEP 503 normal form, for comparing ``PyYAML`` with ``pyyaml``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def imported_modules(sources: Iterable[str]) -> set[str]:
    """Dotted names of the absolute imports in ``sources`` (code that does not parse is skipped)."""
    found: set[str] = set()
    for source in sources:
        try:
            tree = ast.parse(source)
        except SyntaxError:
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
    return found


def flow_modules(flow: FlowSource) -> set[str]:
    """Dotted names the flow's module code and step bodies import."""
    return imported_modules([c.source for c in flow.code_cells] + [s.body for s in flow.steps.values()])


def _path_key() -> tuple[tuple[str, int], ...]:
    """What invalidates the module -> distribution map: the ``sys.path`` folders' mtimes."""
    key = []
    for entry in sys.path:
        try:
            key.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            continue
    return tuple(key)


def _cache_file() -> Path:
    """Per interpreter: ``$XDG_CACHE_HOME/flowcell/distributions-<interpreter>.json``."""
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    tag = hashlib.sha256(f"{sys.prefix}|{sys.version}".encode()).hexdigest()[:16]
    return base / "flowcell" / f"distributions-{tag}.json"


def _load_disk_cache(key: list[list[Any]]) -> tuple[dict[str, list[str]], dict[str, str | None]] | None:
    try:
        data = json.loads(_cache_file().read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("key") != key or not isinstance(data.get("map"), dict):
        return None
    return data["map"], dict(data.get("versions") or {})


def _save_disk_cache() -> None:
    """Best effort: a read-only home only means the next process scans again."""
    target = _cache_file()
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"key": [list(k) for k in _cache["key"]],  # type: ignore[attr-defined]
                                   "map": dict(_cache["map"]), "versions": _cache["versions"]}))  # type: ignore[call-overload]
        tmp.replace(target)
    except OSError:
        pass


def module_distributions() -> Mapping[str, list[str]]:
    """Top-level module -> names of the installed distributions providing it (cached).

    Kept in memory and on disk with the versions looked up so far (the scan costs
    ~0.15 s; loading the cache ~1 ms), keyed by the ``sys.path`` folders' mtimes,
    which an install or uninstall changes.
    """
    key = _path_key()
    with _lock:
        if _cache.get("key") != key:
            found = _load_disk_cache([list(k) for k in key])
            _cache["key"] = key
            if found is None:
                _cache["map"], _cache["versions"] = metadata.packages_distributions(), {}
                _save_disk_cache()
            else:
                _cache["map"], _cache["versions"] = found
        return _cache["map"]  # type: ignore[return-value]


def installed_version(distribution: str) -> str | None:
    """The version of ``distribution`` installed in this interpreter, or None."""
    module_distributions()  # keeps the version cache in step with sys.path
    versions: dict[str, str | None] = _cache["versions"]  # type: ignore[assignment]
    key = normalize(distribution)
    if key not in versions:
        try:
            versions[key] = metadata.version(distribution)
        except metadata.PackageNotFoundError:
            versions[key] = None
        with _lock:
            _save_disk_cache()  # a new distribution looked up: the next process finds it
    return versions[key]


def _owns(distribution: str, dotted: str) -> bool:
    """Whether ``distribution`` ships the module ``dotted`` (for namespace packages such as ``google``)."""
    prefix = dotted.replace(".", "/")
    try:
        files = metadata.distribution(distribution).files or []
    except metadata.PackageNotFoundError:
        return False
    return any(str(f).startswith((prefix + "/", prefix + ".")) for f in files)


def distributions_for(modules: Iterable[str]) -> dict[str, str]:
    """Installed distribution -> version for the given (dotted) module names.

    Standard library and flowcell modules and modules no distribution provides are
    skipped.  A top-level name several distributions share (a namespace package) is
    narrowed to those shipping the imported submodule.
    """
    mapping = module_distributions()
    stdlib = sys.stdlib_module_names
    pins: dict[str, str] = {}
    for dotted in sorted(set(modules)):
        top = dotted.split(".")[0]
        if top in stdlib or top in _NOT_PINNED:
            continue
        names = list(dict.fromkeys(mapping.get(top, [])))
        if len(names) > 1 and "." in dotted:
            names = [n for n in names if _owns(n, dotted)] or names
        for name in names:
            version = installed_version(name)
            if version is not None:
                pins[name] = version
    return dict(sorted(pins.items(), key=lambda kv: normalize(kv[0])))


@dataclass(frozen=True)
class Environment:
    """What a flow's code needs: the Python version and the pinned distributions."""

    python: str
    packages: dict[str, str]

    def to_json(self) -> dict[str, object]:
        return {"python": self.python, "packages": dict(self.packages)}


def flow_environment(flow: FlowSource, with_metaflow: bool = True) -> Environment:
    """The kernel's versions of what ``flow`` imports (plus metaflow, which the export imports)."""
    modules = flow_modules(flow)
    if with_metaflow:
        modules.add(METAFLOW)
    return Environment(platform.python_version(), distributions_for(modules))


# -- writing and reading pins ---------------------------------------------------


def requirements_path(flow_file: str | Path) -> Path:
    """``flow.py`` -> ``flow.requirements.txt`` in the same folder."""
    p = Path(flow_file)
    return p.with_name(f"{p.stem}.requirements.txt")


def requirements_text(env: Environment, flow_name: str) -> str:
    """A pip requirements file for ``env`` (comments say where it came from)."""
    lines = [f"# Distributions imported by {flow_name}'s steps, at the versions installed when it was exported.",
             f"# Python {env.python}. Install with: pip install -r <this file>",
             *(f"{name}=={version}" for name, version in env.packages.items())]
    return "\n".join(lines) + "\n"


def base_decorator(env: Environment, kind: str) -> str:
    """``@pypi_base(python=..., packages={...})`` or ``@conda_base(...)`` source for ``env``."""
    packages = {k: v for k, v in env.packages.items() if normalize(k) != METAFLOW}
    return f"@{kind}_base(python={env.python!r}, packages={packages!r})"


def _decorator_pins(flow_path: Path) -> tuple[dict[str, str], str] | None:
    """``packages=`` of the flow class's ``@pypi_base`` / ``@conda_base``, if it has one."""
    try:
        tree = ast.parse(flow_path.read_text(), str(flow_path))
    except SyntaxError as exc:
        raise PinError(f"{flow_path}, line {exc.lineno}: {exc.msg}; cannot read its pins.") from None
    for node in ast.walk(tree):
        if not isinstance(node, ast.ClassDef):
            continue
        for deco in node.decorator_list:
            kind = deco.func.id if isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name) else None
            if kind not in ("pypi_base", "conda_base"):
                continue
            assert isinstance(deco, ast.Call)
            for kw in deco.keywords:
                if kw.arg != "packages":
                    continue
                try:
                    value = ast.literal_eval(kw.value)
                except ValueError:
                    raise PinError(f"{flow_path}: the packages= of @{kind} is not a literal dict.") from None
                return {str(k): str(v) for k, v in value.items()}, f"{flow_path.name} (@{kind})"
    return None


def read_pins(flow_file: str | Path) -> tuple[dict[str, str], str]:
    """The pins an existing export records, and where they were read from.

    The flow class's ``@pypi_base`` / ``@conda_base`` ``packages=`` win (they are what
    Metaflow installs); otherwise ``flow.requirements.txt`` beside the file.
    """
    flow_path = Path(flow_file)
    if not flow_path.is_file():
        raise PinError(f"{flow_path} does not exist: export the flow first, then check it.")
    found = _decorator_pins(flow_path)
    if found is not None:
        return found
    req = requirements_path(flow_path)
    if not req.is_file():
        raise PinError(
            f"{flow_path} records no pins (no {req.name} beside it and no @pypi_base/@conda_base): "
            "export it again without --env none."
        )
    pins: dict[str, str] = {}
    for number, raw in enumerate(req.read_text().splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        name, sep, version = line.partition("==")
        if not sep or not name.strip() or not version.strip():
            raise PinError(f"{req}, line {number}: {raw.strip()!r} is not a 'name==version' pin.")
        pins[name.strip()] = version.strip()
    return pins, req.name


def drift(pins: Mapping[str, str], imported: Mapping[str, str] | None = None) -> list[str]:
    """One line per package whose installed version differs from its pin.

    ``imported`` (distribution -> installed version of what the flow imports now)
    adds a line for each distribution the flow imports but the export does not pin.
    """
    lines = []
    for name, pinned in sorted(pins.items(), key=lambda kv: normalize(kv[0])):
        have = installed_version(name)
        if have is None:
            lines.append(f"{name}: pinned {pinned}, not installed")
        elif have != pinned:
            lines.append(f"{name}: pinned {pinned}, installed {have}")
    pinned_names = {normalize(n) for n in pins}
    for name, version in sorted((imported or {}).items(), key=lambda kv: normalize(kv[0])):
        if normalize(name) not in pinned_names and normalize(name) != METAFLOW:
            lines.append(f"{name}: imported by the steps, not pinned (installed {version})")
    return lines


def check_export(flow: FlowSource, flow_file: str | Path) -> tuple[list[str], str]:
    """Drift lines between an existing export's pins and this interpreter, and the report text."""
    pins, source = read_pins(flow_file)
    lines = drift(pins, distributions_for(flow_modules(flow)))
    if not lines:
        return [], f"No drift: the {len(pins)} pins in {source} match the installed versions."
    head = f"{len(lines)} package{'' if len(lines) == 1 else 's'} drifted from {source}:"
    return lines, "\n".join([head, *(f"  {line}" for line in lines)])


# -- what a run's tasks used ------------------------------------------------------

_RUN_ENVIRONMENTS = """CREATE TABLE IF NOT EXISTS run_environments (
    flow TEXT NOT NULL, run_number INTEGER NOT NULL, environment TEXT NOT NULL,
    PRIMARY KEY (flow, run_number))"""


def record_run_environment(meta: MetadataStore, flow: str, run_number: int, env: Environment) -> None:
    """Store the Python and distribution versions a run's tasks use, with the run."""
    with meta.transaction() as cur:
        cur.execute(_RUN_ENVIRONMENTS)
        cur.execute("INSERT OR REPLACE INTO run_environments VALUES (?, ?, ?)",
                    (flow, run_number, json.dumps(env.to_json(), sort_keys=True)))


def run_environment(meta: MetadataStore, flow: str, run_number: int) -> Environment | None:
    """What :func:`record_run_environment` stored for a run (None for runs recorded before it existed).

    Read on its own read-only connection: reading must work on a read-only store.
    """
    import sqlite3

    try:
        conn = sqlite3.connect(f"{meta.path.as_uri()}?mode=ro", uri=True)
        try:
            row = conn.execute("SELECT environment FROM run_environments WHERE flow = ? AND run_number = ?",
                               (flow, run_number)).fetchone()
        finally:
            conn.close()
    except sqlite3.OperationalError:  # no such table yet: no run of this store recorded one
        return None
    if row is None:
        return None
    data = json.loads(row[0])
    return Environment(str(data.get("python", "")), {str(k): str(v) for k, v in data.get("packages", {}).items()})
