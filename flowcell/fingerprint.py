"""A task's fingerprint: what its result depends on (issue 14, SPEC section 10).

Two halves.  The *code* half is static and the same for every task of a step:
the step's body normalised with ``ast`` (whitespace, comments and the docstring do
not count), one digest per top-level statement of the ``%%flow`` module code
(named by what it defines, so a change reads "module code changed (`def clean`)"),
the step's and the flow's decorators, the join argument and the Python version.
:func:`code_components` computes it in the parent from the flow's source, cached
per source text, so a warm run pays a dictionary look-up per step.

The *data* half differs per task and is reported by the task itself: the names it
read from ``self`` (inputs are hydrated lazily, so the child knows exactly which
artifacts and parameters it touched; listing or merging them reads them all), per
join input the names it read, the foreach items of its splits (a per-item digest
recorded by the foreach parent), and the distributions of the modules it loaded.
:func:`make_record` turns both into the JSON stored per executed task in the
``task_fingerprints`` table (see ``store/fingerprints.py``).

Record (``version`` 1), as agreed in REUSE-DESIGN.md:

``python``, ``step_norm``, ``step_source`` (address of the raw cell text; the text is in the
store's ``fingerprint_sources``, see ``store.fingerprints.source_text``),
``module`` ({statement name: digest}), ``module_source`` (address, likewise),
``decorators`` (normalised sources, step then flow decorators), ``join``,
``reads`` ({name: content address or null when absent}), ``join_reads`` (one such
dict per join input, or null), ``read_all``, ``params`` ({name: short repr} of the
parameters read), ``split`` ([{step, index, item}] per foreach frame),
``distributions`` ({distribution: version}), ``written``, ``deleted``, ``no_reuse``.
"""

from __future__ import annotations

import ast
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import PARAMETER_KINDS, FlowSource, StepCell
from .pins import imported_modules
from .store.blobs import digest

VERSION = 1
#: Bound on each source cache: a notebook session edits cells, it does not grow without end.
_CACHE_MAX = 512
_PYTHON = platform.python_version()


def _h(text: str) -> str:
    return digest(text.encode("utf-8", errors="surrogatepass"))


def _dump(node: ast.AST) -> str:
    return ast.dump(node, annotate_fields=False, include_attributes=False)


def _strip_docstring(body: list[ast.stmt]) -> list[ast.stmt]:
    first = body[0] if body else None
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
        return body[1:]
    return body


_norm_cache: dict[str, str] = {}


def normalized_digest(body: str) -> str:
    """Digest of a step body read with ``ast``: layout, comments and a leading docstring do not count.

    A body that does not parse is digested as written (its task fails anyway).
    """
    found = _norm_cache.get(body)
    if found is None:
        try:
            tree = ast.parse(body)
            found = _h(_dump(ast.Module(body=_strip_docstring(tree.body), type_ignores=[])))
        except SyntaxError:
            found = _h(body)
        if len(_norm_cache) >= _CACHE_MAX:
            _norm_cache.clear()
        _norm_cache[body] = found
    return found


def _is_parameter(node: ast.stmt) -> bool:
    """``alpha = Parameter(...)``: its value is a read of the task, not module code."""
    if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
        return False
    func = node.value.func
    kind = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
    return kind in PARAMETER_KINDS


