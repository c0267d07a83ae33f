"""Cards and widgets: comm state without a browser, HTML content, and one real browser render."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import numpy as np
import pytest

from conftest import run
from flowcell.cards import get_cards

CARD_FLOW = """
%%flow CardFlow
import numpy as np
from flowcell import current
from flowcell.cards import Markdown, Table, Image, Artifact, ProgressBar, VegaChart
PNG = bytes.fromhex("89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c4890000000d4944415478"
                    "9c6360f8cfc0000003010100c9fe92ef0000000049454e44ae426082")
%%step start @card(type="default")
self.big = np.arange(1_000_000, dtype=np.float64)
self.label = "hello"
current.card.append(Markdown("# Results *so far*"))
current.card.append(Table([[1, "x"], [2, "y"]], headers=["n", "name"]))
current.card.append(Image(PNG, label="pixel"))
current.card.append(Artifact({"k": 1}, name="params"))
bar = ProgressBar(max=5, label="epochs")
current.card.append(bar)
for i in range(5):
    bar.update(i + 1)
    current.card.refresh()
current.card.append(VegaChart({"mark": "bar", "data": {"values": [{"a": "x", "b": 2}]},
                               "encoding": {"x": {"field": "a", "type": "nominal"},
                                            "y": {"field": "b", "type": "quantitative"}}}))
