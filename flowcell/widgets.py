"""Widgets built in the notebook's own kernel from what the store holds.

Each view is an ipywidgets tree plus a plain HTML/text fallback in the same
mimebundle, so terminal IPython, nbconvert and GitHub's notebook view still show
something useful.  Artifacts are loaded only when their preview is opened.
"""

from __future__ import annotations

import html
from typing import Any

from .preview import preview_html, summary

_STATUS_COLORS = {"completed": "#2da44e", "failed": "#cf222e", "running": "#0969da", None: "#8c959f"}


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


class _Displayable:
    """Widget view + HTML fallback + text fallback in one mimebundle."""

    widget: Any

    def fallback_html(self) -> str:
        raise NotImplementedError

    def fallback_text(self) -> str:
        raise NotImplementedError

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        bundle: dict[str, Any] = {}
        try:
            bundle.update(self.widget._repr_mimebundle_(**kwargs) or {})
        except Exception:
            pass  # no front end for widgets (terminal IPython): fall back below
        bundle["text/html"] = self.fallback_html()
        bundle["text/plain"] = self.fallback_text()
        return bundle


class ArtifactsView(_Displayable):
    """A task's artifacts: name, type, size, whether the step created or changed it; lazy previews."""

    def __init__(self, task: Any, created: list[str] | tuple[str, ...] = (), changed: list[str] | tuple[str, ...] = ()) -> None:
        import ipywidgets as w

        self.task = task
        self.created, self.changed = set(created), set(changed)
        self.artifacts = sorted(task.artifacts, key=lambda a: a.id)
        self._loaded: dict[str, str] = {}
        self.table = w.HTML(self._table_html())
        self.previews = w.Accordion(children=[w.HTML("<i>open to load the preview</i>") for _ in self.artifacts])
        for i, art in enumerate(self.artifacts):
            self.previews.set_title(i, f"{art.id} ({self._flag(art.id) or 'passed on'})")
        self.previews.observe(self._open, names="selected_index")
        self.widget = w.VBox([self.table, self.previews])

    def _flag(self, name: str) -> str:
        return "created" if name in self.created else ("changed" if name in self.changed else "")

    def _table_html(self) -> str:
        rows = "".join(
            f"<tr><td><b>{html.escape(a.id)}</b></td><td>{html.escape(a.type)}</td><td>{_size(a.size)}</td>"
            f"<td>{self._flag(a.id)}</td></tr>" for a in self.artifacts)
        return (f"<div><b>{html.escape(self.task.pathspec)}</b>: {len(self.artifacts)} artifacts</div>"
                f"<table><tr><th>name</th><th>type</th><th>size</th><th>this step</th></tr>{rows}</table>")

    def preview(self, name: str) -> str:
        """HTML preview of one artifact (loaded on first request)."""
        if name not in self._loaded:
            try:
                value = self.task[name].data
                self._loaded[name] = f"<div>{html.escape(summary(value))}</div>{preview_html(value)}"
            except Exception as exc:  # show why, in place of the preview
                self._loaded[name] = f"<span style='color:#cf222e'>{html.escape(type(exc).__name__)}: {html.escape(str(exc))}</span>"
        return self._loaded[name]

    def _open(self, change: dict[str, Any]) -> None:
        index = change.get("new")
        if index is not None:
            self.previews.children[index].value = self.preview(self.artifacts[index].id)

    def fallback_html(self) -> str:
        return self._table_html()

    def fallback_text(self) -> str:
        lines = [f"{self.task.pathspec}: {len(self.artifacts)} artifacts"]
        lines += [f"  {a.id:<24} {a.type:<28} {_size(a.size):>10} {self._flag(a.id)}" for a in self.artifacts]
        return "\n".join(lines)


def _layers(graph: Any) -> dict[str, int]:
    order = graph.sorted_nodes()
    depth = {name: 0 for name in order}
    for _ in order:  # longest path from start; the graph is acyclic
        for name in order:
            for out in graph[name].out_funcs:
                if out in depth and depth[out] < depth[name] + 1:
                    depth[out] = depth[name] + 1
    return depth


