"""The flow graph as plain data for the widgets' layout engine, and an SVG fallback.

:func:`graph_model` is what the front ends lay out (dagre, in the widget bundle and
the Flow panel): nodes with status and timing, edges with their kind (linear,
branch, foreach, join, conditional) so each is drawn distinctly.
:func:`flow_graph_svg` draws the same model without a browser (nbconvert, GitHub,
the Flow panel before the bundle loads) with a small layered layout: long edges
pass through placeholder slots in the rows they cross, so no edge runs through a
box.
"""

from __future__ import annotations

import html
from typing import Any

STATUS_COLORS = {"completed": "#1a7f37", "failed": "#cf222e", "crashed": "#9a6700", "running": "#0969da",
                 "never": "#8c959f"}
#: The outline of a step that is stale against the latest run (dashed).
STALE_COLOR = "#bf8700"
EDGE_KINDS = ("linear", "branch", "foreach", "join", "conditional")


def _edge_kind(graph: Any, source: str, target: str) -> tuple[str, str]:
    node = graph[source]
    if node.type == "split-switch":
        case = next((k for k, v in node.switch_cases.items() if v == target), "")
        return "conditional", str(case)
    if node.type == "foreach":
        return "foreach", f"foreach {node.foreach_param}" if node.foreach_param else "foreach"
    if graph[target].type == "join":
        return "join", ""
    if node.type == "split":
        return "branch", ""
    return "linear", ""


def graph_model(graph: Any, statuses: dict[str, str | None] | None = None,
                timing: dict[str, dict[str, Any]] | None = None,
                stale: dict[str, list[str]] | None = None) -> dict[str, Any]:
    """Nodes and typed edges of a :class:`~flowcell.graph.FlowGraph`, as JSON.

    ``stale`` maps steps that are stale against the latest run to the reasons
    (:mod:`flowcell.staleness`); those nodes carry them as ``stale``.
    """
    statuses, timing, stale = statuses or {}, timing or {}, stale or {}
    names = list(graph.sorted_nodes())
    nodes = [{"id": n, "type": graph[n].type or "linear", "status": statuses.get(n) or "never",
              **timing.get(n, {}), **({"stale": list(stale[n])} if stale.get(n) else {})} for n in names]
    edges = []
    for n in names:
        for out in graph[n].out_funcs:
            if out in names:
                kind, label = _edge_kind(graph, n, out)
                edges.append({"source": n, "target": out, "kind": kind, "label": label})
    return {"nodes": nodes, "edges": edges}


# -- SVG fallback: a small layered (Sugiyama-style) layout --------------------------

BOX_W, BOX_H, GAP_X, GAP_Y, SLOT_W = 150, 40, 28, 48, 16


def _layers(nodes: list[str], edges: list[tuple[str, str]]) -> dict[str, int]:
    depth = {n: 0 for n in nodes}
    for _ in nodes:  # longest path from the sources; the only loop allowed is a switch's to itself
        for a, b in edges:
            if a != b:
                depth[b] = max(depth[b], depth[a] + 1)
    return depth


def layout(model: dict[str, Any]) -> dict[str, Any]:
    """Positions of boxes and edge polylines for :func:`flow_graph_svg` (top to bottom)."""
    names = [n["id"] for n in model["nodes"]]
    raw = [(e["source"], e["target"]) for e in model["edges"]]
    depth = _layers(names, raw)
    rows: dict[int, list[str]] = {}
    for n in names:
        rows.setdefault(depth[n], []).append(n)
    # Long edges get a placeholder in every row they cross.
    chains: list[list[str]] = []
    for i, (a, b) in enumerate(raw):
        chain = [a]
        for level in range(depth[a] + 1, depth[b]):
            dummy = f"\0{i}:{level}"
            rows[level].append(dummy)
            depth[dummy] = level
            chain.append(dummy)
        chains.append(chain + [b])
    links = [(c[k], c[k + 1]) for c in chains for k in range(len(c) - 1)]
    ups: dict[str, list[str]] = {}
    downs: dict[str, list[str]] = {}
    for a, b in links:
        downs.setdefault(a, []).append(b)
        ups.setdefault(b, []).append(a)
    order = {n: i for row in rows.values() for i, n in enumerate(row)}
    levels = sorted(rows)
    for sweep in range(6):  # barycentre ordering, alternating down and up
        seq = levels[1:] if sweep % 2 == 0 else list(reversed(levels[:-1]))
        near = ups if sweep % 2 == 0 else downs
        for level in seq:
            row = rows[level]
            bary = {n: (sum(order[m] for m in near.get(n, [])) / len(near[n]) if near.get(n) else order[n])
                    for n in row}
            row.sort(key=lambda n: (bary[n], order[n]))
            order.update({n: i for i, n in enumerate(row)})

    def width(n: str) -> int:
        return SLOT_W if n.startswith("\0") else BOX_W

    row_w = {lv: sum(width(n) for n in row) + GAP_X * (len(row) - 1) for lv, row in rows.items()}
    total_w = max(row_w.values()) + 2 * GAP_X
    pos: dict[str, tuple[float, float]] = {}
    for lv, row in rows.items():
        x = (total_w - row_w[lv]) / 2
        y = GAP_Y / 2 + lv * (BOX_H + GAP_Y)
        for n in row:
            pos[n] = (x + width(n) / 2, y)  # centre x, top y
            x += width(n) + GAP_X
    paths = []
    for (a, b), chain in zip(raw, chains):
        points = [(pos[a][0], pos[a][1] + BOX_H)]
        for d in chain[1:-1]:
            points += [(pos[d][0], pos[d][1]), (pos[d][0], pos[d][1] + BOX_H)]
        points.append((pos[b][0], pos[b][1] - 3))
        paths.append(points)
    height = GAP_Y + len(rows) * (BOX_H + GAP_Y) - GAP_Y / 2
    return {"width": total_w, "height": height,
            "boxes": {n: pos[n] for n in names}, "paths": paths}