def statement_name(node: ast.stmt, number: int) -> str:
    """What a top-level statement defines, for messages: ``def clean``, ``class Model``, ``X``."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        return f"def {node.name}"
    if isinstance(node, ast.ClassDef):
        return f"class {node.name}"
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return ast.unparse(node)
    targets: list[ast.expr] = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    names = [ast.unparse(t) for t in targets]
    if names and all(n.replace(", ", "").replace("_", "a").isalnum() for n in names):
        return " = ".join(names)
    return f"stmt {number}"


_module_cache: dict[tuple[str, ...], dict[str, str]] = {}


def module_digests(sources: tuple[str, ...]) -> dict[str, str]:
    """``{statement name: digest}`` for the module code of the ``%%flow`` cells, parameters left out."""
    found = _module_cache.get(sources)
    if found is not None:
        return found
    out: dict[str, str] = {}
    number = 0
    for source in sources:
        try:
            body = ast.parse(source).body
        except SyntaxError:
            number += 1
            out[f"stmt {number}"] = _h(source)
            continue
        for node in body:
            number += 1
            if _is_parameter(node):
                continue
            name = statement_name(node, number)
            key, n = name, 2
            while key in out:
                key, n = f"{name} ({n})", n + 1
            out[key] = _h(_dump(node))
    if len(_module_cache) >= _CACHE_MAX:
        _module_cache.clear()
    _module_cache[sources] = out
    return out


@dataclass(frozen=True)
class CodeComponents:
    """The static half of a step's fingerprint; ``code`` digests all of it."""

    step: str
    python: str
    step_norm: str
    step_source: str
    module: Mapping[str, str]
    module_source: str
    decorators: tuple[str, ...]
    join: str | None
    no_reuse: bool
    code: str
    #: Modules the step's and the module code's import statements name (for the distributions).
    imports: frozenset[str] = frozenset()
    #: Addresses (blake3) of ``step_source`` and ``module_source``: what the record's fields hold.
    step_address: str = ""
    module_address: str = ""


_components: dict[tuple[Any, ...], CodeComponents] = {}


def code_components(flow: FlowSource, step: str) -> CodeComponents:
    """The code half of ``step``'s fingerprint in ``flow`` as it is now (cached per source)."""
    cell: StepCell = flow.steps[step]
    sources = tuple(c.source for c in flow.code_cells)
    decorators = tuple(d.source for d in cell.decorators) + tuple(flow.flow_decorators)
    no_reuse = cell.no_reuse
    key = (step, cell.body, cell.join_arg, decorators, sources, no_reuse)
    found = _components.get(key)
    if found is not None:
        return found
    step_norm = normalized_digest(cell.body)
    module = module_digests(sources)
    code = _h(json.dumps([VERSION, _PYTHON, step_norm, sorted(module.items()), decorators, cell.join_arg]))
    module_source = "\n".join(sources)
    found = CodeComponents(step=step, python=_PYTHON, step_norm=step_norm, step_source=cell.body, module=module,
                           module_source=module_source, decorators=decorators, join=cell.join_arg,
                           no_reuse=no_reuse, code=code, imports=frozenset(imported_modules([*sources, cell.body])),
                           step_address=_h(cell.body), module_address=_h(module_source))
    if len(_components) >= _CACHE_MAX:
        _components.clear()
    _components[key] = found
    return found


def split_key(split: list[dict[str, Any]]) -> str:
    """The foreach frames of a task as one string (an indexed column of the lookup)."""
    return "/".join(f"{f['step']}:{f['index']}:{f.get('item') or ''}" for f in split)


def addresses(names: list[str] | set[str], refs: Mapping[str, Mapping[str, Any]]) -> dict[str, str | None]:
    """``{name: content address}`` of the names read (None: the name was looked for and absent)."""
    out: dict[str, str | None] = {}
    for name in sorted(names):
        ref = refs.get(name)
        out[name] = ref.get("address") if ref is not None else None
    return out


def short_repr(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 1] + "…"


def make_record(
    comp: CodeComponents,
    reads: dict[str, str | None],
    join_reads: list[dict[str, str | None]] | None,
    read_all: bool,
    params: dict[str, str],
    split: list[dict[str, Any]],
    distributions: dict[str, str],
    written: list[str],
    deleted: list[str],
) -> dict[str, Any]:
    """The JSON stored with one executed task."""
    return {
        "version": VERSION, "python": comp.python, "step_norm": comp.step_norm,
        "step_source": comp.step_address, "module": dict(comp.module), "module_source": comp.module_address,
        "decorators": list(comp.decorators), "join": comp.join, "reads": reads, "join_reads": join_reads,
        "read_all": read_all, "params": params, "split": split, "distributions": distributions,
        "written": sorted(written), "deleted": sorted(deleted), "no_reuse": comp.no_reuse,
    }


def record_digest(code: str, record: Mapping[str, Any]) -> str:
    """Digest of everything a reuse compares: code, reads, split items, distributions."""
    return _h(json.dumps([code, record.get("reads"), record.get("join_reads"), record.get("read_all"),
                          record.get("split"), record.get("distributions")], sort_keys=True))
