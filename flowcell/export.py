"""Export a notebook's flow to an ordinary Metaflow ``flow.py``.

The output is assembled from the cells' own text (so comments and formatting in
step bodies survive), checked by parsing it with ``ast``, and refused with a clear
message when it would not run the same under Metaflow: a step that reads a
notebook variable that is not module-level code, or a decorator Metaflow does not
have.  Exporting an unchanged notebook twice gives byte-identical files.
"""

from __future__ import annotations

import ast
import builtins
import io
import tokenize
from dataclasses import dataclass
from pathlib import Path

from .pins import ENV_CHOICES, Environment, base_decorator, flow_environment, requirements_path, requirements_text
from .errors import ExportError, FlowcellError
from .graph import FlowGraph
from .lint import prepare
from .model import (METAFLOW_FLOW_DECORATORS, METAFLOW_STEP_DECORATORS, CodeCell, FlowSource, StepCell,
                    find_parameters)

def indent(source: str, prefix: str) -> str:
    """Indent code, leaving the continuation lines of multi-line strings untouched."""
    lines = source.splitlines(keepends=True)
    inside_string: set[int] = set()
    try:
        for tok in tokenize.generate_tokens(io.StringIO(source).readline):
            if tok.type == tokenize.STRING and tok.end[0] > tok.start[0]:
                inside_string.update(range(tok.start[0] + 1, tok.end[0] + 1))
    except (tokenize.TokenError, SyntaxError):
        pass
    out = []
    for number, line in enumerate(lines, start=1):
        if number in inside_string or not line.strip():
            out.append(line if line.strip() or number in inside_string else "\n")
        else:
            out.append(prefix + line)
    text = "".join(out)
    return text if text.endswith("\n") else text + "\n"


def _rewrite_imports(tree: ast.Module, source: str) -> str:
    """``flowcell`` imports become ``metaflow`` imports, line by line, keeping the rest verbatim."""
    lines = source.splitlines(keepends=True)
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        replacement = None
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (
                node.module == "flowcell" or node.module.startswith("flowcell.")):
            mod = "metaflow" + node.module[len("flowcell"):]
            replacement = ast.unparse(ast.ImportFrom(module=mod, names=node.names, level=0))
        elif isinstance(node, ast.Import) and any(a.name == "flowcell" or a.name.startswith("flowcell.")
                                                  for a in node.names):
            aliases = [ast.alias(name="metaflow" + a.name[len("flowcell"):],
                                 asname=a.asname or (a.name if a.name == "flowcell" else None))
                       if a.name == "flowcell" or a.name.startswith("flowcell.") else a for a in node.names]
            replacement = ast.unparse(ast.Import(names=aliases))
        if replacement is not None:
            if node.lineno != node.end_lineno:
                first = lines[node.lineno - 1]
                lead = first[: len(first) - len(first.lstrip())]
                lines[node.lineno - 1] = lead + replacement + "\n"
                for i in range(node.lineno, node.end_lineno or node.lineno):
                    lines[i] = ""
            else:
                line = lines[node.lineno - 1]
                lines[node.lineno - 1] = line[: node.col_offset] + replacement + line[node.end_col_offset or 0:]
    return "".join(lines)


def _module_code(cell: CodeCell) -> tuple[str, list[str]]:
    """A ``%%flow`` cell's code without its parameter assignments, and those assignments."""
    tree = ast.parse(cell.source)
    params = {p.var for p in find_parameters(cell)}
    lines = cell.source.splitlines(keepends=True)
    moved: list[str] = []
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name) \
                and node.targets[0].id in params:
            moved.append("".join(lines[node.lineno - 1: node.end_lineno]).strip())
            for i in range(node.lineno - 1, node.end_lineno or node.lineno):
                lines[i] = ""
    kept = "".join(lines)
    return _rewrite_imports(ast.parse(kept), kept), [_rewrite_imports(ast.parse(m), m) for m in moved]


