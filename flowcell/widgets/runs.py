"""The run browser (``%flow_runs``, ``flowcell.browse()``): a paged table of runs and a run view.

The table is one SQL page (LIMIT/OFFSET) of the runs matching the filter, so it
opens as fast on 10,000 runs as on ten.  The front end changes ``namespace``,
``tag_filter``, ``status_filter``, ``sort``, ``descending``, ``page``,
``selected``, ``task`` and ``compare_with``; the kernel answers by filling
``rows``/``total``, ``run``, ``task_detail`` and ``comparison``.
"""

from __future__ import annotations

import datetime
import html
from pathlib import Path
from typing import Any

import traitlets

from ..errors import FlowcellError
from ._base import FlowcellWidget
from .runview import compare_runs, run_rows, run_view, task_detail

_ALL = object()


def _query_tags(tag_filter: list[str], namespace: str) -> tuple[str, ...]:
    # User tags first: the store drives its query by the first tag's index.
    tags = tuple(t.strip() for t in tag_filter if t.strip())
    return tags + ((namespace.strip(),) if namespace.strip() else ())


class RunBrowser(FlowcellWidget):
    """Runs of one flow → a run (graph, timeline, tasks) → a task (artifacts, logs, cards, exception)."""

    flow = traitlets.Unicode("").tag(sync=True)
    namespace = traitlets.Unicode("").tag(sync=True)
    tag_filter = traitlets.List(traitlets.Unicode()).tag(sync=True)
    status_filter = traitlets.Unicode("").tag(sync=True)
    sort = traitlets.Unicode("id").tag(sync=True)
    descending = traitlets.Bool(True).tag(sync=True)
    page = traitlets.Int(0).tag(sync=True)
    page_size = traitlets.Int(20).tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    rows = traitlets.List(traitlets.Dict()).tag(sync=True)
    selected = traitlets.Unicode("").tag(sync=True)
    run = traitlets.Dict().tag(sync=True)
    task = traitlets.Unicode("").tag(sync=True)
    task_detail = traitlets.Dict().tag(sync=True)
    compare_with = traitlets.Unicode("").tag(sync=True)
    comparison = traitlets.Dict().tag(sync=True)

    def __init__(self, flow: str, namespace: str | None | object = _ALL, tags: tuple[str, ...] = (),
                 store: Path | None = None, **kwargs: Any) -> None:
        from ..client.context import current_root, get_namespace

        if namespace is _ALL or namespace is ...:
            namespace = get_namespace()
        self.store = store or current_root()  # read before the widget exists: its first page goes out with it
        kwargs.setdefault("kind", "runs")
        # The first page goes out with the widget's own comm_open, so the table paints
        # with its rows at once (not empty, then filled by a second message).
        ns = str(namespace or "")
        rows, total, error = self._page(flow, _query_tags(list(tags), ns), kwargs.get("status_filter", ""),
                                        kwargs.get("sort", "id"), kwargs.get("descending", True),
                                        kwargs.get("page", 0), kwargs.get("page_size", 20))
        super().__init__(store=self.store, flow=flow, namespace=ns, tag_filter=list(tags), rows=rows, total=total,
                         error=error, **kwargs)
        self.observe(lambda _: self._filters_changed(), names=["namespace", "tag_filter", "status_filter"])
        self.observe(lambda _: self.refresh(), names=["sort", "descending", "page", "page_size"])
        self.observe(lambda _: self._run_selected(), names=["selected"])
        self.observe(lambda _: self._task_selected(), names=["task"])
        self.observe(lambda _: self._compare(), names=["compare_with"])

    def _tags(self) -> tuple[str, ...]:
        return _query_tags(self.tag_filter, self.namespace)

    def _filters_changed(self) -> None:
        if self.page:
            self.page = 0  # observed: refreshes
        else:
            self.refresh()

    def refresh(self) -> None:
        """Re-read the current page of runs (one COUNT and one LIMIT/OFFSET query)."""
        self.rows, self.total, self.error = self._page(self.flow, self._tags(), self.status_filter, self.sort,
                                                       self.descending, self.page, self.page_size)

    def _page(self, flow: str, tags: tuple[str, ...], status: str, sort: str, descending: bool, page: int,
              size: int) -> tuple[list[dict[str, Any]], int, str]:
        """One page of runs, their total and an error message (empty when the query worked)."""
        try:
            rows, total = run_rows(self.meta, flow, tags, status or None, sort, descending, page, size)
            return rows, total, ""
        except (FlowcellError, ValueError) as exc:
            return [], 0, str(exc)

    def _record(self, run_id: str) -> Any:
        try:
            return self.meta.get_run(self.flow, int(run_id))
        except ValueError:
            return None

    def _client_run(self, run_id: str) -> Any:
        from ..client import Run

        rec = self._record(run_id)
        return None if rec is None else Run._of(rec, self.store)

    def _run_selected(self) -> None:
        self.task, self.task_detail, self.compare_with, self.comparison = "", {}, "", {}
        rec = self._record(self.selected) if self.selected else None
        self.run = run_view(self.meta, rec) if rec is not None else {}

    def _task_selected(self) -> None:
        if not self.task:
            self.task_detail = {}
            return
        try:
            self.task_detail = task_detail(self._task(self.task))
        except FlowcellError as exc:
            self.task_detail, self.error = {}, str(exc)

    def _compare(self) -> None:
        a, b = self._client_run(self.selected), self._client_run(self.compare_with)
        self.comparison = compare_runs(a, b) if a is not None and b is not None else {}

    def on_request(self, content: dict[str, Any]) -> None:
        if content.get("type") == "refresh":
            self.refresh()
            if self.selected:
                self._run_selected()

    # -- fallbacks -----------------------------------------------------------------

    @staticmethod
    def _when(ts: float | None) -> str:
        return "" if ts is None else datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")

    @staticmethod
    def _took(d: float | None) -> str:
        return "" if d is None else f"{d:.1f}s"

    def fallback_html(self) -> str:
        cell = "style='padding:2px 10px;border-bottom:1px solid #d0d7de;text-align:left'"
        head = "".join(f"<th {cell}>{h}</th>" for h in ("run", "status", "user", "started", "duration", "tags",
                                                        "reused"))
        rows = "".join(
            "<tr>" + "".join(f"<td {cell}>{html.escape(str(v))}</td>" for v in (
                r["pathspec"], r["status"], r["user"], self._when(r["started"]), self._took(r["duration"]),
                ", ".join(r["tags"]), r["reused"] or "")) + "</tr>" for r in self.rows)
        more = (f"<div>{len(self.rows)} of {self.total} runs</div>" if self.total > len(self.rows) else "")
        return (f"<div><b>{html.escape(self.flow)}</b> runs</div>"
                f"<table style='border-collapse:collapse'><tr>{head}</tr>{rows}</table>{more}")

    def fallback_text(self) -> str:
        if not self.rows:
            return f"no runs of {self.flow}" + (f" in namespace {self.namespace}" if self.namespace else "")
        lines = [f"{r['pathspec']:<24} {r['status']:<9} {r['user']:<10} {self._when(r['started'])}  "
                 f"{self._took(r['duration']):>8}  {', '.join(r['tags'])}" for r in self.rows]
        if self.total > len(self.rows):
            lines.append(f"({len(self.rows)} of {self.total} runs)")
        return "\n".join(lines)


def browse(flow: str | None = None, namespace: Any = _ALL, tags: tuple[str, ...] = ()) -> RunBrowser:
    """``flowcell.browse("MyFlow")``: the run browser (``namespace=None`` for every run)."""
    if flow is None:
        from ..client.context import stores_for
        from ..errors import NotFoundError

        flows = stores_for()[0].flows()
        if not flows:
            raise NotFoundError("No runs recorded yet: run a flow first.")
        flow = flows[0]
    return RunBrowser(flow, namespace, tuple(tags))
