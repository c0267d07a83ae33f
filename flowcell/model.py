"""The flow as plain data: cells, steps, decorators and parameters.

Everything here is read statically (``ast`` and ``tokenize``), never executed, and
imports nothing from IPython, so the runtime, the exporter and the CLI share it.
"""

from __future__ import annotations

import ast
import io
import json
import keyword
import re
import tokenize
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import FlowSyntaxError, InvalidNameError

#: Decorators flowcell honours when it runs a step; every other one is recorded and exported.
LOCAL_DECORATORS = frozenset({"retry", "catch", "timeout", "card", "environment"})
#: Metaflow 2.19's step decorators (``metaflow.plugins``), importable from ``metaflow``.
METAFLOW_STEP_DECORATORS = frozenset({
    "catch", "timeout", "environment", "secrets", "parallel", "retry", "resources", "batch", "kubernetes",
    "card", "pypi", "conda", "uv",
})
METAFLOW_FLOW_DECORATORS = frozenset({
    "schedule", "project", "trigger", "trigger_on_finish", "pypi_base", "conda_base", "exit_hook",
})
PARAMETER_KINDS = ("Parameter", "IncludeFile", "Config")
#: Decorator arguments flowcell acts on before a task runs: these must be literals.
LOCAL_LITERAL_ARGS: dict[str, frozenset[str]] = {
    "retry": frozenset({"times", "minutes_between_retries"}), "catch": frozenset({"var"}),
    "timeout": frozenset({"seconds", "minutes", "hours"}), "card": frozenset({"type", "id"}),
}


class Expression(str):
    """A decorator argument written as an expression (its source), evaluated where it is used."""
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def check_identifier(kind: str, name: str) -> str:
    """Return ``name`` if it is a plain Python identifier, else raise.

    Flow and step names become directory-free keys in the store and class or
    method names in the exported file, so nothing else is allowed.
    """
    if not isinstance(name, str) or not _NAME.match(name) or keyword.iskeyword(name):
        raise InvalidNameError(
            f"{kind} name {name!r} is not valid: use letters, digits and underscores, "
            "starting with a letter (for example 'train_model')."
        )
    return name


@dataclass(frozen=True)
class DecoratorSpec:
    """One decorator from a ``%%step`` line, e.g. ``@retry(times=2)``."""

    name: str
    kwargs: dict[str, Any]
    source: str

    @property
    def is_local(self) -> bool:
        return self.name in LOCAL_DECORATORS


@dataclass
class CodeCell:
    """Module-level code from a ``%%flow`` cell."""

    source: str
    label: str
    first_line: int = 2
    #: Set when the code comes from a real file (an imported flow.py): tracebacks
    #: then show that file's own lines.
    filename: str | None = None


@dataclass
class StepCell:
    """One ``%%step`` cell: the body of a step method and its declaration."""

    name: str
    body: str
    join_arg: str | None = None
    decorators: list[DecoratorSpec] = field(default_factory=list)
    label: str = ""
    first_line: int = 2
    doc: str | None = None
    filename: str | None = None
    #: ``%%step NAME --no-reuse``: the step always runs, even with reuse on (flowcell only; not exported).
    no_reuse: bool = False

    @property
    def is_join(self) -> bool:
        return self.join_arg is not None

    def decorator(self, name: str) -> DecoratorSpec | None:
        for deco in self.decorators:
            if deco.name == name:
                return deco
        return None


@dataclass(frozen=True)
class ParameterSpec:
    """A ``Parameter``/``IncludeFile``/``Config`` assignment found in a ``%%flow`` cell."""

    var: str
    name: str
    kind: str
    kwargs: dict[str, Any]
    has_literal_default: bool
    label: str

    @property
    def default(self) -> Any:
        return self.kwargs.get("default")

    @property
    def required(self) -> bool:
        return bool(self.kwargs.get("required", False))


@dataclass
class FlowSource:
    """Everything a run needs to know about a flow, read from cells or a file."""

    name: str
    code_cells: list[CodeCell] = field(default_factory=list)
    steps: dict[str, StepCell] = field(default_factory=dict)
    path: str | None = None
    #: Flow-level decorators (``@project(name="x")``), kept for the exported file.
    flow_decorators: list[str] = field(default_factory=list)

    @property
    def parameters(self) -> list[ParameterSpec]:
        specs: list[ParameterSpec] = []
        for cell in self.code_cells:
            specs.extend(find_parameters(cell))
        return specs

    def module_code(self) -> list[CodeCell]:
        return list(self.code_cells)


