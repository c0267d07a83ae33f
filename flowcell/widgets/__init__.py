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

import importlib
from typing import Any

_LAZY = {
    "ArtifactInspector": "artifacts", "ArtifactsView": "artifacts",
    "RunBrowser": "runs", "browse": "runs",
    "FlowGraph": "graphwidget", "LiveRun": "live", "CardView": "cardview",
    "flow_graph_svg": "graphmodel", "graph_model": "graphmodel", "step_statuses": "graphmodel",
    "compare_runs": "runview", "run_view": "runview",
}

__all__ = [*_LAZY, "warm"]

#: What a notebook's first widget needs (``%flow_runs``, ``%flow_graph``, a spin's result): the
#: widget modules (anywidget, ipywidgets) and the Client they read the store with.
_WARM = ("flowcell.widgets.runs", "flowcell.widgets.graphwidget", "flowcell.widgets.live",
         "flowcell.widgets.artifacts", "flowcell.widgets.cardview", "flowcell.client")


def warm() -> None:
    """Import the widget modules (and with them anywidget, ipywidgets and the Client) ahead of use.

    ``%load_ext flowcell`` calls this on a background thread, so the first
    ``%flow_runs`` of a kernel does not wait 0.1-0.5 s for those imports.  Only modules
    are imported here: no widget, comm or store connection is made off the main thread.
    """
    for module in _WARM:
        try:
            importlib.import_module(module)
        except Exception:  # noqa: BLE001 -- harmless here: the cell that needs the module imports it
            return  # again and shows the real error there, in the user's cell


def __getattr__(name: str) -> Any:
    # Lazy: the graph's SVG is drawn on every step registration and must not pay
    # for importing anywidget/ipywidgets.
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowcell.widgets' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"flowcell.widgets.{module}"), name)
    globals()[name] = value
    return value