self.next(self.end)
%%step end @card(type="blank", id="summary")
current.card["summary"].append(Markdown("done"))
"""


class RecordingComm:
    """Stands in for the front end: records every message a widget sends."""

    comm_id = "recording"
    kernel = "Truthy"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.messages: list[Any] = []
        self.handlers: list[Any] = []

    def open(self, *args: Any, **kwargs: Any) -> None:
        pass

    def on_msg(self, handler: Any) -> None:
        self.handlers.append(handler)

    def send(self, *args: Any, **kwargs: Any) -> None:
        self.messages.append((args, kwargs))

    def close(self, *args: Any, **kwargs: Any) -> None:
        pass


@pytest.fixture
def comms(monkeypatch: pytest.MonkeyPatch) -> list[RecordingComm]:
    import comm
    from ipywidgets import Widget

    made: list[RecordingComm] = []

    def create(**kwargs: Any) -> RecordingComm:
        made.append(RecordingComm())
        return made[-1]

    monkeypatch.setattr(comm, "create_comm", create)
    monkeypatch.setattr(Widget, "comm", None, raising=False)
    return made


@pytest.fixture
def card_run(runtime: Any) -> Any:
    result, r, events = run(runtime, CARD_FLOW, name="CardFlow")
    assert result.status == "completed", result.failures
    return r, events


def test_card_html_holds_every_component_and_artifacts(card_run: Any) -> None:
    r, events = card_run
    cards = get_cards(r["start"].task)
    assert [c.type for c in cards] == ["default"]
    page = cards[0].html
    assert "<h1>Results <em>so far</em></h1>" in page
    assert "<th>n</th><th>name</th>" in page and "<td>y</td>" in page
    assert "data:image/png;base64," in page and "pixel" in page
    assert "params" in page and "5/5" in page and "<svg" in page
    assert "<b>big</b>" in page and "numpy.ndarray" in page and "<b>label</b>" in page
    assert "<script" not in page and "src='http" not in page and 'src="http' not in page, "self-contained"
    summary = get_cards(r["end"].task, id="summary")
    assert len(summary) == 1 and summary[0].type == "blank" and "<p>done</p>" in summary[0].html
    live = [p for k, p in events if k == "card"]
    assert len(live) == 5 and "3/5" in live[2]["cards"][0]["html"], "ProgressBar updates arrive while the task runs"


def test_card_renders_in_headless_chromium_offline(card_run: Any, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    assert chromium, "Debian's chromium package is required (.ci/run installs it)"
    r, _ = card_run
    out = tmp_path / "card.html"
    proc = subprocess.run([sys.executable, "-m", "flowcell.cli", "card", "view", r["start"].task.pathspec,
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    shot = tmp_path / "card.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--proxy-server=127.0.0.1:9",
                    f"--screenshot={shot}", "--window-size=900,1200", out.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 10_000, "the page rendered (with every proxy fetch refused)"
    artifacts = Path(__file__).resolve().parent.parent / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    shutil.copy(shot, artifacts / "card.png")


def test_artifacts_widget_state_and_lazy_preview(card_run: Any, comms: list[RecordingComm]) -> None:
    from flowcell.widgets import ArtifactsView

    r, _ = card_run
    view = ArtifactsView(r["start"].task, created=["big", "label"])
    assert "<b>big</b>" in view.table.value and "7.6 MB" in view.table.value and "created" in view.table.value
    assert all(child.value == "<i>open to load the preview</i>" for child in view.previews.children)
    # The front end opens the first accordion item.
    view.previews.set_state({"selected_index": 0})
    assert "shape=(1000000,)" in view.previews.children[0].value
    assert "first 100,000 of 1,000,000" in view.previews.children[0].value, "large arrays are sampled"
    assert view.previews.children[1].value == "<i>open to load the preview</i>", "others stay unloaded"
    sent = [json.dumps(m[1].get("data", {}), default=str) for c in comms for m in c.messages]
    assert any("shape=(1000000,)" in s for s in sent), "the preview reached the front end through the comm"
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert "<b>big</b>" in bundle["text/html"] and "big" in bundle["text/plain"]


def test_flow_graph_svg_shows_statuses() -> None:
    from conftest import make_flow
    from flowcell.graph import build_graph
    from flowcell.widgets import flow_graph_svg

    graph = build_graph(make_flow("%%step start\nself.c='x'\nself.next({'x': self.a, 'y': self.b}, condition='c')\n"
                                  "%%step a\nself.next(self.end)\n%%step b\nself.next(self.end)\n%%step end\npass"))
    svg = flow_graph_svg(graph, {"start": "completed", "a": "failed"})
    assert svg.startswith("<svg") and svg.count("<rect") == 4
    assert "#2da44e" in svg and "#cf222e" in svg and "never run" in svg and ">x</text>" in svg


def test_run_browser_filters_drills_down_and_compares(runtime: Any, comms: list[RecordingComm]) -> None:
    from flowcell.widgets import RunBrowser

    text = "%%step start\nself.v = VALUE\nprint('log line')\nself.next(self.end)\n%%step end\npass"
    run(runtime, text.replace("VALUE", "1"), name="BrowseFlow", tags=["first"])
    run(runtime, text.replace("VALUE", "2"), name="BrowseFlow")
    browser = RunBrowser("BrowseFlow")
    assert len(browser.runs.options) == 2 and browser.runs.value == "2"
    browser.tags.value = "first"
    browser.refresh()
    assert [v for _, v in browser.runs.options] == ["1"]
    browser.tags.value = ""
    browser.refresh()
    browser.steps.value = "start"
    browser.tasks.value = browser.tasks.options[0][1]
    assert "log line" in browser.detail.children[1].value
    assert "<b>v</b>" in browser.detail.children[0].value
    browser.compare_with.value = "1"
    assert "BrowseFlow/2" in browser.comparison.value and "background:#fff8c5" in browser.comparison.value
    browser.namespace.value = "user:nobody"
    browser.refresh()
    assert browser.runs.options == ()
    assert "no runs" in browser.fallback_text()


def test_notebook_shows_widgets_cards_graph_with_fallbacks(tmp_path: Path) -> None:
    from nbclient import NotebookClient

    flow_cells = ["%%" + part for part in CARD_FLOW.strip().lstrip("%").split("\n%%")]
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in [
        "%load_ext flowcell", "%flowcell autospin off", *flow_cells,
        "%flowcell autospin on", "%spin start", "run = %run_flow", "%flow_graph", "%flow_runs"]]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    spin_out = nb.cells[-4].outputs
    mimes = [set(o.get("data", {})) for o in spin_out if o["output_type"] == "display_data"]
    assert any("application/vnd.jupyter.widget-view+json" in m and "text/html" in m for m in mimes), mimes
    assert any("iframe" in o.get("data", {}).get("text/html", "") for o in spin_out if o["output_type"] == "display_data")
    run_out = json.dumps(nb.cells[-3].outputs)
    assert "iframe" in run_out and "flowcell-progress" in run_out
    assert any("image/svg+xml" in o.get("data", {}) for o in nb.cells[-2].outputs)
    browser = nb.cells[-1].outputs[0]["data"]
    assert "text/html" in browser and "CardFlow/1" in browser["text/plain"]
