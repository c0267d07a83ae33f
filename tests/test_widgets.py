"""Cards and widgets: comm state without a browser, HTML content, and one real browser render."""

from __future__ import annotations

import html
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

    made: list[RecordingComm] = []

    def create(**kwargs: Any) -> RecordingComm:
        made.append(RecordingComm())
        return made[-1]

    monkeypatch.setattr(comm, "create_comm", create)
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


def test_artifact_inspector_lists_without_loading_and_previews_on_demand(card_run: Any,
                                                                        comms: list[RecordingComm]) -> None:
    from flowcell.widgets import ArtifactInspector

    r, _ = card_run
    line = "Spun 'start' in 25 ms with inputs from run 12: created big, label"
    view = ArtifactInspector(r["start"].task, created=["big", "label"], headline=line)
    rows = {a["name"]: a for a in view.artifacts}
    assert rows["big"] == {"name": "big", "type": "numpy.ndarray", "size": rows["big"]["size"], "flag": "created"}
    assert rows["big"]["size"] > 7_000_000 and view.previews == {}, "nothing loaded before a preview is opened"
    # The front end opens "big": a custom comm message, answered with its preview.
    view._handle_msg({"content": {"data": {"method": "custom", "content": {
        "type": "preview", "task": view.task, "name": "big"}}}, "buffers": []})
    big = view.previews[f"{view.task}/big"]
    assert big["kind"] == "array" and big["shape"] == [1_000_000] and big["dtype"] == "float64"
    assert "first 100,000 of 1,000,000" in big["stats"], "large arrays are summarised from a sample"
    assert list(view.previews) == [f"{view.task}/big"], "others stay unloaded"
    sent = [json.dumps(m[1].get("data", {}), default=str) for c in comms for m in c.messages]
    assert any('"dtype": "float64"' in s for s in sent), "the preview reached the front end through the comm"
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert html.escape(line) in bundle["text/html"] and "<b>big</b>" in bundle["text/html"]
    assert bundle["text/plain"].startswith(line) and "created" in bundle["text/plain"]


def test_previews_of_dataframes_images_and_long_text() -> None:
    import pandas as pd

    from flowcell.preview import preview_value

    df = pd.DataFrame({"a": range(30), "b": ["x"] * 30})
    p = preview_value(df)
    assert p["kind"] == "table" and p["shape"] == [30, 2] and p["dtypes"] == ["int64", str(df.dtypes["b"])]
    assert len(p["rows"]) == 10 and p["rows"][0] == ["0", "x"] and p["columns"] == ["a", "b"]
    png = bytes.fromhex("89504e470d0a1a0a0000000d494844520000000100000001")
    assert preview_value(png)["src"].startswith("data:image/png;base64,")
    text = preview_value("y" * 50_000)
    assert text["kind"] == "text" and len(text["text"]) == 20_000 and text["length"] == 50_000


def _segments_cross_box(points: list[tuple[float, float]], box: tuple[float, float, float, float]) -> bool:
    x0, y0, x1, y1 = box
    for (ax, ay), (bx, by) in zip(points, points[1:]):
        for k in range(1, 50):  # sample each segment finely
            t = k / 50
            x, y = ax + (bx - ax) * t, ay + (by - ay) * t
            if x0 < x < x1 and y0 < y < y1:
                return True
    return False


def test_flow_graph_svg_routes_long_edges_around_boxes() -> None:
    from conftest import make_flow
    from flowcell.graph import build_graph
    from flowcell.widgets.graphmodel import BOX_H, BOX_W, graph_model, layout, flow_graph_svg

    graph = build_graph(make_flow(
        "%%step start\nself.next(self.a, self.stats)\n%%step a\nself.next(self.b)\n%%step b\nself.next(self.c)\n"
        "%%step c\nself.next(self.join)\n%%step stats\nself.next(self.join)\n%%step join(inputs)\n"
        "self.next(self.end)\n%%step end\npass"))
    model = graph_model(graph, {"start": "completed", "stats": "failed"})
    assert {(e["source"], e["target"]): e["kind"] for e in model["edges"]}[("stats", "join")] == "join"
    assert {(e["source"], e["target"]): e["kind"] for e in model["edges"]}[("start", "a")] == "branch"
    lay = layout(model)
    boxes = {n: (cx - BOX_W / 2, y, cx + BOX_W / 2, y + BOX_H) for n, (cx, y) in lay["boxes"].items()}
    for edge, points in zip(model["edges"], lay["paths"]):
        others = [b for n, b in boxes.items() if n not in (edge["source"], edge["target"])]
        assert not any(_segments_cross_box(points, b) for b in others), f"{edge} runs through a box"
    svg = flow_graph_svg(graph, {"start": "completed", "stats": "failed"})
    assert svg.startswith("<svg") and svg.count("<rect") == 7 and "never run" in svg


def test_flow_graph_svg_shows_statuses_and_conditions() -> None:
    from conftest import make_flow
    from flowcell.graph import build_graph
    from flowcell.widgets import flow_graph_svg

    graph = build_graph(make_flow("%%step start\nself.c='x'\nself.next({'x': self.a, 'y': self.b}, condition='c')\n"
                                  "%%step a\nself.next(self.end)\n%%step b\nself.next(self.end)\n%%step end\npass"))
    svg = flow_graph_svg(graph, {"start": "completed", "a": "failed"})
    assert svg.startswith("<svg") and svg.count("<rect") == 4
    assert "#1a7f37" in svg and "#cf222e" in svg and "never run" in svg and ">x</text>" in svg
    assert "fc-edge-conditional" in svg


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


def test_loading_the_extension_imports_the_widget_libraries_in_the_background(tmp_path: Path) -> None:
    """Issue 17: the first %flow_runs of a kernel does not pay for importing anywidget and ipywidgets;
    %load_ext flowcell starts importing them on a thread while the user reads or types."""
    from jupyter_client import KernelManager

    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(tmp_path / "kernel"))  # no TCP port
    km.start_kernel(cwd=str(tmp_path))
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=120)

        def run_code(code: str) -> str:
            out: list[str] = []

            def hook(msg: dict[str, Any]) -> None:
                if msg["msg_type"] == "stream":
                    out.append(msg["content"]["text"])
                elif msg["msg_type"] == "error":
                    out.append("ERROR " + msg["content"]["evalue"])

            kc.execute_interactive(code, output_hook=hook, timeout=120)
            return "".join(out)

        check = "import sys; print(sorted(m for m in ('anywidget', 'ipywidgets', 'flowcell.widgets.runs') if m in sys.modules))"
        assert run_code(check).strip() == "[]", "a fresh kernel has not imported them"
        loaded = run_code("%load_ext flowcell\n%flowcell autospin off\nimport threading\n"
                          "warmers = [t for t in threading.enumerate() if t.name == 'flowcell-warm-widgets']\n"
                          "[t.join(60) for t in warmers]\nprint(len(warmers))")
        assert loaded.splitlines()[-1] in ("0", "1"), loaded  # 0: it had already finished
        assert run_code(check).strip() == "['anywidget', 'flowcell.widgets.runs', 'ipywidgets']"
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
