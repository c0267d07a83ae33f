"""Install like a user: the wheel built by the build backend, installed into a fresh
virtual environment (not editable, not this tree), gives a working extension in
JupyterLab and in Jupyter Notebook 7; its shortcuts clash with nothing.

The wheel is built once per session and the venv made once (pip's cache makes the
installs cheap); the browser tests then run against servers started from that venv.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT
from flowcell import __version__
from test_labextension import _open, _shot, _show_panel, _wait_badge, serve, smoke  # noqa: F401

pytestmark = pytest.mark.slow

# Shortcuts browsers keep for themselves (Chrome, Firefox; Linux/Windows, with Accel = Cmd on macOS).
BROWSER_SHORTCUTS = {
    *(f"Accel {k}" for k in "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"),
    *(f"Accel Shift {k}" for k in "ABCDEIJKMNOPRSTWXY"),
    *(f"Alt {k}" for k in ("F", "E", "D", "ArrowLeft", "ArrowRight", "Home")),
    "F1", "F3", "F5", "F6", "F7", "F11", "F12", "Accel F5", "Shift F5", "Accel Tab", "Accel Shift Tab",
    "Accel =", "Accel -", "Accel Shift Delete", "Accel PageUp", "Accel PageDown",
}


def _build_env() -> dict[str, str]:
    # `jupyter labextension build` runs from the npm script: this interpreter's scripts first.
    return dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")


@pytest.fixture(scope="session")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`pip wheel .`: the build hook rebuilds the front end only if labextension/ changed since its last build."""
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                           "-w", str(out), str(ROOT)], capture_output=True, text=True, timeout=900, env=_build_env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    return next(out.glob("flowcell-*.whl"))


@pytest.fixture(scope="session")
def venv(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with the wheel (plus JupyterLab through the `lab` extra, and Notebook 7) installed."""
    home = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(home)], check=True, timeout=120)
    python = home / "bin" / "python"
    # This pip installs into the new venv (`--python`), with its warm cache: no pip bootstrap there.
    proc = subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                           f"{wheel}[lab]", "notebook>=7.5,<7.6"], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return home


def _venv_env(venv: Path, tmp: Path) -> dict[str, str]:
    """The venv's own Jupyter paths only: no user-level or development copies of the extension."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "VIRTUAL_ENV", "PYTHON"))}
    return dict(env, PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", HOME=str(tmp),
                JUPYTER_DATA_DIR=str(tmp / "data"), JUPYTER_CONFIG_DIR=str(tmp / "config"))


def test_wheel_holds_the_built_extension_and_the_widget_bundles(wheel: Path) -> None:
    names = zipfile.ZipFile(wheel).namelist()
    prefix = f"flowcell-{__version__}.data/data/share/jupyter/labextensions/flowcell/"
    assert prefix + "package.json" in names and prefix + "install.json" in names
    assert any(n.startswith(prefix + "static/remoteEntry.") for n in names)
    assert prefix + "schemas/flowcell/plugin.json" in names
    assert "flowcell/widgets/static/widgets.js" in names
    built = json.loads(zipfile.ZipFile(wheel).read(prefix + "package.json"))
    assert built["version"] == __version__  # one version: the front end reports the Python package's


def test_installed_wheel_is_listed_enabled_and_ok(venv: Path, tmp_path: Path) -> None:
    env = _venv_env(venv, tmp_path)
    listing = subprocess.run([str(venv / "bin" / "jupyter"), "labextension", "list"], capture_output=True,
                             text=True, env=env, timeout=120)
    lines = (listing.stdout + listing.stderr).splitlines()
    line = next(i for i, text in enumerate(lines) if text.strip().startswith("flowcell "))
    assert f"flowcell v{__version__}" in lines[line] and "enabled" in lines[line] and "OK" in lines[line]
    # It is the venv's copy (from the wheel), not a development link.
    section = next(text for text in reversed(lines[:line]) if text.strip().startswith("/"))
    assert section.strip() == str(venv / "share" / "jupyter" / "labextensions")
    assert not (venv / "share" / "jupyter" / "labextensions" / "flowcell").is_symlink()
    shown = subprocess.run([str(venv / "bin" / "python"), "-c", "import flowcell; print(flowcell.__file__)"],
                           capture_output=True, text=True, env=env, timeout=60).stdout
    assert shown.startswith(str(venv))


@pytest.fixture(scope="module")
def installed_lab(venv: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("installed-lab")
    with serve(root, python=str(venv / "bin" / "python"), env=_venv_env(venv, root)) as server:
        yield server


def test_browser_smoke_test_against_the_installed_wheel(installed_lab: dict[str, Any], browser: Any) -> None:
    smoke(browser, installed_lab, "installed-lab")


def test_default_shortcuts_clash_with_neither_jupyterlab_nor_the_browser(
        installed_lab: dict[str, Any], browser: Any) -> None:
    page = _open(browser, installed_lab, "flow.ipynb")
    bindings = page.evaluate("window.jupyterapp.commands.keyBindings.map("
                             "b => ({command: b.command, keys: b.keys, selector: b.selector}))")
    ours = [b for b in bindings if b["command"].startswith("flowcell:")]
    others = [b for b in bindings if not b["command"].startswith("flowcell:")]
    # Declared in the plugin's settings schema, so the Settings Editor lists and changes them.
    assert {b["command"] for b in ours} == {"flowcell:spin-step", "flowcell:run-flow"}
    schema = page.evaluate("window.jupyterapp.serviceManager.settings.fetch('flowcell:plugin')"
                           ".then(s => s.schema['jupyter.lab.shortcuts'])")
    assert {s["command"] for s in schema} == {"flowcell:spin-step", "flowcell:run-flow"}
    for mine in ours:
        keys = mine["keys"]
        for other in others:
            theirs = other["keys"]
            shorter = min(len(keys), len(theirs))
            assert keys[:shorter] != theirs[:shorter], f"{keys} clashes with {other['command']} {theirs}"
        assert keys[0] not in BROWSER_SHORTCUTS, f"{keys} starts with a browser shortcut"
    page.close()


def test_notebook_7_shows_badges_spins_from_the_keyboard_and_has_the_flow_panel(
        venv: Path, browser: Any, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.mktemp("notebook7")
    with serve(root, python=str(venv / "bin" / "python"), app="notebook", env=_venv_env(venv, root)) as server:
        smoke(browser, server, "notebook7", notebook7=True)
        page = _open(browser, server, "flow.ipynb", notebook7=True)
        _wait_badge(page, "start", "succeeded")
        _show_panel(page).get_by_text("LabFlow/1 · completed").wait_for(timeout=30_000)
        _shot(page, "notebook7-badges-and-flow-panel.png")
        page.close()