def _fmt_seconds(s: float) -> str:
    return f"{s * 1000:.0f} ms" if s < 1 else (f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min")


def flow_graph_svg(graph: Any, statuses: dict[str, str | None] | None = None,
                   timing: dict[str, dict[str, Any]] | None = None,
                   stale: dict[str, list[str]] | None = None) -> str:
    """The flow's DAG as a self-contained SVG, each step coloured by its last status (stale ones dashed)."""
    return model_svg(graph_model(graph, statuses, timing, stale))


def model_svg(model: dict[str, Any]) -> str:
    """SVG of a :func:`graph_model` (also used for a run's graph derived from its tasks)."""
    lay = layout(model)
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{lay['width']:.0f}' height='{lay['height']:.0f}' "
             f"viewBox='0 0 {lay['width']:.0f} {lay['height']:.0f}' font-family='system-ui,sans-serif' "
             "font-size='13' class='fc-graph-svg'>",
             "<defs><marker id='fc-arrow' markerWidth='8' markerHeight='8' refX='7' refY='4' orient='auto'>"
             "<path d='M0,0 L8,4 L0,8 z' fill='#6e7781'/></marker></defs>"]
    for edge, points in zip(model["edges"], lay["paths"]):
        d = "M" + " L".join(f"{x:.0f},{y:.0f}" for x, y in points)
        style = {"foreach": " stroke-dasharray='6,3'", "conditional": " stroke-dasharray='2,3'"}.get(edge["kind"], "")
        parts.append(f"<path d='{d}' fill='none' stroke='#6e7781' stroke-width='1.5'{style} "
                     f"marker-end='url(#fc-arrow)' class='fc-edge fc-edge-{edge['kind']}'/>")
        if edge["label"]:
            (x1, y1), (x2, y2) = points[0], points[1]
            parts.append(f"<text x='{(x1 + x2) / 2 + 5:.0f}' y='{(y1 + y2) / 2 + 4:.0f}' fill='#0969da' "
                         f"font-size='11'>{html.escape(edge['label'])}</text>")
    for node in model["nodes"]:
        cx, y = lay["boxes"][node["id"]]
        x = cx - BOX_W / 2
        color = STATUS_COLORS.get(node["status"], STATUS_COLORS["never"])
        status = "never run" if node["status"] == "never" else node["status"]
        title = html.escape(f"{node['id']}: {node['type']}, {status}"
                            + (f"; stale: {'; '.join(node['stale'])}" if node.get("stale") else ""))
        sub = _fmt_seconds(node["duration"]) if node.get("duration") is not None else node["type"]
        if node.get("tasks", 1) > 1:
            sub += f" · {node['tasks']} tasks"
        outline = f"stroke='{color}'"
        if node.get("stale"):
            sub = f"stale · {sub}"
            outline = f"stroke='{STALE_COLOR}' stroke-dasharray='5,3'"
        parts.append(
            f"<g class='fc-step{' fc-stale' if node.get('stale') else ''}' data-step='{html.escape(node['id'])}'>"
            f"<title>{title}</title>"
            f"<rect x='{x:.0f}' y='{y:.0f}' width='{BOX_W}' height='{BOX_H}' rx='6' fill='white' "
            f"{outline} stroke-width='2'/><circle cx='{x + 14:.0f}' cy='{y + 14:.0f}' r='5' fill='{color}'/>"
            f"<text x='{x + 26:.0f}' y='{y + 18:.0f}' font-weight='600'>{html.escape(node['id'])}</text>"
            f"<text x='{x + 26:.0f}' y='{y + 33:.0f}' font-size='11' fill='#57606a'>{html.escape(sub)}</text></g>")
    parts.append("</svg>")
    return "".join(parts)


def step_statuses(flow_name: str) -> dict[str, str | None]:
    """Each step's status in the flow's latest run of the current namespace."""
    from ..client import Flow
    from ..errors import NotFoundError

    try:
        run = Flow(flow_name).latest_run
    except NotFoundError:
        return {}
    if run is None:
        return {}
    out: dict[str, str | None] = {}
    for step in run.steps():
        tasks = step.tasks()
        if any(t._record.status == "failed" for t in tasks):
            out[step.id] = "failed"
        elif any(t._record.status == "crashed" for t in tasks):  # its run's process is gone
            out[step.id] = "crashed"
        elif any(t._record.status == "running" for t in tasks):
            out[step.id] = "running"
        else:
            out[step.id] = "completed"
    return out
