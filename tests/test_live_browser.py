"""The live table of ``%run_flow`` drawn in a real browser from the state of a real reusing run.

Debian's chromium driven by Playwright; the widget bundle is served from a made-up origin
(page.route) with a stand-in for anywidget's model, as in tests/test_card_theme_browser.py
(tests/test_widgets_browser.py shows the live table in a real JupyterLab).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from browser_support import ARTIFACTS, STATIC, chromium, route_widget_page
from conftest import make_flow
from test_run_browser import FOREACH_FLOW

ORIGIN = "http://flowcell.test"
pytestmark = pytest.mark.skipif(not (STATIC / "widgets.js").exists(),
                                reason="the widgets' front end is not built (npm run build:widgets in labextension/)")


def _live_state_of_a_reusing_run(runtime: Any) -> tuple[dict[str, Any], str]:
    from flowcell.progress import NotebookProgress
    from flowcell.runtime.runs import start_run

    first = start_run(runtime, make_flow(FOREACH_FLOW), {})
    progress = NotebookProgress()
    # alpha is read by join alone: start, the three visits and end are reused.
    result = start_run(runtime, make_flow(FOREACH_FLOW), {"alpha": 2}, reuse=True, observer=progress)
    assert (first.status, result.status) == ("completed", "completed")
    return dict(progress.live.live), f"BrowseFlow/{first.run_number}"


def test_the_live_table_marks_reused_tasks_with_their_origin(runtime: Any) -> None:
    live, origin = _live_state_of_a_reusing_run(runtime)
    index = f"""<!doctype html><html><head><link rel="stylesheet" href="/widgets.css"></head>
<body><div id="live"></div><script type="module">
import widgets from '/widgets.js';
const state = {{ kind: 'live', live: {json.dumps(live)} }};
const model = {{ get: k => state[k], set() {{}}, save_changes() {{}}, on() {{}}, off() {{}}, send() {{}} }};
widgets.render({{ model, el: document.getElementById('live') }});
</script></body></html>"""

    with chromium() as browser:
        page = browser.new_page(viewport={"width": 900, "height": 400})
        route_widget_page(page, ORIGIN, index)
        page.goto(f"{ORIGIN}/index.html")
        page.wait_for_selector(".fc-live-table tbody tr")
        rows = {r.locator(".fc-name").evaluate("(e) => e.firstChild.textContent"): r for r in page.locator(".fc-live-table tbody tr").all()}
        visit, join, start = rows["visit"], rows["join"], rows["start"]
        assert visit.locator(".fc-reused-chip").text_content() == "3 reused"
        assert origin in (visit.locator(".fc-reused-chip").get_attribute("title") or "")
        start_origin = next(s["origin"] for s in live["steps"] if s["name"] == "start")
        assert start_origin in (start.locator(".fc-reused-chip").get_attribute("title") or "")
        assert join.locator(".fc-reused-chip").count() == 0, "join ran: no mark"
        # The bar: visit's three tasks all in the hatched reused segment, join's in the plain done one.
        width = "(e) => e.getBoundingClientRect().width"
        assert visit.locator(".fc-progress-done").evaluate(width) == 0
        assert visit.locator(".fc-progress-reused").evaluate(width) > 0
        assert join.locator(".fc-progress-reused").evaluate(width) == 0
        assert "linear-gradient" in visit.locator(".fc-progress-reused").evaluate(
            "(e) => getComputedStyle(e).backgroundImage")
        assert "6 tasks done (5 reused)" in (page.locator(".fc-run-head").text_content() or "")
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator(".fc-live").screenshot(path=str(ARTIFACTS / "run-flow-live-reused.png"))
