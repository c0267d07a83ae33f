"""Widgets built in the notebook's own kernel from what the store holds.

Each view is a custom widget (anywidget; its front end is an ES module bundled into
``flowcell/widgets/static`` and shipped in the wheel) that also carries a plain HTML
and text fallback in the same mimebundle, so terminal IPython, nbconvert and
GitHub's notebook view still show something useful.  Nothing loads an artifact's
bytes before its preview is opened.

The plain-data builders (:mod:`.runview`, :mod:`.graphmodel`) import no widget
library, so the Flow panel and the SVG fallback use them without ipywidgets.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "ArtifactInspector": "artifacts", "ArtifactsView": "artifacts",
    "RunBrowser": "runs", "browse": "runs",
    "FlowGraph": "graphwidget", "LiveRun": "live", "CardView": "cardview",
    "flow_graph_svg": "graphmodel", "graph_model": "graphmodel", "step_statuses": "graphmodel",
    "compare_runs": "runview", "run_view": "runview",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    # Lazy: the graph's SVG is drawn on every step registration and must not pay
    # for importing anywidget/ipywidgets.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowcell.widgets' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"flowcell.widgets.{module}"), name)
    globals()[name] = value
    return value
