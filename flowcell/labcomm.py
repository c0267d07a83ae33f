"""The kernel's end of the JupyterLab extension: one comm per notebook kernel.

The Python side opens the comm (target ``flowcell``) when the extension loads and
sends the flow's state after every change: the registered steps with their last
status (never run, running, completed, failed), the graph as SVG and the recent
runs.  The front end sends back small requests: ``spin-next`` (spin the cell about
to be executed even if autospin is off) and ``refresh``.  Without JupyterLab (a
terminal, nbclient) nobody answers the comm and nothing else changes.
"""

from __future__ import annotations

from typing import Any

TARGET = "flowcell"


class LabBridge:
    """Keeps the front end's view of one notebook's flow up to date."""

    def __init__(self, magics: Any) -> None:
        self.magics = magics
        self.comm: Any = None
        self.statuses: dict[str, str] = {}

    def open(self) -> None:
        import comm

        try:
            self.comm = comm.create_comm(target_name=TARGET, data=self.state())
        except Exception:  # no front end that can take a comm (terminal IPython)
            self.comm = None
            return
        self.comm.on_msg(self._on_msg)

    def set_status(self, step: str, status: str) -> None:
        self.statuses[step] = status
        self.push()

    def state(self) -> dict[str, Any]:
        """Everything the front end shows, as plain JSON."""
        from .widgets import flow_graph_svg, step_statuses

        flow = self.magics.current_flow()
        latest = step_statuses(flow.name) if flow.steps else {}
        steps = {name: self.statuses.get(name) or latest.get(name) or "never" for name in flow.steps}
        svg = ""
        if flow.steps:
            try:
                from .graph import build_graph

                svg = flow_graph_svg(build_graph(flow), {k: (None if v == "never" else v) for k, v in steps.items()})
            except Exception:  # a step cell that does not parse yet: no picture, still the list
                svg = ""
        return {"type": "state", "flow": flow.name, "steps": steps, "svg": svg, "runs": self._runs(flow.name)}

    @staticmethod
    def _runs(flow: str) -> list[dict[str, Any]]:
        from .client import Flow
        from .errors import NotFoundError

        try:
            runs = Flow(flow).runs()[:10]
        except NotFoundError:
            return []
        return [{"id": r.id, "pathspec": r.pathspec, "status": r.status, "tags": sorted(r.user_tags)} for r in runs]

    def push(self) -> None:
        if self.comm is not None:
            try:
                self.comm.send(self.state())
            except Exception:  # the front end went away; keep working without it
                self.comm = None

    def _on_msg(self, msg: dict[str, Any]) -> None:
        data = msg.get("content", {}).get("data", {}) or {}
        kind = data.get("type")
        if kind == "spin-next":
            self.magics._force_spin = True
        elif kind == "refresh":
            self.push()