# -- parsing the magic lines -------------------------------------------------------


def _split_decorators(text: str, label: str) -> list[str]:
    """Split ``@a(x) @b.c @d`` into ``['a(x)', 'b.c', 'd']`` at top-level ``@``."""
    pieces: list[str] = []
    depth = 0
    current: list[str] = []
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text.strip()).readline))
    except (tokenize.TokenError, SyntaxError) as exc:
        raise FlowSyntaxError(f"{label}: cannot read the decorators {text.strip()!r}: {exc}") from None
    for tok in tokens:
        if tok.type in (tokenize.NEWLINE, tokenize.NL, tokenize.ENDMARKER, tokenize.COMMENT,
                        tokenize.INDENT, tokenize.DEDENT):
            continue
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        if tok.type == tokenize.OP and tok.string == "@" and depth == 0:
            if current:
                pieces.append(" ".join(current))
            current = []
            continue
        if not pieces and not current and tok.string != "@" and depth == 0 and not text.lstrip().startswith("@"):
            raise FlowSyntaxError(
                f"{label}: expected decorators starting with '@' after the step name, got {text.strip()!r}."
            )
        current.append(tok.string)
    if current:
        pieces.append(" ".join(current))
    return pieces


def parse_decorator(text: str, label: str) -> DecoratorSpec:
    """Parse one decorator expression (without its ``@``)."""
    try:
        expr = ast.parse(text.strip(), mode="eval").body
    except SyntaxError:
        raise FlowSyntaxError(f"{label}: '@{text.strip()}' is not a valid decorator.") from None
    call_args: list[ast.expr] = []
    call_kwargs: list[ast.keyword] = []
    target = expr
    if isinstance(expr, ast.Call):
        target, call_args, call_kwargs = expr.func, expr.args, expr.keywords
    name = ast.unparse(target)
    if not all(_NAME.match(part) for part in name.split(".")):
        raise FlowSyntaxError(f"{label}: '@{text.strip()}' is not a decorator name.")
    if call_args:
        raise FlowSyntaxError(
            f"{label}: @{name} takes keyword arguments only, e.g. @{name}(times=2)."
        )
    kwargs: dict[str, Any] = {}
    for kw in call_kwargs:
        if kw.arg is None:
            short = name.split(".")[-1]
            if short in LOCAL_LITERAL_ARGS:
                raise FlowSyntaxError(f"{label}: @{name} cannot take **kwargs; spell the arguments out.")
            # @environment(**config), @resources(**cfg): the mapping's keys are the arguments, known in the
            # task (@environment's vars) or only on Metaflow (the export keeps the text)
            kwargs.setdefault("**", []).append(Expression(ast.unparse(kw.value)))
            continue
        try:
            kwargs[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            short = name.split(".")[-1]
            if kw.arg in LOCAL_LITERAL_ARGS.get(short, ()):
                raise FlowSyntaxError(
                    f"{label}: argument {kw.arg}= of @{name} must be a literal value "
                    f"(number, string, list, dict), not {ast.unparse(kw.value)!r}."
                ) from None
            # Any other argument may be an expression, as in Metaflow: kept as written
            # (the export writes it back; @environment(vars=...) is evaluated in the task).
            kwargs[kw.arg] = Expression(ast.unparse(kw.value))
    return DecoratorSpec(name=name.split(".")[-1], kwargs=kwargs, source="@" + ast.unparse(expr))


#: Options of a ``%%step`` line (flowcell's own; the export leaves them out).
STEP_FLAGS = frozenset({"--no-reuse"})
_FLAG = re.compile(r"(?<!\S)--[A-Za-z][A-Za-z-]*(?!\S)")


def step_flags(line: str, label: str = "%%step cell") -> tuple[str, frozenset[str]]:
    """The ``%%step`` line without its ``--options``, and the options (only :data:`STEP_FLAGS` exist)."""
    found = frozenset(_FLAG.findall(line))
    unknown = sorted(found - STEP_FLAGS)
    if unknown:
        raise FlowSyntaxError(f"{label}: unknown %%step option {unknown[0]}; the options are "
                              f"{', '.join(sorted(STEP_FLAGS))}.")
    return (_FLAG.sub(" ", line) if found else line), found


def parse_step_line(line: str, label: str = "%%step cell") -> tuple[str, str | None, list[DecoratorSpec]]:
    """Parse the text after ``%%step``: ``NAME[(inputs)] [@decorator ...] [--no-reuse]``."""
    text = step_flags(line, label)[0].strip()
    match = re.match(r"^([A-Za-z_][A-Za-z0-9_]*)\s*(?:\(\s*([A-Za-z_][A-Za-z0-9_]*)?\s*\))?", text)
    if not match or not text:
        raise FlowSyntaxError(
            f"{label}: a %%step line needs a step name, e.g. '%%step train' or '%%step join(inputs)'."
        )
    name = check_identifier("Step", match.group(1))
    join_arg = match.group(2)
    if match.group(0).rstrip().endswith(")") and join_arg is None:
        raise FlowSyntaxError(f"{label}: '{match.group(0)}' has empty parentheses; a join is declared as '{name}(inputs)'.")
    rest = text[match.end():]
    decorators = [parse_decorator(piece, label) for piece in _split_decorators(rest, label)] if rest.strip() else []
    return name, join_arg, decorators


def parse_flow_line(line: str, label: str = "%%flow cell") -> tuple[str | None, list[str]]:
    """``%%flow [NAME] [@flow_decorator ...]`` -> (name, decorator sources)."""
    text = line.strip()
    if not text:
        return None, []
    name_part, _, rest = text.partition("@")
    rest = "@" + rest if rest else ""
    words = name_part.split()
    if len(words) > 1:
        raise FlowSyntaxError(f"{label}: '%%flow {text}' takes one flow name, e.g. '%%flow PlayListFlow'.")
    name = check_identifier("Flow", words[0]) if words else None
    decorators = [parse_decorator(piece, label).source for piece in _split_decorators(rest, label)] if rest else []
    return name, decorators


# -- parameters --------------------------------------------------------------------


def find_parameters(cell: CodeCell) -> list[ParameterSpec]:
    """Top-level ``x = Parameter("x", ...)`` assignments of a ``%%flow`` cell."""
    try:
        tree = ast.parse(cell.source)
    except SyntaxError as exc:
        raise FlowSyntaxError(
            f"{cell.label}, line {cell.first_line + (exc.lineno or 1) - 1}: {exc.msg}"
        ) from None
    found: list[ParameterSpec] = []
    for node in tree.body:
        if not (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)):
            continue
        func = node.value.func
        kind = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if kind not in PARAMETER_KINDS:
            continue
        if len(node.targets) != 1 or not isinstance(node.targets[0], ast.Name):
            raise FlowSyntaxError(f"{cell.label}: assign each {kind} to one plain name, e.g. alpha = {kind}('alpha').")
        var = node.targets[0].id
        call = node.value
        if not call.args or not isinstance(call.args[0], ast.Constant) or not isinstance(call.args[0].value, str):
            raise FlowSyntaxError(f"{cell.label}: {kind} for {var!r} needs its name as a string first, e.g. {kind}({var!r}, default=...).")
        name = call.args[0].value
        kwargs: dict[str, Any] = {}
        literal_default = True
        for kw in call.keywords:
            if kw.arg is None:
                continue
            if kw.arg == "type":
                kwargs["type"] = ast.unparse(kw.value)
                continue
            try:
                kwargs[kw.arg] = ast.literal_eval(kw.value)
            except ValueError:
                kwargs[kw.arg] = None
                if kw.arg == "default":
                    literal_default = False
        found.append(ParameterSpec(var, name, kind, kwargs, literal_default, cell.label))
    return found