def flow_graph_svg(graph: Any, statuses: dict[str, str | None] | None = None) -> str:
    """The flow's DAG as an SVG, each step coloured by its last status."""
    statuses = statuses or {}
    depth = _layers(graph)
    rows: dict[int, list[str]] = {}
    for name in graph.sorted_nodes():
        rows.setdefault(depth[name], []).append(name)
    box_w, box_h, gap_x, gap_y = 150, 34, 30, 46
    width = max(len(r) for r in rows.values()) * (box_w + gap_x) + gap_x
    height = len(rows) * (box_h + gap_y) + gap_y
    pos: dict[str, tuple[float, float]] = {}
    for level, names in rows.items():
        offset = (width - len(names) * (box_w + gap_x) + gap_x) / 2
        for i, name in enumerate(names):
            pos[name] = (offset + i * (box_w + gap_x), gap_y / 2 + level * (box_h + gap_y))
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width:.0f}' height='{height:.0f}' "
             "font-family='system-ui,sans-serif' font-size='13'>",
             "<defs><marker id='fc-arrow' markerWidth='8' markerHeight='8' refX='7' refY='4' orient='auto'>"
             "<path d='M0,0 L8,4 L0,8 z' fill='#57606a'/></marker></defs>"]
    for name in graph.sorted_nodes():
        node = graph[name]
        x1, y1 = pos[name]
        for out in node.out_funcs:
            if out not in pos:
                continue
            x2, y2 = pos[out]
            label = ""
            if node.type == "split-switch":
                case = next((k for k, v in node.switch_cases.items() if v == out), "")
                label = (f"<text x='{(x1 + x2) / 2 + box_w / 2 + 4:.0f}' y='{(y1 + y2) / 2 + box_h / 2:.0f}' "
                         f"fill='#0969da' font-size='11'>{html.escape(str(case))}</text>")
            dash = " stroke-dasharray='5,3'" if node.type == "foreach" else ""
            parts.append(f"<line x1='{x1 + box_w / 2:.0f}' y1='{y1 + box_h:.0f}' x2='{x2 + box_w / 2:.0f}' "
                         f"y2='{y2 - 2:.0f}' stroke='#57606a' stroke-width='1.5'{dash} marker-end='url(#fc-arrow)'/>"
                         + label)
    for name in graph.sorted_nodes():
        x, y = pos[name]
        status = statuses.get(name)
        color = _STATUS_COLORS.get(status, _STATUS_COLORS[None])
        kind = graph[name].type or ""
        title = html.escape(f"{name}: {kind}, {status or 'never run'}")
        parts.append(f"<g class='fc-step' data-step='{html.escape(name)}'><title>{title}</title><rect x='{x:.0f}' y='{y:.0f}' width='{box_w}' height='{box_h}' rx='6' "
                     f"fill='white' stroke='{color}' stroke-width='2.5'/>"
                     f"<circle cx='{x + 14:.0f}' cy='{y + box_h / 2:.0f}' r='5' fill='{color}'/>"
                     f"<text x='{x + 26:.0f}' y='{y + box_h / 2 + 4:.0f}'>{html.escape(name)}</text></g>")
    parts.append("</svg>")
    return "".join(parts)


def step_statuses(flow_name: str) -> dict[str, str | None]:
    """Each step's status in the flow's latest run of the current namespace."""
    from .client import Flow
    from .errors import NotFoundError

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
        elif any(t._record.status == "running" for t in tasks):
            out[step.id] = "running"
        else:
            out[step.id] = "completed"
    return out


