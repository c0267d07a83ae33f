"""The JupyterLab extension in a real browser: JupyterLab started on a free loopback
port, Debian's chromium driven by Playwright, a fixture notebook opened and used
from the keyboard. Screenshots go to test-artifacts/ (see docs/jupyterlab.md).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from browser_support import ARTIFACTS, serve, write_notebook
from conftest import ROOT


def _prebuilt() -> bool:
    return (ROOT / "flowcell" / "labextension" / "package.json").exists()


pytestmark = pytest.mark.skipif(
    not _prebuilt() and not os.environ.get("CI"),
    reason="the front-end extension is not built (run labextension's build; .ci/run does)",
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    with serve(tmp_path_factory.mktemp("lab")) as server:
        yield server


_notebook = write_notebook


def _open(browser: Any, lab: dict[str, Any], name: str, page: Any = None, notebook7: bool = False) -> Any:
    """Open a notebook in a new page (or reload it in ``page``) and wait for its kernel."""
    if page is None:
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        path = f"notebooks/{name}?" if notebook7 else f"lab/tree/{name}?reset&"
        page.goto(f"{lab['base']}/{path}token={lab['token']}")
    else:
        page.reload()
    _wait_kernel(page)
    return page


def _wait_kernel(page: Any) -> None:
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                           timeout=60_000)


def _wait_badge(page: Any, step: str, text: str) -> None:
    page.wait_for_function(f"document.querySelector(\".fc-badge[data-step='{step}']\")?.textContent.includes('{text}')",
                           timeout=60_000)


def _show_panel(page: Any) -> Any:
    """The Flow panel, opened where the app puts side panels (Lab's right sidebar, Notebook 7's right panel)."""
    if not page.locator("#flowcell-panel").is_visible():
        page.evaluate("window.jupyterapp.shell.activateById('flowcell-panel')")
    page.locator("#flowcell-panel").wait_for(timeout=10_000)
    return page.locator("#flowcell-panel")


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def smoke(browser: Any, server: dict[str, Any], shots: str, notebook7: bool = False) -> None:
    """What a user does first: badges on step cells, spin from the keyboard, the Flow panel, run from the keyboard."""
    _notebook(server["root"] / "flow.ipynb", [
        "%load_ext flowcell\n%flowcell autospin off",
        "%%flow LabFlow\nimport time",
        "%%step start\nself.x = 41\nprint('start ran')\nself.next(self.end)",
        "%%step end\nprint('end saw', self.x + 1)",
    ])
    page = _open(browser, server, "flow.ipynb", notebook7=notebook7)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    badge = page.locator(".fc-badge[data-step='start']")
    badge.wait_for(timeout=60_000)
    _wait_badge(page, "end", "never run")
    assert "start · never run" in badge.text_content()
    # F then S on the start cell (command mode): saves, then spins the step of the active cell.
    page.locator(".jp-Cell").nth(2).click()
    # The step cell's toolbar offers "Spin step" too.
    page.locator(".jp-Cell").nth(2).locator(".jp-cell-toolbar").get_by_text("Spin step").wait_for(timeout=10_000)
    page.keyboard.press("Escape")
    page.keyboard.press("f")
    page.keyboard.press("s")
    _wait_badge(page, "start", "succeeded")
    output = page.locator(".jp-Cell").nth(2).locator(".jp-OutputArea")
    output.get_by_text("Spun 'start'").wait_for(timeout=30_000)
    assert "start ran" in output.text_content()
    _shot(page, f"{shots}-badges.png")
    # The Flow panel: the DAG with statuses; clicking a step scrolls to its cell.
    panel = _show_panel(page)
    panel.locator(".fc-node[data-step='end']").wait_for(timeout=30_000)
    assert "LabFlow" in panel.text_content()
    page.locator(".jp-Cell").nth(0).click()
    panel.locator(".fc-node[data-step='end']").click()
    page.wait_for_function("window.jupyterapp.shell.currentWidget.content.activeCellIndex === 3", timeout=10_000)
    _shot(page, f"{shots}-flow-panel.png")
    # Run flow from the keyboard updates the panel's recent runs.
    page.locator(".jp-Cell").nth(3).click()
    page.keyboard.press("Escape")
    page.keyboard.press("f")
    page.keyboard.press("r")
    panel.locator(".fc-run").first.wait_for(timeout=60_000)
    assert "LabFlow/1 · completed" in panel.locator(".fc-run").first.text_content()
    page.close()


def test_badges_spin_shortcut_and_flow_panel(lab: dict[str, Any], browser: Any) -> None:
    smoke(browser, lab, "labextension")


def test_offers_to_load_when_flowcell_is_not_loaded(lab: dict[str, Any], browser: Any) -> None:
    _notebook(lab["root"] / "plain.ipynb", ["x = 1", "%%step start\nself.next(self.end)"])
    page = _open(browser, lab, "plain.ipynb")
    page.locator(".jp-SideBar.jp-mod-right [data-id='flowcell-panel']").click()
    button = page.locator("#flowcell-panel button.fc-load")
    button.wait_for(timeout=30_000)
    button.click()
    page.locator("#flowcell-panel h3").first.wait_for(timeout=60_000)
    assert "PlainFlow" in page.locator("#flowcell-panel").text_content()
    # After a kernel restart flowcell is gone from the kernel: the panel offers to load it again.
    page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    button.wait_for(timeout=60_000)
    button.click()
    page.locator("#flowcell-panel h3").first.wait_for(timeout=60_000)
    _shot(page, "labextension-load-offer.png")
    page.close()


def test_two_notebooks_keep_their_own_flows(lab: dict[str, Any], browser: Any) -> None:
    for name in ("first", "second"):
        _notebook(lab["root"] / f"{name}.ipynb", [f"%load_ext flowcell\n%flow {name.title()}Flow",
                                                  "%%step start\nself.next(self.end)", "%%step end\npass"])
    page = _open(browser, lab, "first.ipynb")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.locator(".fc-badge[data-step='end']").wait_for(timeout=60_000)
    page.evaluate("window.jupyterapp.commands.execute('docmanager:open', {path: 'second.ipynb'})")
    page.wait_for_function("window.jupyterapp.shell.currentWidget.context.path === 'second.ipynb' && "
                           "window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status === 'idle'",
                           timeout=60_000)
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.locator(".jp-SideBar.jp-mod-right [data-id='flowcell-panel']").click()
    page.wait_for_function("document.querySelector('#flowcell-panel h3')?.textContent === 'SecondFlow'", timeout=60_000)
    page.evaluate("window.jupyterapp.commands.execute('docmanager:open', {path: 'first.ipynb'})")
    page.wait_for_function("document.querySelector('#flowcell-panel h3')?.textContent === 'FirstFlow'", timeout=60_000)
    page.close()


def test_reload_second_tab_reopen_and_restart_keep_the_badges(lab: dict[str, Any], browser: Any) -> None:
    """Issue 11.3: every way a front end meets a kernel with flowcell asks it for the state."""
    _notebook(lab["root"] / "reload.ipynb", [
        "%load_ext flowcell\n%flowcell autospin off",
        "%%flow ReloadFlow\nimport os",
        "%%step start\nself.x = 1\nself.next(self.end)",
        "%%step end\nprint(self.x)",
        "run = %run_flow",
    ])
    page = _open(browser, lab, "reload.ipynb")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    _wait_badge(page, "end", "succeeded")
    # The badge sits at the top of its cell: above the input and above the cell's output.
    cell = page.locator(".jp-Cell").nth(2)
    cell.locator(".jp-OutputArea-output").first.wait_for(timeout=30_000)
    badge_y = cell.locator(".fc-badge").bounding_box()["y"]
    assert badge_y < cell.locator(".jp-Cell-inputWrapper").bounding_box()["y"]
    assert badge_y < cell.locator(".jp-Cell-outputWrapper").bounding_box()["y"]
    page.evaluate("window.jupyterapp.shell.currentWidget.context.save()")

    # A browser reload: the panel shows the flow (not "not loaded") and the badges their outcome.
    _open(browser, lab, "reload.ipynb", page=page)
    _wait_badge(page, "start", "succeeded")
    _wait_badge(page, "end", "succeeded")
    panel = _show_panel(page)
    panel.locator("h3").first.wait_for(timeout=30_000)
    assert panel.locator("h3").first.text_content() == "ReloadFlow"
    assert panel.locator("button.fc-load").count() == 0
    # Run flow right after the reload: no "Load flowcell?" dialog, a second run appears.
    page.evaluate("window.jupyterapp.commands.execute('flowcell:run-flow')")
    panel.get_by_text("ReloadFlow/2 · completed").wait_for(timeout=60_000)
    assert page.locator(".jp-Dialog").count() == 0
    _shot(page, "labextension-after-reload.png")

    # A second browser tab on the same notebook and kernel.
    second = browser.new_page(viewport={"width": 1400, "height": 900})
    second.goto(f"{lab['base']}/lab/tree/reload.ipynb?token={lab['token']}")
    _wait_kernel(second)
    _wait_badge(second, "end", "succeeded")
    second.close()

    # Close the notebook (its kernel keeps running) and reopen it.
    page.evaluate("window.jupyterapp.shell.currentWidget.dispose()")
    page.evaluate("window.jupyterapp.commands.execute('docmanager:open', {path: 'reload.ipynb'})")
    _wait_kernel(page)
    _wait_badge(page, "end", "succeeded")

    # A kernel restart forgets flowcell: the panel offers to load it, and once loaded the
    # badges come from the store although no cell has been run in the new kernel.
    page.evaluate("window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.restart()")
    button = panel.locator("button.fc-load")
    button.wait_for(timeout=60_000)
    _wait_badge(page, "end", "never run")
    button.click()
    _wait_badge(page, "start", "succeeded")
    _wait_badge(page, "end", "succeeded")
    page.close()


def test_one_render_per_change_however_often_the_notebook_is_switched(lab: dict[str, Any], browser: Any) -> None:
    """Issue 10.7: switching notebooks adds no listener (a leak would render the panel once per switch)."""
    for name in ("left", "right"):
        _notebook(lab["root"] / f"{name}.ipynb", ["%load_ext flowcell\n%flowcell autospin off",
                                                   "%%step start\nself.next(self.end)", "%%step end\npass"])
    page = _open(browser, lab, "left.ipynb")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    _wait_badge(page, "end", "never run")
    panel = _show_panel(page)
    panel.locator("h3").first.wait_for(timeout=30_000)
    page.evaluate("""() => {
        window.__renders = 0;
        new MutationObserver(records => {
            window.__renders += records.filter(r => [...r.addedNodes].some(n => n.tagName === 'H3')).length;
        }).observe(document.querySelector('#flowcell-panel'), {childList: true});
    }""")

    def renders_for_one_change() -> int:
        page.evaluate("window.jupyterapp.shell.activateById(window.jupyterapp.shell.currentWidget.id)")
        before = page.evaluate("window.__renders")
        marker = page.evaluate("window.jupyterapp.shell.currentWidget.content.widgets.length")
        # Re-running a step cell with autospin off registers it and pushes the state once.
        page.evaluate("(async () => { const nb = window.jupyterapp.shell.currentWidget;"
                      " nb.content.activeCellIndex = 2;"
                      " await window.jupyterapp.commands.execute('notebook:run-cell'); })()")
        page.wait_for_function(f"window.__renders > {before}", timeout=30_000)
        # Let any further (leaked) listeners fire before counting.
        page.evaluate("new Promise(r => setTimeout(r, 1000))")
        assert marker == page.evaluate("window.jupyterapp.shell.currentWidget.content.widgets.length")
        return int(page.evaluate("window.__renders")) - int(before)

    baseline = renders_for_one_change()
    page.evaluate("window.jupyterapp.commands.execute('docmanager:open', {path: 'right.ipynb'})")
    page.wait_for_function("window.jupyterapp.shell.currentWidget.context.path === 'right.ipynb' && "
                           "window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status === 'idle'",
                           timeout=60_000)
    for _ in range(4):
        for name in ("left.ipynb", "right.ipynb"):
            page.evaluate(f"window.jupyterapp.commands.execute('docmanager:open', {{path: '{name}'}})")
            page.wait_for_function(f"window.jupyterapp.shell.currentWidget.context.path === '{name}'")
    page.evaluate("window.jupyterapp.commands.execute('docmanager:open', {path: 'left.ipynb'})")
    page.wait_for_function("window.jupyterapp.shell.currentWidget.context.path === 'left.ipynb'")
    assert renders_for_one_change() == baseline
    page.close()


def test_panel_graph_is_laid_out_by_dagre_as_text_and_typing_does_not_touch_badges(
        lab: dict[str, Any], browser: Any) -> None:
    """Issue 17: the Flow panel lays out the kernel's graph model with the widgets' dagre code;
    markup in a name from the kernel stays text (issue 10.7); typing is debounced."""
    _notebook(lab["root"] / "hostile.ipynb", [
        "%load_ext flowcell\n%flowcell autospin off\nimport flowcell.widgets as w\n_model = w.graph_model\n"
        "def hostile(*args, **kwargs):\n    model = _model(*args, **kwargs)\n"
        "    model['edges'][0]['label'] = '<img src=x onerror=\"window.__pwned = 1\"><script>window.__pwned = 2</script>'\n"
        "    return model\n"
        "w.graph_model = hostile",
        "%%step start\nself.next(self.end)",
        "%%step end\npass",
    ])
    page = _open(browser, lab, "hostile.ipynb")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    panel = _show_panel(page)
    panel.locator(".fc-node[data-step='end']").wait_for(timeout=60_000)
    page.evaluate("new Promise(r => setTimeout(r, 500))")
    assert page.evaluate("window.__pwned") is None
    assert panel.locator("script, img, [onerror]").count() == 0
    assert "<img src=x" in panel.locator(".fc-edge-label text").text_content(), "shown as text"
    # dagre's layout, as in the widget: end below start, the edge routed between them.
    start = panel.locator(".fc-node[data-step='start']").bounding_box()
    end = panel.locator(".fc-node[data-step='end']").bounding_box()
    assert end["y"] > start["y"] + start["height"] and panel.locator("path.fc-edge").count() == 1
    # The graph still works: clicking a step selects its cell.
    panel.locator(".fc-node[data-step='end']").click()
    page.wait_for_function("window.jupyterapp.shell.currentWidget.content.activeCellIndex === 2", timeout=10_000)
    # Issue 17.4: the graph sits in the zoomable viewport; + makes it larger, fit brings it back.
    drawing = panel.locator(".fc-graph-viewport svg.fc-graph-canvas > g")
    fitted = drawing.bounding_box()["width"]
    viewport_width = panel.locator(".fc-graph-viewport").bounding_box()["width"]
    assert 0 < fitted <= viewport_width + 1
    panel.locator(".fc-zoom-in").click()
    panel.locator(".fc-zoom-in").click()
    assert drawing.bounding_box()["width"] > fitted * 1.5
    panel.locator(".fc-zoom-fit").click()
    assert abs(drawing.bounding_box()["width"] - fitted) < 1
    assert panel.locator(".fc-node[data-step='end']").count() == 1
    panel.locator(".fc-zoom-in").click()  # kept through the re-render the rename below causes

    # Typing in a step's body leaves its badge alone; renaming the step updates it once typing pauses.
    page.evaluate("""() => {
        window.__badgeMutations = 0;
        const observer = new MutationObserver(rs => { window.__badgeMutations += rs.length; });
        document.querySelectorAll('.fc-badge').forEach(b => observer.observe(b,
            {attributes: true, childList: true, characterData: true, subtree: true}));
        document.querySelectorAll('.jp-Notebook .jp-Cell').forEach(c => observer.observe(c, {childList: true}));
    }""")
    page.locator(".jp-Cell").nth(1).locator(".cm-content").click()
    page.keyboard.press("Control+End")
    page.keyboard.type("\n# a comment typed key by key", delay=20)
    page.evaluate("new Promise(r => setTimeout(r, 500))")
    assert page.evaluate("window.__badgeMutations") == 0
    page.keyboard.press("Control+Home")
    page.keyboard.press("End")
    page.keyboard.type("x", delay=20)
    _wait_badge(page, "startx", "never run")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-cell')")  # the kernel's graph changes
    panel.locator(".fc-node[data-step='startx']").wait_for(timeout=30_000)
    assert drawing.bounding_box()["width"] > fitted * 1.1
    page.close()


def test_shortcuts_are_changed_through_the_settings_editor_store(lab: dict[str, Any], browser: Any) -> None:
    """Issue 16.4: the shortcuts are settings; a user's override (what the Settings Editor writes) replaces them."""
    selector = ".jp-Notebook.jp-mod-commandMode:not(.jp-mod-readWrite) :focus"
    settings = lab["root"] / "jupyter-config" / "lab" / "user-settings" / "@jupyterlab" / "shortcuts-extension"
    settings.mkdir(parents=True, exist_ok=True)
    override = settings / "shortcuts.jupyterlab-settings"
    override.write_text(json.dumps({"shortcuts": [
        {"command": "flowcell:spin-step", "keys": ["F", "S"], "selector": selector, "disabled": True},
        {"command": "flowcell:spin-step", "keys": ["G", "S"], "selector": selector},
    ]}))
    try:
        _notebook(lab["root"] / "keys.ipynb", ["%load_ext flowcell"])
        page = _open(browser, lab, "keys.ipynb")
        keys = page.evaluate("window.jupyterapp.commands.keyBindings"
                             ".filter(b => b.command === 'flowcell:spin-step').map(b => b.keys.join(' '))")
        assert keys == ["G S"]
        page.close()
    finally:
        override.unlink()