# -- whole notebooks and cell sources ---------------------------------------------


def split_magic(source: str) -> tuple[str, str, str] | None:
    """``('step'|'flow', rest_of_first_line, body)`` for a ``%%step``/``%%flow`` cell."""
    first, _, body = source.lstrip("\n").partition("\n")
    for magic in ("step", "flow"):
        prefix = f"%%{magic}"
        if first.startswith(prefix) and (len(first) == len(prefix) or first[len(prefix)].isspace()):
            return magic, first[len(prefix):], body
    return None


def flow_name_from_path(path: str | Path) -> str:
    """Derive a class name from a notebook file name: ``my-flow.ipynb`` -> ``MyFlow``."""
    stem = Path(path).stem
    words = [w for w in re.split(r"[^A-Za-z0-9]+", stem) if w]
    name = "".join(w[:1].upper() + w[1:] for w in words) or "Notebook"
    if name[0].isdigit():
        name = "Flow" + name
    if not name.endswith("Flow"):
        name += "Flow"
    return name


def flow_from_cells(
    cells: list[tuple[str, str]], path: str | None = None, default_name: str | None = None
) -> FlowSource:
    """Build a :class:`FlowSource` from ``(label, source)`` pairs in notebook order.

    Markdown cells are passed as ``('markdown', text)``; the last one directly above
    a step cell becomes that step's docstring.
    """
    name: str | None = None
    flow = FlowSource(name="", path=path)
    pending_doc: str | None = None
    for label, source in cells:
        if label == "markdown":
            pending_doc = source.strip() or None
            continue
        parsed = split_magic(source)
        if parsed is None:
            pending_doc = None
            continue
        magic, line, body = parsed
        if magic == "flow":
            cell_name, flow_decorators = parse_flow_line(line, label)
            flow.flow_decorators += [d for d in flow_decorators if d not in flow.flow_decorators]
            if cell_name and name and cell_name != name:
                raise FlowSyntaxError(
                    f"{label}: this notebook already defines flow {name!r}; a second %%flow cell "
                    f"may repeat that name or give none, not {cell_name!r}."
                )
            name = name or cell_name
            flow.code_cells.append(CodeCell(source=body, label=label))
        else:
            step_name, join_arg, decorators = parse_step_line(line, label)
            no_reuse = "--no-reuse" in step_flags(line, label)[1]
            if step_name in flow.steps:
                raise FlowSyntaxError(
                    f"{label}: step {step_name!r} is already defined in {flow.steps[step_name].label}; "
                    "rename one of them."
                )
            flow.steps[step_name] = StepCell(
                name=step_name, body=body, join_arg=join_arg, decorators=decorators,
                label=label, doc=pending_doc, no_reuse=no_reuse,
            )
        pending_doc = None
    if name is None:
        name = default_name or (flow_name_from_path(path) if path else "NotebookFlow")
    flow.name = check_identifier("Flow", name)
    return flow