class RunBrowser(_Displayable):
    """Runs -> steps -> tasks -> artifacts, logs and cards; filter by namespace and tags; compare runs."""

    def __init__(self, flow: str, namespace: str | None | object = ..., tags: tuple[str, ...] = ()) -> None:
        import ipywidgets as w

        from .client import get_namespace

        self.flow = flow
        ns = get_namespace() if namespace is ... else namespace
        self.namespace = w.Text(value=ns or "", description="namespace", placeholder="empty: all runs")
        self.tags = w.Text(value=", ".join(tags), description="tags", placeholder="tag1, tag2")
        self.refresh_button = w.Button(description="Refresh")
        self.runs = w.Select(description="runs", rows=8, layout=w.Layout(width="100%"))
        self.steps = w.Select(description="steps", rows=6)
        self.tasks = w.Select(description="tasks", rows=6)
        self.detail = w.Tab(children=[w.HTML(), w.HTML(), w.HTML()])
        for i, title in enumerate(("artifacts", "logs", "cards")):
            self.detail.set_title(i, title)
        self.compare_with = w.Dropdown(description="compare with")
        self.comparison = w.HTML()
        self.refresh_button.on_click(lambda _: self.refresh())
        self.runs.observe(lambda _: self._run_selected(), names="value")
        self.steps.observe(lambda _: self._step_selected(), names="value")
        self.tasks.observe(lambda _: self._task_selected(), names="value")
        self.compare_with.observe(lambda _: self._compare(), names="value")
        self.widget = w.VBox([w.HBox([self.namespace, self.tags, self.refresh_button]), self.runs,
                              w.HBox([self.steps, self.tasks]), self.detail,
                              w.HBox([self.compare_with]), self.comparison])
        self._runs: list[Any] = []
        self.refresh()

    def _list_runs(self) -> list[Any]:
        from .client import Flow, get_namespace, namespace
        from .errors import NotFoundError

        before = get_namespace()
        namespace(self.namespace.value.strip() or None)
        try:
            tags = tuple(t.strip() for t in self.tags.value.split(",") if t.strip())
            return Flow(self.flow).runs(*tags)
        except NotFoundError:
            return []
        finally:
            namespace(before)

    def refresh(self) -> None:
        self._runs = self._list_runs()
        options = [(self._run_label(r), r.id) for r in self._runs]
        self.runs.options = options
        self.compare_with.options = [("-", "")] + options
        if options:
            self.runs.value = options[0][1]

    @staticmethod
    def _run_label(run: Any) -> str:
        rec = run._record
        took = f"{rec.finished_at - rec.created_at:.1f}s" if rec.finished_at else "running"
        tags = ",".join(sorted(run.user_tags))
        return f"{run.pathspec}  {rec.status:<9} {rec.user:<10} {run.created_at:%Y-%m-%d %H:%M:%S}  {took}  {tags}"

    def _run(self, run_id: str | None) -> Any:
        return next((r for r in self._runs if r.id == run_id), None)

    def _run_selected(self) -> None:
        run = self._run(self.runs.value)
        self.steps.options = [s.id for s in reversed(run.steps())] if run else []

    def _step_selected(self) -> None:
        run = self._run(self.runs.value)
        if run is None or not self.steps.value:
            self.tasks.options = []
            return
        self.tasks.options = [(f"{t.id} {'ok' if t.successful else t._record.status}", t.id)
                              for t in run[self.steps.value].tasks()]

    def _task_selected(self) -> None:
        run = self._run(self.runs.value)
        if run is None or not self.steps.value or not self.tasks.value:
            return
        from .cards import get_cards

        task = run[self.steps.value][self.tasks.value]
        self.current_task = task
        view = ArtifactsView(task)
        self.detail.children[0].value = view.fallback_html() + "".join(
            f"<details><summary>{html.escape(a.id)}</summary>{view.preview(a.id)}</details>" for a in view.artifacts)
        error = f"<h4>exception</h4><pre>{html.escape(task.traceback or '')}</pre>" if task.exception else ""
        self.detail.children[1].value = (f"<h4>stdout</h4><pre>{html.escape(task.stdout)}</pre>"
                                         f"<h4>stderr</h4><pre>{html.escape(task.stderr)}</pre>{error}")
        cards = get_cards(task)
        self.detail.children[2].value = "".join(c._repr_html_() for c in cards) or "<i>no cards</i>"

    def _compare(self) -> None:
        self.comparison.value = compare_runs_html(self._run(self.runs.value), self._run(self.compare_with.value))

    def fallback_html(self) -> str:
        rows = "".join(f"<tr><td>{html.escape(r.pathspec)}</td><td>{r._record.status}</td><td>{html.escape(r._record.user)}</td>"
                       f"<td>{html.escape(', '.join(sorted(r.user_tags)))}</td></tr>" for r in self._runs[:50])
        return f"<table><tr><th>run</th><th>status</th><th>user</th><th>tags</th></tr>{rows}</table>"

    def fallback_text(self) -> str:
        return "\n".join(self._run_label(r) for r in self._runs[:50]) or f"no runs of {self.flow}"


def _compare_cell(art: Any) -> str:
    return preview_html(art.data, compact=True) if art is not None else "<i>absent</i>"


def compare_runs_html(a: Any, b: Any) -> str:
    """Artifacts of two runs' end tasks side by side; differing values are marked."""
    if a is None or b is None or a.end_task is None or b.end_task is None:
        return ""
    left = {x.id: x for x in a.end_task.artifacts}
    right = {x.id: x for x in b.end_task.artifacts}
    rows = []
    for name in sorted(set(left) | set(right)):
        la, ra = left.get(name), right.get(name)
        same = la is not None and ra is not None and la.sha == ra.sha
        mark = "" if same else " style='background:#fff8c5'"
        rows.append(f"<tr{mark}><td><b>{html.escape(name)}</b></td><td>{_compare_cell(la)}</td><td>{_compare_cell(ra)}</td></tr>")
    return (f"<table><tr><th>artifact</th><th>{html.escape(a.pathspec)}</th><th>{html.escape(b.pathspec)}</th></tr>"
            f"{''.join(rows)}</table>")


def browse(flow: str | None = None, namespace: Any = ..., tags: tuple[str, ...] = ()) -> RunBrowser:
    """``flowcell.browse("MyFlow")``: the run browser."""
    if flow is None:
        from .client.context import stores_for

        meta, _ = stores_for()
        flows = meta.flows()
        if not flows:
            from .errors import NotFoundError

            raise NotFoundError("No runs recorded yet: run a flow first.")
        flow = flows[0]
    return RunBrowser(flow, namespace, tags)