def _bound_names(tree: ast.AST) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and isinstance(node.ctx, (ast.Store, ast.Del)):
            names.add(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            names.add(node.name)
        elif isinstance(node, (ast.Global, ast.Nonlocal)):
            names.update(node.names)
        elif isinstance(node, ast.MatchAs) and node.name:
            names.add(node.name)
    return names


def check_free_names(flow: FlowSource) -> None:
    """Refuse steps that read names defined nowhere in the flow (notebook variables)."""
    module_names: set[str] = set(dir(builtins)) | {"__file__", "__name__"}
    for cell in flow.code_cells:
        tree = ast.parse(cell.source)
        if any(isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in ast.walk(tree)):
            return  # a star import may define anything
        module_names |= _bound_names(tree)
    for step in flow.steps.values():
        tree = ast.parse(step.body)
        bound = _bound_names(tree) | {"self"} | ({step.join_arg} if step.join_arg else set())
        for node in ast.walk(tree):
            if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Load) and node.id not in bound \
                    and node.id not in module_names:
                line = step.first_line + node.lineno - 1
                raise ExportError(
                    f"Step '{step.name}' ({step.label}, line {line}) reads {node.id!r}, which is not defined in the "
                    "flow's %%flow cells; a notebook variable does not exist in production. Define it in a %%flow "
                    "cell, pass it as a Parameter, or compute it in a step."
                )


def _merge_metaflow_imports(text: str) -> tuple[str, set[str]]:
    """Lift top-level ``from metaflow import ...`` into the one header import; tidy blank lines."""
    if not text.strip():
        return "", set()
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    names: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module == "metaflow" and node.level == 0 \
                and all(a.asname is None for a in node.names):
            names.update(a.name for a in node.names)
            for i in range(node.lineno - 1, node.end_lineno or node.lineno):
                lines[i] = ""
    out: list[str] = []
    blank = 0
    for line in lines:
        blank = blank + 1 if not line.strip() else 0
        if blank <= 2:
            out.append(line)
    return "".join(out).strip("\n") + "\n", names


def _decorator_lines(step: StepCell) -> list[str]:
    for deco in step.decorators:
        if deco.name not in METAFLOW_STEP_DECORATORS:
            raise ExportError(
                f"Step '{step.name}' ({step.label}) uses @{deco.name}, which Metaflow 2.19 does not provide; "
                "remove it or use a Metaflow step decorator."
            )
    return [d.source for d in step.decorators]


def _docstring(text: str | None, prefix: str) -> str:
    if not text:
        return ""
    body = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = body.splitlines()
    if len(lines) == 1:
        return f'{prefix}"""{lines[0]}"""\n'
    inner = "\n".join((prefix + line) if line.strip() else "" for line in lines[1:])
    return f'{prefix}"""{lines[0]}\n{inner}\n{prefix}"""\n'


def _check_env(flow: FlowSource, env: str) -> None:
    if env not in ENV_CHOICES:
        raise ExportError(f"--env takes one of {', '.join(ENV_CHOICES)}, not {env!r}.")
    declared = [d for d in flow.flow_decorators if d.lstrip("@").split("(")[0].split(".")[-1] in ("pypi_base", "conda_base")]
    if env in ("pypi", "conda") and declared:
        raise ExportError(
            f"The %%flow line already declares {declared[0].split('(')[0]}; --env {env} would add a second base "
            "environment. Remove it from the %%flow line, or export with --env requirements or --env none."
        )


