"""``%flow_graph``: the flow's graph as a widget, laid out by dagre in the front end.

A click on a step sends a DOM event (``flowcell:step-click``) up the page: the
JupyterLab extension answers it by scrolling to the step's cell. Where nobody
answers (Notebook 7, VS Code), the widget asks the kernel for the step's latest
task and lists its artifacts, with previews on demand.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import traitlets

from ._base import FlowcellWidget
from .graphmodel import graph_model, model_svg

#: What the widget draws: the flow's name, its FlowGraph and each step's last status.
GraphSource = Callable[[], tuple[str, Any, dict[str, str | None]]]
#: The steps stale against the latest run, with the reasons (marked on the graph).
StaleSource = Callable[[], dict[str, list[str]]]


class FlowGraph(FlowcellWidget):
    """The flow's DAG with each step's last status; redrawn by :meth:`refresh`."""

    flow = traitlets.Unicode("").tag(sync=True)
    graph = traitlets.Dict().tag(sync=True)
    step_detail = traitlets.Dict().tag(sync=True)

    def __init__(self, source: GraphSource, stale: StaleSource | None = None) -> None:
        self._source = source
        self._stale = stale
        self._handle: Any = None
        super().__init__(kind="graph")
        self.refresh()

    def show(self) -> None:
        """Display the graph in the current cell (later refreshes update that output)."""
        from IPython.display import display

        self._handle = display(self, display_id=True)

    def refresh(self) -> None:
        """Re-read the graph and the statuses (after a step is registered, spun or run)."""
        name, graph, statuses = self._source()
        model = graph_model(graph, statuses, stale=self._stale() if self._stale else None)
        if (name, model) == (self.flow, self.graph):
            return
        self.flow, self.graph = name, model
        if self._handle is not None:
            # The saved notebook keeps the latest picture too (its SVG fallback).
            self._handle.update(self)

    def on_request(self, content: dict[str, Any]) -> None:
        if content.get("type") == "step":
            self.show_step(str(content.get("step", "")))

    def show_step(self, step: str) -> None:
        """List the artifacts of ``step``'s task in the flow's latest run (no artifact is loaded)."""
        from ..client import Flow
        from ..errors import NotFoundError

        try:
            run = Flow(self.flow).latest_run
            task = run[step].task if run is not None and step in run else None
        except NotFoundError:
            task = None
        if task is None:
            self.step_detail = {"step": step, "headline": f"{step}: no run of this step yet; run the flow or spin it.",
                                "task": "", "artifacts": []}
            return
        self.step_detail = {
            "step": step, "task": task.pathspec, "headline": f"{step} in {task.pathspec} ({task.status})",
            "artifacts": [{"name": a.id, "type": a.type, "size": a.size}
                          for a in sorted(task.artifacts, key=lambda a: a.id) if not a.id.startswith("_")]}

    def fallback_html(self) -> str:
        return model_svg(self.graph) if self.graph.get("nodes") else ""

    def fallback_text(self) -> str:
        return f"{self.flow}: " + " -> ".join(n["id"] for n in self.graph.get("nodes", []))

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        bundle = super()._repr_mimebundle_(**kwargs)
        # GitHub and nbconvert show the picture as an image as well as inline HTML.
        bundle["image/svg+xml"] = bundle.pop("text/html")
        return bundle