def test_a_cell_deleted_in_the_notebook_leaves_the_flow(lab: dict[str, Any], browser: Any) -> None:
    """Issue 11.4: the front end tells the kernel which cells the notebook holds; a deleted step is gone."""
    _notebook(lab["root"] / "cells.ipynb", [
        "%load_ext flowcell\n%flowcell autospin off",
        "%%flow CellsFlow\nimport os",
        "%%step start\nself.next(self.end)",
        "%%step extra\nself.x = 1",
        "%%step end\npass",
        "%flowcell status",
    ])
    page = _open(browser, lab, "cells.ipynb")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    status = page.locator(".jp-Cell").nth(5).locator(".jp-OutputArea")
    status.get_by_text("extra").first.wait_for(timeout=60_000)
    page.evaluate("(async () => { const nb = window.jupyterapp.shell.currentWidget;"
                  " nb.content.activeCellIndex = 3;"
                  " await window.jupyterapp.commands.execute('notebook:delete-cell'); })()")
    page.wait_for_function("window.jupyterapp.shell.currentWidget.content.widgets.length === 5")
    panel = _show_panel(page)
    # The kernel dropped the step and pushed the new state: the graph has start -> end only.
    panel.locator(".fc-node[data-step='end']").wait_for(timeout=30_000)
    page.wait_for_function("!document.querySelector(\"#flowcell-panel .fc-node[data-step='extra']\")",
                           timeout=30_000)
    page.evaluate("(async () => { const nb = window.jupyterapp.shell.currentWidget;"
                  " nb.content.activeCellIndex = 4;"
                  " await window.jupyterapp.commands.execute('notebook:run-cell'); })()")
    status = page.locator(".jp-Cell").nth(4).locator(".jp-OutputArea")
    page.wait_for_function("document.querySelectorAll('.jp-Cell')[4].querySelector('.jp-OutputArea')"
                           "?.textContent.includes('end')", timeout=30_000)
    assert "extra" not in status.text_content()
    page.close()
