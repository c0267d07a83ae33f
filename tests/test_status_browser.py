"""The "stale" badge in a real JupyterLab (issue 14.3): edit a step cell after a run, run it
again, and the badge says `stale` with the reasons in its tooltip; the Flow panel's graph
marks the same steps. (JupyterLab and chromium as in test_labextension.py.)"""

from __future__ import annotations

from typing import Any

from test_labextension import ARTIFACTS, _notebook, _open, _show_panel, _shot, _wait_badge, lab, pytestmark  # noqa: F401

CELLS = [
    "%load_ext flowcell\n%flowcell autospin off",
    "%%flow StaleFlow\nfrom flowcell import Parameter\nalpha = Parameter('alpha', default=2)",
    "%%step start\nself.x = 40\nself.next(self.middle)",
    "%%step middle\nself.y = self.x + self.alpha\nself.next(self.end)",
    "%%step end\nprint('end saw', self.y)",
    "run = %run_flow",
]


def _title(page: Any, step: str) -> str:
    return str(page.locator(f".fc-badge[data-step='{step}']").get_attribute("title") or "")


def _run_cell(page: Any, index: int, source: str | None = None) -> None:
    """Run one cell as a user would (its text changed first when ``source`` is given)."""
    page.evaluate("""([index, source]) => {
        const nb = window.jupyterapp.shell.currentWidget.content;
        if (source !== null) { nb.widgets[index].model.sharedModel.setSource(source); }
        nb.activeCellIndex = index;
        window.jupyterapp.commands.execute('notebook:run-cell');
    }""", [index, source])


def test_a_step_edited_after_a_run_has_a_stale_badge_that_says_why(lab: dict[str, Any], browser: Any) -> None:
    _notebook(lab["root"] / "stale.ipynb", [*CELLS, "%flow_graph", "run2 = %run_flow --reuse", "%flow_status 1"])
    page = _open(browser, lab, "stale.ipynb")
    for index in range(len(CELLS) + 1):  # everything but the last cell, which runs later
        _run_cell(page, index)
    _wait_badge(page, "end", "succeeded")
    _wait_badge(page, "middle", "succeeded")
    assert _title(page, "middle") == ""

    # Edit the middle cell (the same value, written differently) and run just that cell.
    _run_cell(page, 3, "%%step middle\nself.y = self.alpha + self.x\nself.next(self.end)")
    _wait_badge(page, "middle", "stale")
    _wait_badge(page, "end", "stale")
    badge = page.locator(".fc-badge[data-step='middle']")
    assert badge.text_content() == "middle · stale"
    assert "fc-status-stale" in (badge.get_attribute("class") or "")
    assert _title(page, "middle") == "middle is stale against run 1:\n• cell changed (+1 \u22121 line)"
    assert _title(page, "end") == "end is stale against run 1:\n• upstream step `middle` is stale"
    assert page.locator(".fc-badge[data-step='start']").text_content() == "start · succeeded"
    badge.hover()
    _shot(page, "labextension-stale-badge.png")

    # The Flow panel's graph marks the same steps, with the reasons in their tooltip.
    panel = _show_panel(page)
    panel.locator(".fc-node.fc-stale[data-step='middle']").wait_for(timeout=30_000)
    assert panel.locator(".fc-node.fc-stale").count() == 2
    assert "\u2022 cell changed (+1 \u22121 line)" in panel.locator(".fc-node[data-step='middle'] title").text_content()
    # So does the %flow_graph widget, redrawn when the cell was registered.
    graph = page.locator(".jp-Cell").nth(len(CELLS)).locator(".fc-graph")
    graph.locator(".fc-node.fc-stale[data-step='middle']").wait_for(timeout=30_000)
    assert graph.locator(".fc-node.fc-stale").count() == 2
    assert graph.locator(".fc-node[data-step='middle'] .fc-node-sub").text_content().startswith("stale")
    assert "\u2022 cell changed (+1 \u22121 line)" in graph.locator(".fc-node[data-step='middle'] title").text_content()

    # Run again with reuse: start and end (its inputs came out the same) are taken from run 1,
    # and the run view says so, with their origin; every badge is up to date again.
    _run_cell(page, len(CELLS) + 1)
    view = page.locator(".jp-Cell").nth(len(CELLS) + 1).locator(".fc-run")
    view.locator(".fc-node[data-step='end']").wait_for(timeout=120_000)
    chips = view.locator(".fc-reused-chip")
    assert chips.count() == 2
    assert chips.first.text_content() == "reused"
    assert chips.first.get_attribute("title").startswith("Reused from StaleFlow/1/start/")
    assert view.locator(".fc-node.fc-reused").count() == 2 and view.locator(".fc-bar.fc-reused").count() == 2
    _wait_badge(page, "middle", "succeeded")
    _wait_badge(page, "end", "succeeded")
    graph.locator(".fc-node.fc-stale").first.wait_for(state="detached", timeout=30_000)
    view.scroll_into_view_if_needed()
    _shot(page, "labextension-reused-run-view.png")
    # %flow_status against run 1: the notebook's table, one row per step.
    _run_cell(page, len(CELLS) + 2)
    table = page.locator(".jp-Cell").nth(len(CELLS) + 2).locator(".fc-flow-status")
    table.wait_for(timeout=60_000)
    assert table.locator("tr.fc-status-stale").count() == 2
    assert "cell changed (+1 \u22121 line)" in table.locator("tr[data-step='middle']").text_content()
    table.scroll_into_view_if_needed()
    table.screenshot(path=str(ARTIFACTS / "labextension-flow-status.png"))
    page.close()