def export_source(
    flow: FlowSource,
    graph: FlowGraph | None = None,
    *,
    env: str = "none",
    environment: Environment | None = None,
    requirements: str | None = None,
) -> str:
    """The Metaflow ``flow.py`` text for ``flow``.

    ``env="pypi"``/``"conda"`` adds ``@pypi_base``/``@conda_base`` pinning ``environment``
    (default: the kernel's versions of what the flow imports); ``requirements`` names
    the requirements file written beside the export, in a comment at the top.
    """
    _check_env(flow, env)
    graph = graph or prepare(flow)
    check_free_names(flow)
    flow_decorators = list(flow.flow_decorators)
    if env in ("pypi", "conda"):
        flow_decorators.append(base_decorator(environment or flow_environment(flow), env))
    module_parts: list[str] = []
    params: list[str] = []
    for cell in flow.code_cells:
        code, moved = _module_code(cell)
        if code.strip():
            module_parts.append(code.strip("\n") + "\n")
        params += moved
    used = {"FlowSpec", "step"}
    steps = [flow.steps[name] for name in graph.sorted_nodes()]
    for step in steps:
        used.update(d.name for d in step.decorators)
    for p in flow.parameters:
        used.add(p.kind)
    module_text, imported = _merge_metaflow_imports("\n".join(module_parts))
    used |= imported
    for decorator in flow_decorators:
        used.add(decorator.lstrip("@").split("(")[0].split(".")[-1])
    imports = sorted(used, key=lambda n: (n != "FlowSpec", n.lower()))
    out = []
    if requirements:
        out.append(f"# Requirements: {requirements} (pins of what the steps import; pip install -r {requirements})\n")
    out.append(f"from metaflow import {', '.join(imports)}\n")
    if module_text:
        out.append("\n" + module_text)
    out.append("\n\n")
    for decorator in flow_decorators:
        name = decorator.lstrip("@").split("(")[0].split(".")[-1]
        if name not in METAFLOW_FLOW_DECORATORS:
            raise ExportError(f"Flow decorator {decorator} is not one Metaflow 2.19 provides; remove it from the %%flow line.")
        used.add(name)
        out.append(f"{decorator}\n")
    out.append(f"class {flow.name}(FlowSpec):\n")
    if params:
        out.append(indent("\n".join(params), "    "))
    for i, step in enumerate(steps):
        if params or i:
            out.append("\n")
        for deco in _decorator_lines(step):
            out.append(f"    {deco}\n")
        args = f"self, {step.join_arg}" if step.join_arg else "self"
        out.append(f"    @step\n    def {step.name}({args}):\n")
        out.append(_docstring(step.doc, "        "))
        body = step.body.strip("\n")
        out.append(indent(body, "        ") if body.strip() else "        pass\n")
    out.append(f'\n\nif __name__ == "__main__":\n    {flow.name}()\n')
    text = "".join(out)
    try:
        ast.parse(text)
    except SyntaxError as exc:
        raise ExportError(f"The exported flow does not parse (line {exc.lineno}: {exc.msg}); please report this.") from None
    return text


@dataclass(frozen=True)
class Exported:
    """What an export wrote: the flow file, its requirements file (if any) and the pins."""

    path: Path
    requirements: Path | None
    environment: Environment | None
    env: str

    def summary(self) -> str:
        """One line for the command's output."""
        count = len(self.environment.packages) if self.environment else 0
        if self.requirements is not None:
            return (f"Wrote {self.path} and {self.requirements.name} ({count} pinned distribution"
                    f"{'' if count == 1 else 's'}): run it with `python {self.path.name} run` under Metaflow.")
        if self.env in ("pypi", "conda"):
            return (f"Wrote {self.path} with @{self.env}_base ({count} pinned): run it with "
                    f"`python {self.path.name} --environment={self.env} run` under Metaflow.")
        return f"Wrote {self.path}: run it with `python {self.path.name} run` under Metaflow."


def _write(target: Path, text: str) -> None:
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text)
    tmp.replace(target)


def export_flow(flow: FlowSource, path: str | Path, env: str = "requirements") -> Exported:
    """Write the exported flow to ``path`` (atomically), with its pins as ``env`` asks.

    ``env``: ``requirements`` (default) writes ``NAME.requirements.txt`` beside the
    file, ``pypi``/``conda`` write ``@pypi_base``/``@conda_base``, ``none`` nothing.
    """
    _check_env(flow, env)
    target = Path(path)
    environment = flow_environment(flow, with_metaflow=env == "requirements") if env != "none" else None
    req = requirements_path(target) if env == "requirements" else None
    text = export_source(flow, env=env, environment=environment, requirements=req.name if req else None)
    if req is not None and environment is not None:
        _write(req, requirements_text(environment, flow.name))
    _write(target, text)
    return Exported(target, req, environment, env)
