"""The kernel's end of the JupyterLab extension: a comm per connected front end.

When the extension loads it registers the comm target ``flowcell`` and announces
itself with a one-shot comm, so front ends already open connect at once.  Every front
end (a page load or reload, a reopened notebook, a second browser tab, a kernel
restart that loads flowcell again) opens its own comm to that target and gets the
flow's state in reply: the steps with their last status (never run, running,
completed, failed — this kernel's spins first, else the latest run in the store), the
steps that are stale against the latest run with the reasons (see
:mod:`flowcell.staleness`), the graph as nodes and typed edges (the front end lays it
out with dagre), the recent runs and flowcell's version.  After every change the state
is sent on each open comm.

The front end sends small requests: ``spin-next`` (spin the cell about to be executed
even if autospin is off), ``refresh``, and ``cells`` with the ids of the notebook's
cells in order, so cells deleted in the front end leave the flow.  Without a front
end (a terminal, nbclient) no comm is opened and nothing else changes.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

TARGET = "flowcell"


class LabBridge:
    """Keeps every front end's view of one notebook's flow up to date."""

    def __init__(self, magics: Any) -> None:
        self.magics = magics
        self.comms: dict[str, Any] = {}
        self.statuses: dict[str, str] = {}
        self._manager: Any = None

    def open(self) -> None:
        """Accept front ends' comms from now on, and tell those already connected."""
        import comm

        self._manager = comm.get_comm_manager()
        self._manager.register_target(TARGET, self._on_open)
        # Front ends connect with their own comm in reply; this one has said all it had to.
        announce = comm.create_comm(target_name=TARGET, data={"type": "loaded", "version": __version__})
        announce.close()

    def close(self) -> None:
        """Stop serving front ends (``%unload_ext flowcell``)."""
        if self._manager is not None:
            self._manager.unregister_target(TARGET, self._on_open)
            self._manager = None
        for comm in list(self.comms.values()):
            comm.close()
        self.comms.clear()

    def _on_open(self, comm: Any, msg: dict[str, Any]) -> None:
        comm_id = comm.comm_id
        self.comms[comm_id] = comm
        comm.on_msg(lambda m: self._on_msg(comm, m))
        comm.on_close(lambda _m: self.comms.pop(comm_id, None))
        self._send(comm, self.state())

    def set_status(self, step: str, status: str) -> None:
        self.statuses[step] = status
        self.push()

    def state(self) -> dict[str, Any]:
        """Everything the front end shows, as plain JSON."""
        from .widgets import graph_model, step_statuses

        flow = self.magics.current_flow()
        # The store knows steps this kernel has not registered yet (after a restart).
        latest = {k: v for k, v in step_statuses(flow.name).items() if v}
        names = list(flow.steps) + [name for name in latest if name not in flow.steps]
        steps = {name: self.statuses.get(name) or latest.get(name) or "never" for name in names}
        graph = None
        stale = self._stale(flow)
        if flow.steps:
            try:
                # The magics build the graph once per change of the cells; the Flow panel lays
                # out this model with dagre, like the %flow_graph widget.
                graph = graph_model(self.magics.graph(flow), {k: (None if v == "never" else v) for k, v in steps.items()},
                                    stale=stale.get("steps"))
            except Exception:  # a step cell that does not parse yet: no picture, still the list
                graph = None
        return {"type": "state", "flow": flow.name, "steps": steps, "graph": graph, "runs": self._runs(flow.name),
                "stale": stale, "version": __version__}

    def _stale(self, flow: Any) -> dict[str, Any]:
        """``{"run": "12", "steps": {step: [reason, ...]}}`` against the latest run; empty without one."""
        from .staleness import latest_reasons

        run, reasons = latest_reasons(flow, self.magics.graph)
        return {"run": run, "steps": reasons} if run is not None else {}

    @staticmethod
    def _runs(flow: str) -> list[dict[str, Any]]:
        from .client import Flow
        from .errors import NotFoundError

        try:
            runs = Flow(flow)._newest(10)
        except NotFoundError:
            return []
        return [{"id": r.id, "pathspec": r.pathspec, "status": r.status, "tags": sorted(r.user_tags)} for r in runs]

    def push(self) -> None:
        """Send the state to every connected front end (computed once, only if one is connected)."""
        if not self.comms:
            return
        state = self.state()
        for comm in list(self.comms.values()):
            self._send(comm, state)

    def _send(self, comm: Any, state: dict[str, Any]) -> None:
        try:
            comm.send(state)
        except Exception:  # that front end went away; the others keep their view
            self.comms.pop(comm.comm_id, None)

    def _on_msg(self, comm: Any, msg: dict[str, Any]) -> None:
        data = msg.get("content", {}).get("data", {}) or {}
        kind = data.get("type")
        if kind == "spin-next":
            self.magics._force_spin = True
        elif kind == "refresh":
            self._send(comm, self.state())
        elif kind == "cells":
            ids = [str(i) for i in data.get("ids") or []]
            # The flow registry drops %%flow and %%step cells whose id is not among them.
            if self.magics.retain_cells(ids):
                self.push()
