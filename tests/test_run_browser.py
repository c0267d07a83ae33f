"""The run browser and the metadata paging under it, driven through the widget's comm (no browser)."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from conftest import run
from flowcell.store.metadata import MetadataStore

FOREACH_FLOW = """
%%flow BrowseFlow
from flowcell import Parameter
alpha = Parameter("alpha", default=1)
%%step start
self.cities = ["Paris", "Oslo", "Lima"]
self.next(self.visit, foreach="cities")
%%step visit
import sys
print("visiting", self.input)
print("warn", self.input, file=sys.stderr)
self.city = self.input.upper()
self.next(self.join)
%%step join(inputs)
self.cities_seen = sorted(i.city for i in inputs)
self.score = len(self.cities_seen) * self.alpha
self.next(self.end)
%%step end
pass
"""


class RecordingComm:
    """Stands in for the front end: records every message a widget sends."""

    comm_id = "recording"
    kernel = "Truthy"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.messages: list[dict[str, Any]] = []
        self.opened = kwargs  # what comm_open carried: the widget's first state

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, handler: Any) -> None:
        pass

    def send(self, data: Any = None, metadata: Any = None, buffers: Any = None) -> None:
        self.messages.append(data or {})

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> list[RecordingComm]:
    import comm

    made: list[RecordingComm] = []

    def create(**kwargs: Any) -> RecordingComm:
        made.append(RecordingComm(**kwargs))
        return made[-1]

    monkeypatch.setattr(comm, "create_comm", create)
    return made


def front_end_sets(widget: Any, **state: Any) -> None:
    """What the browser sends when the user changes a control: a comm 'update' message."""
    widget._handle_msg({"content": {"data": {"method": "update", "state": state, "buffer_paths": []}},
                        "buffers": []})


def front_end_asks(widget: Any, **content: Any) -> None:
    """A custom message from the browser (open a preview, refresh, click a step)."""
    widget._handle_msg({"content": {"data": {"method": "custom", "content": content}}, "buffers": []})


def sent_state(comms: list[RecordingComm], key: str) -> list[Any]:
    """Values of ``key`` that reached the front end, in order."""
    return [m["state"][key] for c in comms for m in c.messages
            if m.get("method") == "update" and key in m.get("state", {})]


def _fill(meta: MetadataStore, flow: str, n: int) -> None:
    with meta.transaction() as cur:
        for i in range(1, n + 1):
            status = "failed" if i % 10 == 0 else "completed"
            cur.execute("INSERT INTO runs (flow, run_number, user, status, created_at, finished_at, params)"
                        " VALUES (?, ?, ?, ?, ?, ?, '{}')", (flow, i, "u" if i % 2 else "v", status, 1000.0 + i,
                                                             1000.0 + i + (i % 7)))
            cur.executemany("INSERT INTO run_tags (flow, run_number, tag, system) VALUES (?, ?, ?, ?)",
                            [(flow, i, "user:u" if i % 2 else "user:v", 1)] + ([(flow, i, "rare", 0)] if i % 25 == 0 else []))


def test_metadata_pages_sorts_counts_and_filters(private_store: Any) -> None:
    meta = MetadataStore(private_store)
    _fill(meta, "F", 100)
    page = meta.runs("F", limit=10, offset=20)
    assert [r.run_number for r in page] == list(range(80, 70, -1))
    assert meta.count_runs("F") == 100 and meta.count_runs("F", ("rare",)) == 4
    assert meta.count_runs("F", ("user:u",), status="failed") == 0 and meta.count_runs("F", status="failed") == 10
    assert [r.run_number for r in meta.runs("F", ("rare", "user:v"), limit=2, offset=1)] == [50]
    longest = meta.runs("F", limit=3, sort="duration")
    assert [r.finished_at - r.created_at for r in longest] == [6, 6, 6]  # type: ignore[operator]
    assert [r.run_number for r in longest] == [97, 90, 83], "ties by newest run"
    assert [r.run_number for r in meta.runs("F", limit=2, sort="started", descending=False)] == [1, 2]
    with pytest.raises(ValueError, match="Cannot sort runs by 'nope'"):
        meta.runs("F", sort="nope")


def test_run_browser_table_pages_sorts_and_filters_through_the_comm(private_store: Any,
                                                                    comms: list[RecordingComm]) -> None:
    from flowcell.widgets import RunBrowser

    _fill(MetadataStore(private_store), "F", 45)
    browser = RunBrowser("F", namespace=None)
    assert browser.total == 45 and [r["id"] for r in browser.rows][:3] == ["45", "44", "43"]
    assert len(browser.rows) == 20
    front_end_sets(browser, page=2)
    assert [r["id"] for r in browser.rows] == ["5", "4", "3", "2", "1"]
    front_end_sets(browser, status_filter="failed")
    assert browser.page == 0, "a new filter starts at the first page"
    assert [r["id"] for r in browser.rows] == ["40", "30", "20", "10"]
    front_end_sets(browser, status_filter="", tag_filter=["rare"], namespace="user:u")
    assert [r["id"] for r in browser.rows] == ["25"] and browser.total == 1
    front_end_sets(browser, tag_filter=[], namespace="", sort="duration", descending=True)
    assert browser.rows[0]["duration"] == 6 and browser.rows[0]["id"] == "41"
    sent = sent_state(comms, "rows")
    assert sent and sent[-1][0]["id"] == "41", "the rows reached the front end"
    text = browser.fallback_text()
    assert "F/41" in text and "(20 of 45 runs)" in text
    assert "<table" in browser.fallback_html() and "F/41" in browser.fallback_html()


def test_the_first_page_of_runs_goes_out_with_the_widgets_comm_open(private_store: Any,
                                                                    comms: list[RecordingComm]) -> None:
    """Issue 17: the table paints with its rows at once, not empty and then filled by a second message."""
    from flowcell.widgets import RunBrowser

    _fill(MetadataStore(private_store), "F", 45)
    RunBrowser("F", namespace=None, tags=("rare",))
    state = next(c.opened["data"]["state"] for c in comms if c.opened["data"]["state"].get("kind") == "runs")
    assert state["total"] == 1 and [r["id"] for r in state["rows"]] == ["25"]
    assert sent_state(comms, "rows") == [], "no second message was needed for the first page"


def test_an_open_browser_keeps_reading_its_store_when_the_client_moves(private_store: Any, tmp_path: Any,
                                                                      comms: list[RecordingComm]) -> None:
    """A widget reads the store it was made for (``widget.store``), whatever the Client points at later."""
    from flowcell.client import context
    from flowcell.widgets import RunBrowser

    _fill(MetadataStore(private_store), "F", 3)
    browser = RunBrowser("F", namespace=None)
    other = tmp_path / "elsewhere" / ".flowcell"
    _fill(MetadataStore(other), "F", 7)
    context.use_store(other)  # what inspect_spin() or a test's --root does to the Client
    front_end_asks(browser, type="refresh")
    assert browser.store == private_store and browser.total == 3
    assert RunBrowser("F", namespace=None).total == 7, "a new browser reads where the Client points now"


def test_run_view_graph_timeline_tasks_detail_and_compare(runtime: Any, comms: list[RecordingComm]) -> None:
    from flowcell.widgets import RunBrowser

    first, _, _ = run(runtime, FOREACH_FLOW, name="BrowseFlow", tags=["first"])
    second, _, _ = run(runtime, FOREACH_FLOW, params={"alpha": 2}, name="BrowseFlow")
    assert first.status == second.status == "completed"
    browser = RunBrowser("BrowseFlow")
    assert [r["id"] for r in browser.rows] == ["2", "1"] and browser.rows[1]["tags"] == ["first"]
    front_end_sets(browser, selected="2")
    view = browser.run
    assert view["pathspec"] == "BrowseFlow/2" and view["params"] == {"alpha": "2"}
    nodes = {n["id"]: n for n in view["graph"]["nodes"]}
    assert set(nodes) == {"start", "visit", "join", "end"}
    assert nodes["visit"]["tasks"] == 3 and nodes["visit"]["status"] == "completed"
    assert all(n["duration"] is not None for n in nodes.values())
    kinds = {(e["source"], e["target"]): e["kind"] for e in view["graph"]["edges"]}
    assert kinds == {("start", "visit"): "foreach", ("visit", "join"): "join", ("join", "end"): "linear"}
    visits = [t for t in view["tasks"] if t["step"] == "visit"]
    assert sorted((f["index"], f["value"]) for t in visits for f in t["foreach"]) == \
        [(0, "Paris"), (1, "Oslo"), (2, "Lima")]
    assert view["workers"] >= 1 and all(0 <= t["lane"] < view["workers"] for t in view["tasks"])
    oslo = next(t for t in visits if t["foreach"][0]["value"] == "Oslo")
    front_end_sets(browser, task=oslo["pathspec"])
    detail = browser.task_detail
    assert "visiting Oslo" in detail["stdout"] and "warn Oslo" in detail["stderr"]
    assert "warn" not in detail["stdout"], "stderr is set apart"
    assert {"alpha", "cities", "city"} <= {a["name"] for a in detail["artifacts"]}
    assert not browser.previews, "no artifact is read before its preview is opened"
    front_end_asks(browser, type="preview", task=oslo["pathspec"], name="city")
    assert browser.previews[f"{oslo['pathspec']}/city"]["text"] == "OSLO"
    front_end_sets(browser, compare_with="1")
    comp = browser.comparison
    assert comp["a"] == "BrowseFlow/2" and comp["b"] == "BrowseFlow/1"
    alpha = next(p for p in comp["params"] if p["name"] == "alpha")
    assert (alpha["a"], alpha["b"], alpha["same"]) == ("2", "1", False)
    arts = {a["name"]: a for a in comp["artifacts"]}
    assert arts["score"]["same"] is False and arts["score"]["a"]["value"] == "6"
    assert arts["cities_seen"]["same"] is True
    assert json.dumps(sent_state(comms, "comparison")[-1]).count('"same": false') >= 2


def test_run_view_shows_a_failed_task_exception(runtime: Any, comms: list[RecordingComm]) -> None:
    from flowcell.widgets import RunBrowser

    result, _, _ = run(runtime, "%%step start\nraise ValueError('bad input')\nself.next(self.end)\n%%step end\npass",
                       name="FailFlow")
    assert result.status == "failed"
    browser = RunBrowser("FailFlow")
    assert browser.rows[0]["status"] == "failed"
    front_end_sets(browser, selected=browser.rows[0]["id"])
    start = next(t for t in browser.run["tasks"] if t["step"] == "start")
    assert start["exception"] == "ValueError: bad input"
    assert browser.run["graph"]["nodes"][0]["status"] == "failed"
    front_end_sets(browser, task=start["pathspec"])
    assert browser.task_detail["exception"]["ename"] == "ValueError"
    assert "bad input" in browser.task_detail["exception"]["text"]


def test_foreach_values_inside_a_static_branch(runtime: Any, comms: list[RecordingComm]) -> None:
    from flowcell.widgets import RunBrowser

    text = ("%%step start\nself.next(self.prepare, self.other)\n"
            "%%step prepare\nself.items = ['a', 'b']\nself.next(self.work, foreach='items')\n"
            "%%step work\nself.out = self.input\nself.next(self.gather)\n"
            "%%step gather(inputs)\nself.next(self.merge)\n%%step other\nself.next(self.merge)\n"
            "%%step merge(inputs)\nself.next(self.end)\n%%step end\npass")
    result, _, _ = run(runtime, text, name="BranchFlow")
    assert result.status == "completed"
    browser = RunBrowser("BranchFlow")
    front_end_sets(browser, selected="1")
    values = sorted(f["value"] for t in browser.run["tasks"] if t["step"] == "work" for f in t["foreach"])
    assert values == ["a", "b"]
    kinds = {(e["source"], e["target"]): e["kind"] for e in browser.run["graph"]["edges"]}
    assert kinds[("start", "prepare")] == "branch" and kinds[("prepare", "work")] == "foreach"
    assert kinds[("other", "merge")] == "join"


def test_live_run_counts_tasks_per_step_and_ends_in_the_run_view(runtime: Any, comms: list[RecordingComm]) -> None:
    from flowcell.progress import NotebookProgress

    progress = NotebookProgress()
    seen: list[dict[str, Any]] = []

    def observer(kind: str, p: dict[str, Any]) -> None:
        progress(kind, p)
        if progress.live is not None and kind == "task_finished":
            seen.append({s["name"]: dict(s) for s in progress.live.live["steps"]})

    from conftest import make_flow
    from flowcell.runtime.runs import start_run

    result = start_run(runtime, make_flow(FOREACH_FLOW), {}, observer=observer)
    assert result.status == "completed"
    live = progress.live
    visits = [s["visit"] for s in seen]
    assert sorted({v["done"] for v in visits}) == [0, 1, 2, 3], "each finished split counted"
    assert all(v["expected"] == 3 for v in visits if v["done"]), "the foreach's split count is known"
    final = {s["name"]: s for s in live.live["steps"]}
    assert live.live["status"] == "completed" and all(s["done"] >= 1 and s["finished"] for s in final.values())
    assert final["visit"]["finished"] >= final["visit"]["started"], "elapsed per step"
    assert live.run["pathspec"] == "BrowseFlow/1" and len(live.run["tasks"]) == 6, "it became the run view"
    front_end_sets(live, task=live.run["tasks"][0]["pathspec"])
    assert live.task_detail["step"] == "start"
    assert "BrowseFlow/1: 6 tasks done" in live.fallback_text()
    assert "flowcell-progress" in live.fallback_html()
    sent = sent_state(comms, "live")
    assert sent[-1]["status"] == "completed", "the final progress reached the front end"
    assert {s["name"]: s["done"] for s in sent[-1]["steps"]}["visit"] == 3


def test_live_run_marks_reused_tasks_per_step_with_their_origin(runtime: Any, comms: list[RecordingComm]) -> None:
    from conftest import make_flow
    from flowcell.progress import NotebookProgress
    from flowcell.runtime.runs import start_run

    first = start_run(runtime, make_flow(FOREACH_FLOW), {})
    assert first.status == "completed"
    progress = NotebookProgress()
    # alpha is read by join alone: start and the three visits are reused, join runs, end
    # (which reads nothing) is reused again.
    result = start_run(runtime, make_flow(FOREACH_FLOW), {"alpha": 2}, reuse=True, observer=progress)
    assert result.status == "completed"
    origin = f"BrowseFlow/{first.run_number}"
    final = {s["name"]: s for s in sent_state(comms, "live")[-1]["steps"]}
    assert {n: (s["done"], s["reused"]) for n, s in final.items()} == {
        "start": (1, 1), "visit": (3, 3), "join": (1, 0), "end": (1, 1)}
    assert final["visit"]["expected"] == 3, "a foreach of reused splits still knows its split count"
    assert final["visit"]["origins"] == [origin] and final["join"]["origins"] == []
    assert final["start"]["origin"] == next(o for p, o in result.reused if "/start/" in p)
    live = progress.live
    assert f"6 tasks done (5 reused from {origin})" in live.fallback_text()
    assert f"3 reused from {origin}" in live.fallback_html()
    assert f"1 reused from {final['end']['origin']}" in live.fallback_html()
    # %resume's cloned tasks are marked the same way, as cloned.
    from flowcell.runtime.runs import start_resume

    resumed = NotebookProgress()
    again = start_resume(runtime, make_flow(FOREACH_FLOW), "join", origin_run_id=first.run_number, observer=resumed)
    assert again.status == "completed"
    steps = {s["name"]: s for s in resumed.live.live["steps"]}
    assert {n: (s["cloned"], s["reused"]) for n, s in steps.items()} == {
        "start": (1, 0), "visit": (3, 0), "join": (0, 0), "end": (0, 0)}
    assert steps["visit"]["origins"] == [origin]
    assert f"(4 cloned from {origin})" in resumed.live.fallback_text()


def test_flow_graph_widget_shows_a_clicked_steps_artifacts(runtime: Any, comms: list[RecordingComm]) -> None:
    from conftest import make_flow
    from flowcell.graph import build_graph
    from flowcell.widgets import FlowGraph

    run(runtime, FOREACH_FLOW, name="BrowseFlow")
    graph = build_graph(make_flow(FOREACH_FLOW))
    widget = FlowGraph(lambda: ("BrowseFlow", graph, {"start": "completed", "visit": "failed"}))
    kinds = {(e["source"], e["target"]): e["kind"] for e in widget.graph["edges"]}
    assert kinds[("start", "visit")] == "foreach" and kinds[("visit", "join")] == "join"
    assert {n["id"]: n["status"] for n in widget.graph["nodes"]}["join"] == "never"
    # Outside JupyterLab nobody answers the click event: the front end asks the kernel.
    front_end_asks(widget, type="step", step="join")
    detail = widget.step_detail
    assert detail["task"].startswith("BrowseFlow/1/join/") and "score" in [a["name"] for a in detail["artifacts"]]
    assert not widget.previews
    front_end_asks(widget, type="preview", task=detail["task"], name="score")
    assert widget.previews[f"{detail['task']}/score"]["text"] == "3"
    bundle = widget._repr_mimebundle_()
    assert bundle["image/svg+xml"].startswith("<svg") and "BrowseFlow: start -> visit" in bundle["text/plain"]


def test_card_view_carries_the_card_and_a_sized_fallback(comms: list[RecordingComm]) -> None:
    from flowcell.client.task import Card
    from flowcell.widgets import CardView

    card = Card("F/1/start/2", "default", None, "<html><body><h1>Hi</h1><p>one</p></body></html>")
    view = CardView(card)
    assert view.html == card.html and "default card of F/1/start/2" in view.title
    view.update(Card("F/1/start/2", "default", None, "<html><body><p>two</p></body></html>"))
    assert [m["state"]["html"] for c in comms for m in c.messages if "html" in m.get("state", {})][-1].endswith(
        "<p>two</p></body></html>")
    assert "iframe" in view.fallback_html() and "&lt;p&gt;two" in view.fallback_html()
