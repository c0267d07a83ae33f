"""The kernel's end of the Lab extension's comm, fed fake front-end comms (no kernel, no browser).

The browser tests in test_labextension.py check the same behaviour end to end; these pin
the protocol's edge cases: several front ends at once, one that goes away, a reconnect.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from flowcell import __version__
from flowcell.labcomm import TARGET, LabBridge
from flowcell.magics import FlowcellMagics


class FrontEndComm:
    """What ipykernel hands the target for a comm a front end opened; records what it is sent."""

    def __init__(self, comm_id: str, fail: bool = False) -> None:
        self.comm_id = comm_id
        self.sent: list[dict[str, Any]] = []
        self.fail = fail
        self.closed = False
        self.msg_handler: Callable[[dict[str, Any]], None] | None = None
        self.close_handler: Callable[[dict[str, Any]], None] | None = None

    def send(self, data: dict[str, Any]) -> None:
        if self.fail:
            raise OSError("the front end went away")
        self.sent.append(data)

    def close(self) -> None:
        self.closed = True

    def on_msg(self, handler: Callable[[dict[str, Any]], None]) -> None:
        self.msg_handler = handler

    def on_close(self, handler: Callable[[dict[str, Any]], None]) -> None:
        self.close_handler = handler

    def receive(self, data: dict[str, Any]) -> None:
        assert self.msg_handler is not None
        self.msg_handler({"content": {"data": data}})

    def closed_by_front_end(self) -> None:
        assert self.close_handler is not None
        self.close_handler({})


@pytest.fixture
def magics() -> Any:
    shell = InteractiveShell.instance()
    m = FlowcellMagics(shell=shell)
    shell.register_magics(m)
    m.flowcell("autospin off")
    yield m
    m.bridge.close()


def _open(bridge: LabBridge, comm_id: str, **kwargs: Any) -> FrontEndComm:
    comm = FrontEndComm(comm_id, **kwargs)
    bridge._on_open(comm, {"content": {"data": {"type": "hello"}}})
    return comm


def test_a_front_end_that_connects_gets_the_state_with_the_version(magics: Any) -> None:
    magics.flow("ProtoFlow")
    magics.step("start", "self.next(self.end)")
    comm = _open(magics.bridge, "tab-1")
    assert len(comm.sent) == 1
    state = comm.sent[0]
    assert state["type"] == "state" and state["flow"] == "ProtoFlow"
    assert state["steps"] == {"start": "never"}
    assert state["version"] == __version__


def test_the_state_carries_the_graph_model_the_flow_panel_lays_out(magics: Any) -> None:
    """Issue 17: the Flow panel draws the same dagre layout as %flow_graph, from the graph's model."""
    comm = _open(magics.bridge, "tab-1")
    magics.step("start", "self.next(self.a, self.b)")
    assert comm.sent[-1]["graph"] == {"nodes": [{"id": "start", "type": "split", "status": "never"}], "edges": []}, \
        "a flow being written shows the steps registered so far"
    magics.step("a", "self.next(self.join)")
    magics.step("b", "self.next(self.join)")
    magics.step("join(inputs)", "self.next(self.end)")
    magics.step("end", "pass")
    graph = comm.sent[-1]["graph"]
    assert [n["id"] for n in graph["nodes"]] == ["start", "a", "b", "join", "end"]
    kinds = {(e["source"], e["target"]): e["kind"] for e in graph["edges"]}
    assert kinds == {("start", "a"): "branch", ("start", "b"): "branch", ("a", "join"): "join",
                     ("b", "join"): "join", ("join", "end"): "linear"}
    magics.bridge.set_status("a", "running")
    assert {n["id"]: n["status"] for n in comm.sent[-1]["graph"]["nodes"]}["a"] == "running"
    assert "svg" not in comm.sent[-1], "the kernel no longer draws the panel's picture"


def test_every_connected_front_end_gets_each_change_and_a_closed_one_none(magics: Any) -> None:
    first, second = _open(magics.bridge, "tab-1"), _open(magics.bridge, "tab-2")
    magics.step("start", "self.next(self.end)")
    assert first.sent[-1]["steps"] == second.sent[-1]["steps"] == {"start": "never"}
    first.closed_by_front_end()
    before = len(first.sent)
    magics.step("end", "pass")
    assert len(first.sent) == before
    assert list(second.sent[-1]["steps"]) == ["start", "end"]


def test_a_front_end_that_went_away_is_dropped_and_the_others_keep_their_view(magics: Any) -> None:
    gone, alive = _open(magics.bridge, "tab-1"), _open(magics.bridge, "tab-2")
    gone.fail = True
    magics.step("start", "self.next(self.end)")
    assert set(magics.bridge.comms) == {"tab-2"}
    assert alive.sent[-1]["steps"] == {"start": "never"}


def test_refresh_answers_only_the_front_end_that_asked(magics: Any) -> None:
    first, second = _open(magics.bridge, "tab-1"), _open(magics.bridge, "tab-2")
    first.receive({"type": "refresh"})
    assert (len(first.sent), len(second.sent)) == (2, 1)


def test_spin_next_forces_the_next_step_cell_to_spin(magics: Any) -> None:
    comm = _open(magics.bridge, "tab-1")
    comm.receive({"type": "spin-next"})
    assert magics._force_spin is True


def test_the_target_is_registered_once_and_removed_on_unload(magics: Any) -> None:
    import comm

    manager = comm.get_comm_manager()
    magics.bridge.open()
    assert manager.targets.get(TARGET) == magics.bridge._on_open
    magics.bridge.open()  # loading twice keeps one target, not two
    assert manager.targets.get(TARGET) == magics.bridge._on_open
    magics.bridge.close()
    assert TARGET not in manager.targets


def test_no_state_is_computed_while_no_front_end_is_connected(magics: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    monkeypatch.setattr(magics.bridge, "state", lambda: calls.append(1) or {})
    magics.step("start", "self.next(self.end)")
    assert calls == []


def test_the_cells_message_drops_deleted_cells_and_pushes_the_new_state(magics: Any) -> None:
    comm = _open(magics.bridge, "tab-1")
    magics._cell_id = "cell-a"
    magics.step("start", "self.next(self.end)")
    magics._cell_id = "cell-b"
    magics.step("end", "pass")
    sent = len(comm.sent)
    comm.receive({"type": "cells", "ids": ["cell-b"]})
    assert list(magics.current_flow().steps) == ["end"]
    assert len(comm.sent) == sent + 1 and comm.sent[-1]["steps"] == {"end": "never"}
    comm.receive({"type": "cells", "ids": ["cell-b"]})  # nothing changed: nothing sent
    assert len(comm.sent) == sent + 1
