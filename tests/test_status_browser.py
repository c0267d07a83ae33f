"""The "stale" badge in a real JupyterLab (issue 14.3): edit a step cell after a run, run it
again, and the badge says `stale` with the reasons in its tooltip; the Flow panel's graph
marks the same steps. (JupyterLab and chromium as in test_labextension.py.)"""

from __future__ import annotations

from typing import Any

from test_labextension import _notebook, _open, _show_panel, _shot, _wait_badge, browser, lab, pytestmark  # noqa: F401

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


def test_a_step_edited_after_a_run_has_a_stale_badge_that_says_why(lab: dict[str, Any], browser: Any) -> None:
    _notebook(lab["root"] / "stale.ipynb", CELLS)
    page = _open(browser, lab, "stale.ipynb")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    _wait_badge(page, "end", "succeeded")
    _wait_badge(page, "start", "succeeded")
    assert _title(page, "start") == ""

    # Edit the start cell as a user would change its text, and run just that cell.
    page.evaluate("""() => {
        const nb = window.jupyterapp.shell.currentWidget.content;
        nb.widgets[2].model.sharedModel.setSource('%%step start\\nself.x = 41\\nself.next(self.middle)');
        nb.activeCellIndex = 2;
        return window.jupyterapp.commands.execute('notebook:run-cell');
    }""")
    _wait_badge(page, "start", "stale")
    _wait_badge(page, "middle", "stale")
    badge = page.locator(".fc-badge[data-step='start']")
    assert badge.text_content() == "start · stale"
    assert "fc-status-stale" in (badge.get_attribute("class") or "")
    assert _title(page, "start") == "start is stale against run 1:\n• cell changed (+1 \u22121 line)"
    assert _title(page, "middle") == "middle is stale against run 1:\n• upstream step `start` is stale"
    badge.hover()
    _shot(page, "labextension-stale-badge.png")

    # The Flow panel's graph marks the same steps, with the reasons in their tooltip.
    panel = _show_panel(page)
    panel.locator("g.fc-step.fc-stale[data-step='start']").wait_for(timeout=30_000)
    assert panel.locator("g.fc-step.fc-stale").count() == 3
    assert "stale: cell changed (+1 \u22121 line)" in panel.locator("g.fc-step[data-step='start'] title").text_content()
    page.close()
