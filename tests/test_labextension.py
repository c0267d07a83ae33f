"""The JupyterLab extension in a real browser: JupyterLab started on a free loopback
port, Debian's chromium driven by Playwright, a fixture notebook opened and used
from the keyboard. Screenshots go to test-artifacts/ (see docs/jupyterlab.md).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
import pytest

from conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _prebuilt() -> bool:
    return (ROOT / "flowcell" / "labextension" / "package.json").exists()


pytestmark = pytest.mark.skipif(
    not _prebuilt() and not os.environ.get("CI"),
    reason="the front-end extension is not built (run labextension's build; .ci/run does)",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("lab")
    port = _free_port()
    env = dict(os.environ, FLOWCELL_ROOT=str(root / ".flowcell"), FLOWCELL_USER="tester",
               JUPYTER_CONFIG_DIR=str(root / "jupyter-config"), JUPYTER_RUNTIME_DIR=str(root / "jupyter-runtime"))
    log = open(root / "lab.log", "w")
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", f"--port={port}", "--ip=127.0.0.1",
         "--ServerApp.token=flowcell-test", "--ServerApp.allow_root=True", f"--ServerApp.root_dir={root}",
         "--LabApp.expose_app_in_browser=True", "--ServerApp.disable_check_xsrf=True"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    for _ in range(120):
        try:
            urllib.request.urlopen(f"{base}/api/status?token=flowcell-test", timeout=2)
            break
        except OSError:
            time.sleep(0.5)
    else:
        server.terminate()
        raise RuntimeError((root / "lab.log").read_text())
    try:
        yield {"root": root, "base": base, "token": "flowcell-test"}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=chromium, args=CHROMIUM_FLAGS, headless=True)
        yield b
        b.close()


def _notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))


def _open(browser: Any, lab: dict[str, Any], name: str) -> Any:
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.goto(f"{lab['base']}/lab/tree/{name}?reset&token={lab['token']}")
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=60_000)
    page.wait_for_function("window.jupyterapp && window.jupyterapp.shell.currentWidget "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel "
                           "&& window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status === 'idle'",
                           timeout=60_000)
    return page


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


def test_badges_spin_shortcut_and_flow_panel(lab: dict[str, Any], browser: Any) -> None:
    _notebook(lab["root"] / "flow.ipynb", [
        "%load_ext flowcell\n%flowcell autospin off",
        "%%flow LabFlow\nimport time",
        "%%step start\nself.x = 41\nprint('start ran')\nself.next(self.end)",
        "%%step end\nprint('end saw', self.x + 1)",
    ])
    page = _open(browser, lab, "flow.ipynb")
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    badge = page.locator(".fc-badge[data-step='start']")
    badge.wait_for(timeout=60_000)
    page.wait_for_function("document.querySelector(\".fc-badge[data-step='end']\")?.textContent.includes('never run')",
                           timeout=60_000)
    assert "start · never run" in badge.text_content()
    # Ctrl+Shift+S on the start cell: saves, then spins the step of the active cell.
    page.locator(".jp-Cell").nth(2).click()
    # The step cell's toolbar offers "Spin step" too.
    page.locator(".jp-Cell").nth(2).locator(".jp-cell-toolbar").get_by_text("Spin step").wait_for(timeout=10_000)
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+S")
    page.wait_for_function("document.querySelector(\".fc-badge[data-step='start']\")?.textContent.includes('succeeded')",
                           timeout=60_000)
    output = page.locator(".jp-Cell").nth(2).locator(".jp-OutputArea")
    output.get_by_text("Spun 'start'").wait_for(timeout=30_000)
    assert "start ran" in output.text_content()
    _shot(page, "labextension-badges.png")
    # The Flow panel: the DAG with statuses; clicking a step scrolls to its cell.
    page.locator(".jp-SideBar.jp-mod-right [data-id='flowcell-panel']").click()
    panel = page.locator("#flowcell-panel")
    panel.locator("g.fc-step[data-step='end']").wait_for(timeout=30_000)
    assert "LabFlow" in panel.text_content()
    page.locator(".jp-Cell").nth(0).click()
    panel.locator("g.fc-step[data-step='end']").click()
    page.wait_for_function("window.jupyterapp.shell.currentWidget.content.activeCellIndex === 3", timeout=10_000)
    _shot(page, "labextension-flow-panel.png")
    # Run flow from the keyboard updates the panel's recent runs.
    page.locator(".jp-Cell").nth(3).click()
    page.keyboard.press("Escape")
    page.keyboard.press("Control+Shift+R")
    panel.locator(".fc-run").first.wait_for(timeout=60_000)
    assert "LabFlow/1 · completed" in panel.locator(".fc-run").first.text_content()
    page.close()


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


def test_wheel_ships_the_prebuilt_extension_and_lab_reports_it(tmp_path: Path) -> None:
    import zipfile

    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(tmp_path), str(ROOT)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    wheel = next(tmp_path.glob("flowcell-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    prefix = "flowcell-0.1.0.data/data/share/jupyter/labextensions/flowcell/"
    assert prefix + "package.json" in names and prefix + "install.json" in names
    assert any(n.startswith(prefix + "static/remoteEntry.") for n in names)
    listing = subprocess.run([sys.executable, "-m", "jupyter", "labextension", "list"], capture_output=True, text=True)
    line = next(l for l in (listing.stdout + listing.stderr).splitlines() if l.strip().startswith("flowcell "))
    assert "enabled" in line and "OK" in line
