"""Read a Metaflow ``flow.py`` as a flow (to run it directly) or turn it into a notebook.

The file is parsed with ``ast``, never executed.  Module-level code stays
module-level code, the ``FlowSpec`` class's parameters move into the ``%%flow``
cell, each ``@step`` method becomes a ``%%step`` cell (its docstring a markdown
cell above it), and ``metaflow`` imports become ``flowcell`` imports where flowcell
provides the name.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

from .errors import FlowImportError, FlowSyntaxError
from .model import (METAFLOW_FLOW_DECORATORS, METAFLOW_STEP_DECORATORS, PARAMETER_KINDS, CodeCell, FlowSource, StepCell,
                    parse_decorator)

#: Names ``from metaflow import ...`` that flowcell provides under the same name.
FLOWCELL_NAMES = frozenset({
    "Parameter", "IncludeFile", "Config", "JSONType", "current", "Flow", "Run", "Step", "Task", "DataArtifact",
    "namespace", "get_namespace", "default_namespace", "inspect_spin", "Runner",
})
#: Names only needed to write a flow file; the notebook's magics stand in for them.
NOTEBOOK_IMPLICIT = frozenset({"FlowSpec", "step"})


def _is_flowspec(node: ast.ClassDef) -> bool:
    return any((isinstance(b, ast.Name) and b.id == "FlowSpec") or
               (isinstance(b, ast.Attribute) and b.attr == "FlowSpec") for b in node.bases)


def _is_main_guard(node: ast.stmt) -> bool:
    return isinstance(node, ast.If) and "__name__" in ast.unparse(node.test) and "__main__" in ast.unparse(node.test)


def _rewrite_metaflow_import(node: ast.ImportFrom) -> str | None:
    """``from metaflow import FlowSpec, step, Parameter, S3`` -> flowcell and metaflow parts."""
    ours = [a for a in node.names if a.name in FLOWCELL_NAMES]
    theirs = [a for a in node.names if a.name not in FLOWCELL_NAMES and a.name not in NOTEBOOK_IMPLICIT
              and not _is_decorator_name(a.name)]
    parts = []
    if ours:
        parts.append(ast.unparse(ast.ImportFrom(module="flowcell", names=ours, level=0)))
    if theirs:
        parts.append(ast.unparse(ast.ImportFrom(module="metaflow", names=theirs, level=0)))
    return "\n".join(parts) if parts else None


def _is_decorator_name(name: str) -> bool:
    return name in METAFLOW_STEP_DECORATORS or name in METAFLOW_FLOW_DECORATORS


def _segment(lines: list[str], node: ast.AST) -> str:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])  # type: ignore[attr-defined]
    return "".join(lines[start - 1: node.end_lineno])  # type: ignore[attr-defined]


def read_flow_file(path: str | Path) -> FlowSource:
    """A Metaflow flow file as a :class:`FlowSource`, with the file's own line numbers."""
    p = Path(path).resolve()
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise FlowImportError(f"{path}: no such file.") from None
    try:
        tree = ast.parse(text, str(p))
    except SyntaxError as exc:
        raise FlowImportError(f"{path}, line {exc.lineno}: {exc.msg}.") from None
    lines = text.splitlines(keepends=True)
    classes = [n for n in tree.body if isinstance(n, ast.ClassDef) and _is_flowspec(n)]
    if not classes:
        raise FlowImportError(f"{path} is not a Metaflow flow: it defines no class deriving from FlowSpec.")
    if len(classes) > 1:
        raise FlowImportError(
            f"{path} defines {len(classes)} FlowSpec classes ({', '.join(c.name for c in classes)}); "
            "a flow file holds exactly one."
        )
    cls = classes[0]
    flow = FlowSource(name=cls.name, path=str(p))
    flow.flow_decorators = [f"@{ast.unparse(d)}" for d in cls.decorator_list]
    name = p.name
    # Module-level code: contiguous runs of statements, keeping their file line numbers.
    chunk: list[ast.stmt] = []

    def flush() -> None:
        if not chunk:
            return
        first, last = chunk[0], chunk[-1]
        start = min([first.lineno] + [d.lineno for d in getattr(first, "decorator_list", [])])
        source_lines = lines[start - 1: last.end_lineno]
        for stmt in chunk:
            if isinstance(stmt, ast.ImportFrom) and stmt.module == "metaflow" and stmt.level == 0:
                new = _rewrite_metaflow_import(stmt)
                for i in range(stmt.lineno - start, (stmt.end_lineno or stmt.lineno) - start + 1):
                    source_lines[i] = "\n"
                source_lines[stmt.lineno - start] = (new or "") + "\n"
        flow.code_cells.append(CodeCell(source="".join(source_lines), label=f"{name}, line {start}",
                                        first_line=start, filename=str(p)))
        chunk.clear()

    for node in tree.body:
        if node is cls or _is_main_guard(node):
            flush()
            continue
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str) \
                and node is tree.body[0]:
            continue  # the module docstring
        chunk.append(node)
    flush()
    params: list[str] = []
    extras: list[ast.stmt] = []
    for node in cls.body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
            continue
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
            func = node.value.func
            kind = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if kind in PARAMETER_KINDS:
                params.append("".join(lines[node.lineno - 1: node.end_lineno]).strip())
                continue
        if isinstance(node, ast.FunctionDef) and any(
                (isinstance(d, ast.Name) and d.id == "step") or
                (isinstance(d, ast.Attribute) and d.attr == "step") for d in node.decorator_list):
            flow.steps[node.name] = _step_cell(node, lines, name, str(p))
            continue
        extras.append(node)  # a constant, helper method or property: the class body keeps it
    if not flow.steps:
        raise FlowImportError(f"{name}: class {cls.name} has no @step methods (steps built dynamically cannot be imported).")
    if extras:
        flow.code_cells.append(_class_cell(cls, extras, lines, name, str(p)))
    if params:
        flow.code_cells.append(CodeCell(source="\n".join(params) + "\n", label=f"{name}, parameters", first_line=1))
    return flow