def _notebook_cells(p: Path) -> list[tuple[str, str]]:
    """(cell type, source) of a notebook file.

    Version-4 notebooks are read as the JSON they are: importing nbformat pulls in
    jsonschema, which costs over a second where JupyterLab's schema extras are
    installed, and a command-line run should not wait for it.  Older formats go
    through nbformat's converters.
    """
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise FlowSyntaxError(f"Notebook {str(p)!r} does not exist.") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise FlowSyntaxError(f"{str(p)!r} is not a readable notebook: {exc}") from None
    if not isinstance(data, dict) or data.get("nbformat") != 4 or not isinstance(data.get("cells"), list):
        import nbformat

        try:
            data = nbformat.read(str(p), as_version=4)
        except Exception as exc:  # nbformat raises several types for a bad file
            raise FlowSyntaxError(f"{str(p)!r} is not a readable notebook: {exc}") from None
    cells = []
    for cell in data["cells"]:
        source = cell.get("source", "")
        cells.append((cell.get("cell_type", ""), "".join(source) if isinstance(source, list) else source))
    return cells


def read_notebook(path: str | Path) -> FlowSource:
    """Read a ``.ipynb`` file (no Jupyter server needed) into a :class:`FlowSource`."""
    p = Path(path)
    cells: list[tuple[str, str]] = []
    for index, (kind, source) in enumerate(_notebook_cells(p), start=1):
        if kind == "markdown":
            cells.append(("markdown", source))
        elif kind == "code":
            cells.append((f"cell {index}", source))
    flow = flow_from_cells(cells, path=str(p.resolve()))
    if not flow.steps:
        raise FlowSyntaxError(f"{str(p)!r} has no %%step cells, so there is no flow to run.")
    return flow
