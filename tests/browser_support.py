"""What the browser tests share: a Jupyter server on a free port, Debian's chromium, notebooks.

Used by the JupyterLab / Notebook 7 tests (test_labextension, test_widgets_browser,
test_status_browser, test_install) and the bundle-only tests (test_card_theme_browser,
test_live_browser).
"""

from __future__ import annotations

import contextlib
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

from conftest import ROOT

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TOKEN = "flowcell-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """Debian's chromium, headless, driven by Playwright."""
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or "/usr/bin/chromium"
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_FLAGS, headless=True)
        try:
            yield browser
        finally:
            browser.close()


@contextlib.contextmanager
def serve(root: Path, python: str = sys.executable, app: str = "jupyterlab", env: dict[str, str] | None = None,
          settings: dict[str, str] | None = None) -> Iterator[dict[str, Any]]:
    """A Jupyter server (``jupyterlab`` or ``notebook``, Notebook 7) run by ``python`` on a free port.

    ``settings`` are user settings files (``"@jupyterlab/x-extension/y.jupyterlab-settings"`` ->
    JSON text) for a private settings folder; the store, user and Jupyter folders are private too.
    """
    port = free_port()
    env = dict(env or os.environ, FLOWCELL_ROOT=str(root / ".flowcell"), FLOWCELL_USER="tester",
               JUPYTER_CONFIG_DIR=str(root / "jupyter-config"), JUPYTER_RUNTIME_DIR=str(root / "jupyter-runtime"))
    app_class = "LabApp" if app == "jupyterlab" else "JupyterNotebookApp"
    extra: list[str] = []
    if settings:
        for name, text in settings.items():
            path = root / "lab-settings" / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        extra.append(f"--{app_class}.user_settings_dir={root / 'lab-settings'}")
    log = open(root / f"{app}.log", "w")
    server = subprocess.Popen(
        [python, "-m", app, "--no-browser", f"--port={port}", "--ip=127.0.0.1", *extra,
         f"--ServerApp.token={TOKEN}", "--ServerApp.allow_root=True", f"--ServerApp.root_dir={root}",
         f"--{app_class}.expose_app_in_browser=True", "--ServerApp.disable_check_xsrf=True"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"{base}/api/status?token={TOKEN}", timeout=2)
                break
            except OSError:
                if server.poll() is not None:
                    break
                time.sleep(0.5)
        else:
            raise RuntimeError((root / f"{app}.log").read_text())
        if server.poll() is not None:
            raise RuntimeError((root / f"{app}.log").read_text())
        yield {"root": root, "base": base, "token": TOKEN}
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


def write_notebook(path: Path, cells: list[str]) -> None:
    """A notebook of code cells with the python3 kernel."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))


def route_files(page: Any, origin: str, files: dict[str, tuple[str, str]]) -> None:
    """Serve ``files`` (path -> (body, content type)) at a made-up ``origin``; abort every other request."""

    def answer(route: Any) -> None:
        path = "/" + route.request.url.removeprefix(origin).lstrip("/")
        if path in files:
            body, kind = files[path]
            route.fulfill(status=200, body=body, content_type=kind)
        else:
            route.abort()

    page.route("**/*", answer)


#: The widgets' built front end (``npm run build:widgets`` in labextension/).
STATIC = ROOT / "flowcell" / "widgets" / "static"


def route_widget_page(page: Any, origin: str, index_html: str) -> None:
    """Serve ``index_html`` with the widget bundle beside it at ``origin``; nothing else loads."""
    route_files(page, origin, {"/index.html": (index_html, "text/html"),
                               "/widgets.js": ((STATIC / "widgets.js").read_text(), "text/javascript"),
                               "/widgets.css": ((STATIC / "widgets.css").read_text(), "text/css")})