def _class_cell(cls: ast.ClassDef, extras: list[ast.stmt], lines: list[str], name: str, path: str) -> CodeCell:
    """The FlowSpec class with only its constants and helpers, at the file's own line numbers.

    Metaflow executes the class body; flowcell runs this cell with the module code so a
    step's ``self.CONSTANT`` or ``self.helper()`` finds the class's attribute.
    """
    end = cls.end_lineno or cls.lineno
    first = cls.body[0]
    keep = set(range(cls.lineno, min([first.lineno] + [d.lineno for d in getattr(first, "decorator_list", [])])))
    for node in extras:
        start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
        keep.update(range(start, (node.end_lineno or node.lineno) + 1))
    source = "".join(lines[i - 1] if i in keep else "\n" for i in range(cls.lineno, end + 1))
    return CodeCell(source=source, label=f"{name}, line {cls.lineno}", first_line=cls.lineno, filename=path)


def _step_cell(node: ast.FunctionDef, lines: list[str], name: str, path: str) -> StepCell:
    label = f"{name}, line {node.lineno}"
    decorators = []
    for d in node.decorator_list:
        if (isinstance(d, ast.Name) and d.id == "step") or (isinstance(d, ast.Attribute) and d.attr == "step"):
            continue
        decorators.append(parse_decorator(ast.unparse(d), label))
    args = [a.arg for a in node.args.args]
    if not args or args[0] != "self" or len(args) > 2:
        raise FlowImportError(f"{label}: step {node.name} must take (self) or (self, inputs).")
    body = node.body
    doc = None
    if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        doc = textwrap.dedent(body[0].value.value).strip() or None
        body = body[1:]
    if body:
        first = body[0].lineno
        source = textwrap.dedent("".join(lines[first - 1: body[-1].end_lineno]))
    else:
        first, source = node.end_lineno or node.lineno, "pass\n"
    return StepCell(name=node.name, body=source, join_arg=args[1] if len(args) == 2 else None,
                    decorators=decorators, label=label, first_line=first, doc=doc, filename=path)


def notebook_from_flow(flow: FlowSource) -> object:
    """A notebook of ``%%flow`` and ``%%step`` cells (docstrings as markdown) for ``flow``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    cells = [nbformat.v4.new_code_cell("%load_ext flowcell")]
    header = " ".join([f"%%flow {flow.name}", *flow.flow_decorators])
    module = "\n\n".join(c.source.strip("\n") for c in flow.code_cells if c.source.strip())
    cells.append(nbformat.v4.new_code_cell(f"{header}\n{module}".rstrip() + "\n" if module else header + "\n# module code"))
    from .graph import build_graph

    for step_name in build_graph(flow).sorted_nodes():
        step = flow.steps[step_name]
        if step.doc:
            cells.append(nbformat.v4.new_markdown_cell(step.doc))
        line = f"%%step {step.name}{'(' + step.join_arg + ')' if step.join_arg else ''}"
        line = " ".join([line, *(d.source for d in step.decorators)])
        cells.append(nbformat.v4.new_code_cell(f"{line}\n{step.body.rstrip()}"))
    cells.append(nbformat.v4.new_code_cell("run = %run_flow\nrun"))
    for cell in cells:
        cell.source = cell.source.rstrip("\n")
    nb.cells = cells
    return nb
