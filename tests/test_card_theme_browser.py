"""Cards follow the theme: a standalone card follows the viewer's colour scheme, and the
widgets' card frame gives a flowcell card the notebook's JupyterLab theme colours while a
card of another kind (a Metaflow card plugin's page) keeps its own look.

Debian's chromium driven by Playwright; the widget bundle is served from a made-up origin
(page.route), with a stand-in for anywidget's model, so no JupyterLab is needed here
(tests/test_widgets_browser.py shows the same in a real JupyterLab, in both themes).
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from browser_support import ARTIFACTS, STATIC, route_widget_page
from flowcell.cards import Markdown, ProgressBar, Table, render_card

ORIGIN = "http://flowcell.test"
pytestmark = pytest.mark.skipif(not (STATIC / "widgets.js").exists(),
                                reason="the widgets' front end is not built (npm run build:widgets in labextension/)")

#: JupyterLab 4.5's dark and light theme values of the variables a card takes (as the page computes them).
DARK = {"--jp-layout-color1": "#212121", "--jp-layout-color2": "#424242", "--jp-layout-color3": "#616161",
        "--jp-ui-font-color1": "rgba(255, 255, 255, 0.87)", "--jp-ui-font-color2": "rgba(255, 255, 255, 0.54)",
        "--jp-border-color2": "#424242", "--jp-success-color1": "#388e3c", "--jp-content-link-color": "#64b5f6"}
LIGHT = {**DARK, "--jp-layout-color1": "#ffffff", "--jp-layout-color2": "#eeeeee", "--jp-layout-color3": "#bdbdbd",
         "--jp-ui-font-color1": "rgba(0, 0, 0, 0.87)", "--jp-ui-font-color2": "rgba(0, 0, 0, 0.54)",
         "--jp-border-color2": "#e0e0e0"}
#: A card that is not flowcell's: its own styles, no flowcell marker (as a Metaflow card plugin renders).
FOREIGN = ("<!doctype html><html><head><style>body{margin:0;padding:12px;font-family:sans-serif;color:#333}"
           "</style></head><body><h2>Metaflow card</h2><p>rendered by a card plugin</p></body></html>")


def flowcell_card() -> str:
    return render_card("blank", None, "ThemeFlow/1/train/1",
                       [Markdown("# Loss 0.12\nThe model *converged*."), Table([[1, 0.5], [2, 0.12]], ["epoch", "loss"]),
                        ProgressBar(max=4, label="epochs", value=3)], None)


def _serve(page: Any, index: str) -> None:
    route_widget_page(page, ORIGIN, index)  # nothing else is fetched: a card is self-contained


def _color(page: Any, expression: str) -> str:
    """A CSS colour as the browser computes it (rgb(...)), so values compare whatever their notation."""
    return str(page.evaluate("(c) => { const d = document.createElement('div'); d.style.color = c;"
                             " document.body.append(d); const v = getComputedStyle(d).color; d.remove(); return v; }",
                             expression))


def _frame_body(page: Any, index: int, prop: str) -> str:
    return str(page.evaluate(f"getComputedStyle(document.querySelectorAll('iframe.fc-card-frame')[{index}]"
                             f".contentDocument.body).{prop}"))


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_a_standalone_card_follows_the_viewers_colour_scheme(browser: Any, scheme: str) -> None:
    page = browser.new_page(color_scheme=scheme, viewport={"width": 700, "height": 500})
    _serve(page, flowcell_card())
    page.goto(f"{ORIGIN}/index.html")
    background = page.evaluate("getComputedStyle(document.body).backgroundColor")
    text = page.evaluate("getComputedStyle(document.body).color")
    header = page.evaluate("getComputedStyle(document.querySelector('th')).backgroundColor")
    if scheme == "light":
        assert (background, text) == ("rgb(255, 255, 255)", "rgb(31, 35, 40)")
    else:
        assert (background, text) == ("rgb(13, 17, 23)", "rgb(230, 237, 243)")
    assert header != background, "table headers stand out from the page in both schemes"
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"card-standalone-{scheme}.png"))
    page.close()


def test_the_card_frame_takes_the_notebook_theme_and_follows_a_theme_switch(browser: Any) -> None:
    # The OS prefers light: in the dark JupyterLab theme the card must still be dark.
    page = browser.new_page(color_scheme="light", viewport={"width": 800, "height": 900})
    style = ";".join(f"{k}:{v}" for k, v in DARK.items())
    _serve(page, f"""<!doctype html><html><head><link rel="stylesheet" href="/widgets.css"></head>
<body data-jp-theme-light="false" style="{style};background:#111">
<div id="mine"></div><div id="foreign"></div>
<script type="module">
import widgets from '/widgets.js';
const model = (state) => ({{ get: k => state[k], set() {{}}, save_changes() {{}}, on() {{}}, off() {{}}, send() {{}} }});
widgets.render({{ model: model({{ kind: 'card', html: {json.dumps(flowcell_card())}, title: 'mine' }}),
                  el: document.getElementById('mine') }});
widgets.render({{ model: model({{ kind: 'card', html: {json.dumps(FOREIGN)}, title: 'foreign' }}),
                  el: document.getElementById('foreign') }});
</script></body></html>""")
    page.goto(f"{ORIGIN}/index.html")
    page.wait_for_function("[...document.querySelectorAll('iframe.fc-card-frame')].length === 2 &&"
                           " [...document.querySelectorAll('iframe.fc-card-frame')].every(f =>"
                           " f.contentDocument?.readyState === 'complete' && f.offsetHeight > 60)")
    assert _frame_body(page, 0, "backgroundColor") == _color(page, DARK["--jp-layout-color1"])
    assert _frame_body(page, 0, "color") == _color(page, DARK["--jp-ui-font-color1"])
    # The other card keeps its own look: dark text on the frame's white page, nothing of ours injected.
    assert _frame_body(page, 1, "color") == "rgb(51, 51, 51)"
    assert page.evaluate("getComputedStyle(document.querySelectorAll('iframe.fc-card-frame')[1]).backgroundColor") \
        == "rgb(255, 255, 255)"
    assert page.evaluate("document.querySelectorAll('iframe.fc-card-frame')[1].contentDocument"
                         ".documentElement.getAttribute('style')") is None
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "card-frame-jupyterlab-dark.png"))
    # Switching JupyterLab's theme (its new variables, then the body's marker) recolours the card.
    page.evaluate("(vars) => { for (const [k, v] of Object.entries(vars)) document.body.style.setProperty(k, v);"
                  " document.body.dataset.jpThemeLight = 'true'; }", LIGHT)
    page.wait_for_function("getComputedStyle(document.querySelector('iframe.fc-card-frame').contentDocument.body)"
                           ".backgroundColor === 'rgb(255, 255, 255)'")
    assert _frame_body(page, 0, "color") == _color(page, LIGHT["--jp-ui-font-color1"])
    page.close()
