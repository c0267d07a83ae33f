"""The widgets in a real JupyterLab (Debian's chromium, Playwright), light and dark themes.

One notebook runs a flow with a branch, a foreach, joins and a card twice, spins a
step, draws the graph and opens the run browser; the test then uses each widget as a
person would (sort, open a run, pick a task, open a preview, compare two runs) and
takes a screenshot of each in both themes into test-artifacts/ (listed in
docs/cards-and-widgets.md).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from browser_support import ARTIFACTS, serve, write_notebook
from conftest import ROOT

pytestmark = pytest.mark.skipif(
    not (ROOT / "flowcell" / "widgets" / "static" / "widgets.js").exists() and not os.environ.get("CI"),
    reason="the widgets' front end is not built (npm run build:widgets in labextension/; .ci/run does)",
)

CELLS = [
    "%load_ext flowcell\n%flowcell autospin off",
    "%%flow ShowcaseFlow\nimport os, time\nfrom flowcell import Parameter, current\n"
    "GATE = 'GATE_PATH'\n"
    "from flowcell.cards import Markdown, Table\nalpha = Parameter('alpha', default=1)",
    "%%step start\nself.next(self.prepare, self.stats)",
    "%%step prepare\nself.cities = ['Paris', 'Oslo', 'Lima', 'Kyoto']\nself.next(self.visit, foreach='cities')",
    "%%step visit\ntime.sleep(0.3)\nprint('visiting', self.input)\nself.city = self.input.upper()\nself.next(self.gather)",
    "%%step gather(inputs)\nself.visited = sorted(i.city for i in inputs)\nself.next(self.merge)",
    "%%step stats @card(type='blank')\nimport pandas as pd\nimport sys\n"
    "t0 = time.time()\n"
    "while self.alpha == 2 and not os.path.exists(GATE) and time.time() - t0 < 900:\n"
    "    time.sleep(0.05)  # the test opens the gate once it has seen the run live\n"
    "self.table = pd.DataFrame({'city': ['Paris', 'Oslo'], 'visits': [3 * self.alpha, 5]})\n"
    "print('computing stats', file=sys.stderr)\n"
    "current.card.append(Markdown('# Stats\\nVisits per city, *alpha* = %d' % self.alpha))\n"
    "current.card.append(Table.from_dataframe(self.table))\nself.next(self.merge)",
    "%%step merge(inputs)\nself.merge_artifacts(inputs)\nself.score = len(self.visited) * self.alpha\n"
    "self.next(self.end)",
    "%%step end\nself.summary = 'visited %d cities' % len(self.visited)",
    "run1 = %run_flow",
    "run2 = %run_flow --alpha 2 --tag tuned",
    "%spin stats",
    "%flow_graph",
    "%flow_runs",
]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """JupyterLab with a private store and settings: no news toast over the widgets, and every
    cell stays rendered so outputs below the fold can be found and watched."""
    settings = {"@jupyterlab/apputils-extension/notification.jupyterlab-settings": '{"fetchNews": "false"}',
                "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": '{"windowingMode": "none"}'}
    with serve(tmp_path_factory.mktemp("widgets-lab"), settings=settings) as server:
        yield server


_notebook = write_notebook


def _open(browser: Any, lab: dict[str, Any], name: str) -> Any:
    page = browser.new_page(viewport={"width": 1300, "height": 2400})
    # Generous but bounded: on a loaded machine a click on a widget can take seconds to answer.
    page.set_default_timeout(120_000)
    page.goto(f"{lab['base']}/lab/tree/{name}?reset&token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=120_000)
    page.wait_for_function("window.jupyterapp?.shell.currentWidget?.sessionContext?.session?.kernel?.status === 'idle'",
                           timeout=120_000)
    page.evaluate("window.jupyterapp.shell.collapseLeft()")  # the notebook gets the width
    return page


def _output(page: Any, index: int) -> Any:
    return page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".jp-OutputArea")


def _shot(locator: Any, name: str, theme: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    locator.scroll_into_view_if_needed()
    locator.screenshot(path=str(ARTIFACTS / f"widgets-{name}-{theme}.png"))


def _set_theme(page: Any, theme: str) -> None:
    name = "JupyterLab Dark" if theme == "dark" else "JupyterLab Light"
    page.evaluate(f"window.jupyterapp.commands.execute('apputils:change-theme', {{theme: '{name}'}})")
    page.wait_for_function(f"document.body.dataset.jpThemeLight === '{'false' if theme == 'dark' else 'true'}'",
                           timeout=30_000)
    page.wait_for_timeout(800)  # the theme's stylesheet applies


def _assert_card_in_theme(page: Any, frame: str, theme: str) -> None:
    """The card in ``frame`` (a CSS selector) is painted in the JupyterLab theme's own colours."""
    page.wait_for_function(
        "(sel) => { const f = document.querySelector(sel); const d = f && f.contentDocument;"
        " if (!d || !d.body) return false; const probe = document.createElement('div');"
        " probe.style.background = 'var(--jp-layout-color1)'; f.parentElement.append(probe);"
        " const want = getComputedStyle(probe).backgroundColor; probe.remove();"
        " return getComputedStyle(d.body).backgroundColor === want; }", arg=frame, timeout=30_000)
    body = page.evaluate("(sel) => getComputedStyle(document.querySelector(sel).contentDocument.body).backgroundColor",
                         frame)
    assert (body == "rgb(255, 255, 255)") == (theme == "light"), f"a {theme} card, not {body}"


