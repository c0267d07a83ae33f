"""A flow as plain data: its steps, graph and parameters, read statically from the cells.

One description for every surface that shows a flow without running it: the MCP
server's ``flows`` tool and ``flowcell run NOTEBOOK --help``.  Nothing here executes
user code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .errors import FlowcellError
from .graph import build_graph
from .model import FlowSource, ParameterSpec


def describe_parameter(spec: ParameterSpec) -> dict[str, Any]:
    """One parameter: name, kind, default (only when it is a literal), help, required."""
    kwargs = spec.kwargs
    return {
        "name": spec.name,
        "kind": spec.kind,
        "default": spec.default if spec.has_literal_default else None,
        "help": kwargs.get("help"),
        "required": spec.required,
        "type": kwargs.get("type") or (type(spec.default).__name__ if spec.default is not None else None),
        "cell": spec.label,
    }


def describe_flow(flow: FlowSource) -> dict[str, Any]:
    """The flow's name, file, parameters and steps (in graph order) with their transitions."""
    graph = build_graph(flow)
    steps = []
    for node in graph:
        cell = flow.steps[node.name]
        steps.append({
            "name": node.name,
            "type": node.type,
            "next": list(node.out_funcs),
            "parents": list(node.in_funcs),
            "foreach": node.foreach_param if node.type == "foreach" else None,
            "condition": node.condition,
            "join": cell.is_join,
            "decorators": [d.source for d in cell.decorators],
            "cell": cell.label,
            "doc": cell.doc,
            "source": cell.body,
        })
    return {
        "flow": flow.name,
        "path": flow.path,
        "parameters": [describe_parameter(p) for p in flow.parameters],
        "steps": steps,
    }


def find_notebooks(root: Path) -> list[Path]:
    """The notebooks (and only notebooks) directly in ``root`` or below, skipping hidden folders."""
    found: list[Path] = []
    for path in sorted(root.rglob("*.ipynb")):
        rel = path.relative_to(root)
        if any(part.startswith(".") for part in rel.parts):  # checkpoints, stores, spin stores
            continue
        found.append(path)
    return found


def describe_path(target: Path) -> list[dict[str, Any]]:
    """Every flow at ``target`` (a notebook, a flow file, or a folder of notebooks).

    A notebook in a folder that holds no flow, or does not parse, is listed with an
    ``error`` instead of failing the whole listing.
    """
    from .runner import load_flow

    if not target.is_dir():
        return [describe_flow(load_flow(target))]
    flows = []
    for path in find_notebooks(target):
        try:
            flows.append(describe_flow(load_flow(path)))
        except FlowcellError as exc:
            flows.append({"flow": None, "path": str(path), "error": str(exc)})
    return flows


def parameters_help(flow: FlowSource) -> str:
    """The ``Parameters:`` section of ``flowcell run NOTEBOOK --help`` (as Metaflow lists them)."""
    specs = flow.parameters
    if not specs:
        return f"Flow {flow.name} has no parameters."
    lines = [f"Parameters of flow {flow.name}:"]
    for spec in specs:
        info = describe_parameter(spec)
        head = f"  --{spec.name} {str(info['type'] or 'VALUE').upper()}"
        bits = [info["help"]] if info["help"] else []
        if info["required"]:
            bits.append("[required]")
        elif spec.has_literal_default:
            bits.append(f"[default: {spec.default!r}]")
        else:
            bits.append("[default: computed]")
        lines.append(f"{head:<28} {' '.join(str(b) for b in bits)}")
    return "\n".join(lines)