@pytest.fixture(scope="module")
def showcase(lab: dict[str, Any], browser: Any) -> Iterator[Any]:
    _notebook(lab["root"] / "showcase.ipynb", [c.replace("GATE_PATH", str(lab["root"] / "gate")) for c in CELLS])
    page = _open(browser, lab, "showcase.ipynb")
    try:
        yield page
    finally:
        (lab["root"] / "gate").touch()  # a failed test never leaves the kernel waiting at the gate
        page.close()


RUN2 = CELLS.index("run2 = %run_flow --alpha 2 --tag tuned")


def _run_cell(page: Any, index: int) -> None:
    page.evaluate(f"window.jupyterapp.shell.currentWidget.content.activeCellIndex = {index}")
    _execute(page, "notebook:run-cell")


def _execute(page: Any, command: str) -> None:
    """Start a Lab command without waiting for it: page.evaluate would await the command's
    promise, which for running cells settles only once they finish, so a run held at the
    gate could never be watched live (and the wait had no bound)."""
    page.evaluate(f"() => {{ window.jupyterapp.commands.execute('{command}'); }}")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_widgets_in_jupyterlab(showcase: Any, lab: dict[str, Any], theme: str) -> None:
    page = showcase
    gate = lab["root"] / "gate"
    gate.unlink(missing_ok=True)
    _set_theme(page, theme)
    if theme == "light":
        _execute(page, "notebook:run-all-cells")
        runs_expected = 2
    else:
        _run_cell(page, RUN2)  # a third run, watched live in the dark theme
        runs_expected = 3
    # %run_flow while it runs: stats waits at its gate (until the test opens it), so the
    # live table stays up however slowly the machine goes; the bounds only catch a hang.
    live = _output(page, RUN2).locator(".fc-live")
    try:
        # Light: Run All first runs run 1 in full, so the live table of run 2 comes late.
        live.locator(".fc-live-table").wait_for(timeout=600_000)
        # start, prepare, visit and gather finish while stats is held at the gate.
        live.locator(".fc-live-table .fc-status-completed").nth(3).wait_for(timeout=300_000)
        assert live.locator(".fc-live-table .fc-status-running").count() >= 1, "stats runs, held at its gate"
        _shot(live, "run-flow-live", theme)
    finally:
        gate.touch()
    # ... and when it ends, the same output becomes the run view.
    live.locator(".fc-run .fc-node[data-step='merge']").wait_for(timeout=300_000)
    assert "completed" in live.locator(".fc-run-head").text_content()
    _shot(live, "run-flow-result", theme)
    browser_out = _output(page, len(CELLS) - 1)
    runs = browser_out.locator(".fc-runs")
    runs.locator(".fc-run-table").wait_for(timeout=240_000)
    if theme == "dark":
        runs.locator("button[title='Refresh']").click()
        runs.locator("tbody tr").nth(2).wait_for(timeout=60_000)
    # The table: newest first; sorting by run id ascending puts run 1 first.
    assert runs.locator("tbody tr").count() == runs_expected
    newest = runs.locator("tbody tr").first.text_content()
    assert f"ShowcaseFlow/{runs_expected}" in newest and "tuned" in newest
    _shot(runs, "run-table", theme)
    runs.locator("th", has_text="run").click()
    page.wait_for_function("document.querySelector('.fc-run-table tbody tr')?.textContent.includes('ShowcaseFlow/1')",
                           timeout=30_000)
    runs.locator("th", has_text="run").click()
    page.wait_for_function(f"document.querySelector('.fc-run-table tbody tr')?.textContent"
                           f".includes('ShowcaseFlow/{runs_expected}')", timeout=30_000)
    # Open the newest run: graph by status, timeline, tasks with their foreach values.
    runs.locator("tbody tr").first.click()
    runs.locator(".fc-run .fc-node[data-step='visit']").wait_for(timeout=30_000)
    assert runs.locator(".fc-run .fc-bar").count() == 10, "one bar per task on the timeline"
    assert "Oslo" in runs.locator(".fc-run").text_content(), "foreach values are shown"
    _shot(runs, "run-view", theme)
    # A task: the stats step, its card, its logs, an artifact preview.
    runs.locator(".fc-run tbody tr", has_text="stats").first.click()
    runs.locator(".fc-tab", has_text="Cards").click()
    runs.locator("iframe.fc-card-frame").wait_for(timeout=30_000)
    page.wait_for_function("(() => { const f = document.querySelector('.fc-runs iframe.fc-card-frame');"
                           " return f && f.contentDocument && f.offsetHeight > 60 &&"
                           " Math.abs(f.offsetHeight - f.contentDocument.documentElement.scrollHeight) < 8; })()",
                           timeout=30_000)
    _assert_card_in_theme(page, ".fc-runs iframe.fc-card-frame", theme)
    _shot(runs.locator(".fc-card").nth(3), "task-card", theme)
    runs.locator(".fc-tab", has_text="Logs").click()
    assert "computing stats" in runs.locator(".fc-stderr").text_content(), "stderr is set apart"
    _shot(runs.locator(".fc-card").nth(3), "task-logs", theme)
    runs.locator(".fc-tab", has_text="Artifacts").click()
    runs.locator(".fc-art-row", has_text="table").click()
    runs.locator(".fc-df").wait_for(timeout=30_000)
    assert "visits" in runs.locator(".fc-df").text_content()
    _shot(runs.locator(".fc-card").nth(3), "task-artifacts", theme)
    # Compare with run 1: alpha and score differ.
    runs.locator(".fc-run select.fc-select").select_option("1")
    runs.locator(".fc-compare").wait_for(timeout=30_000)
    assert runs.locator(".fc-compare tr.fc-diff").count() >= 2
    _shot(runs.locator(".fc-card").last, "compare", theme)
    runs.locator(".fc-back").click()
    runs.locator(".fc-run-table").wait_for(timeout=30_000)
    # After %spin: the printed line, the artifact inspector (a preview opened) and the card.
    spin_out = _output(page, len(CELLS) - 3)
    assert "Spun 'stats' in" in spin_out.text_content()
    inspector = spin_out.locator(".fc-inspector")
    inspector.wait_for(timeout=30_000)
    if not inspector.locator(".fc-df").count():
        inspector.locator(".fc-art-row", has_text="table").click()
    inspector.locator(".fc-df").wait_for(timeout=30_000)
    _shot(inspector, "inspector", theme)
    card = spin_out.locator(".fc-card-view iframe")
    card.wait_for(timeout=30_000)
    page.wait_for_function("(() => { const f = document.querySelector('.fc-card-view iframe');"
                           " return f && f.contentDocument && f.offsetHeight > 60 &&"
                           " Math.abs(f.offsetHeight - f.contentDocument.documentElement.scrollHeight) < 8; })()",
                           timeout=30_000)
    _assert_card_in_theme(page, ".fc-card-view iframe", theme)
    _shot(spin_out.locator(".fc-card-view"), "card", theme)
    # %flow_graph: laid out by dagre; in JupyterLab (the flowcell Lab extension answers the
    # widget's step-click event) a click on a step makes its cell the active one.
    graph = _output(page, len(CELLS) - 2).locator(".fc-flow-graph")
    graph.locator(".fc-node[data-step='merge']").wait_for(timeout=30_000)
    _shot(graph, "flow-graph", theme)
    merge_cell = next(i for i, c in enumerate(CELLS) if c.startswith("%%step merge"))
    graph.locator(".fc-node[data-step='merge']").click()
    page.wait_for_function(f"window.jupyterapp.shell.currentWidget.content.activeCellIndex === {merge_cell}",
                           timeout=30_000)
    # The Flow panel beside the notebook draws the same graph with the same dagre code: the
    # foreach fan-out and the joins drawn distinctly; a click on a step goes to its cell.
    page.evaluate("window.jupyterapp.shell.activateById('flowcell-panel')")
    panel = page.locator("#flowcell-panel")
    panel.locator(".fc-node[data-step='merge']").wait_for(timeout=30_000)
    widget_edges = sorted(graph.locator("path.fc-edge").evaluate_all("ps => ps.map(p => p.getAttribute('class'))"))
    panel_edges = sorted(panel.locator("path.fc-edge").evaluate_all("ps => ps.map(p => p.getAttribute('class'))"))
    assert panel_edges == widget_edges and "fc-edge fc-edge-foreach" in panel_edges
    assert panel.locator(".fc-node").count() == graph.locator(".fc-node").count() == 7
    prepare, visit = (panel.locator(f".fc-node[data-step='{s}']").bounding_box() for s in ("prepare", "visit"))
    assert visit["y"] > prepare["y"] + prepare["height"], "laid out top to bottom"
    _shot(panel, "flow-panel", theme)
    start_cell = next(i for i, c in enumerate(CELLS) if c.startswith("%%step start"))
    panel.locator(".fc-node[data-step='start']").click()
    page.wait_for_function(f"window.jupyterapp.shell.currentWidget.content.activeCellIndex === {start_cell}",
                           timeout=30_000)
    page.evaluate("window.jupyterapp.shell.collapseRight()")  # the notebook gets the width back
