"""The environment travels with the export: pins of what the steps import (SPEC section 12)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from flowcell.pins import (PinError, check_export, distributions_for, flow_environment, imported_modules,
                                  read_pins)
from flowcell.export import ExportError, export_flow
from flowcell.model import read_notebook

PIN_CELLS = [
    "%%flow PinFlow\nimport json\nimport numpy as np\nfrom flowcell import Parameter\n"
    "n = Parameter('n', default=3)",
    "%%step start\nimport yaml\nfrom dateutil import parser as date_parser\nself.total = int(np.arange(self.n).sum())\n"
    "self.doc = yaml.safe_dump({'a': 1})\nself.year = date_parser.parse('2024-05-01').year\nself.next(self.end)",
    "%%step end\nprint(self.total, self.year)",
]
#: Distributions the cells above import (module names differ from two of them).
IMPORTED = {"numpy", "PyYAML", "python-dateutil"}
#: Each imported module's own idea of its version, read in the kernel that exports.
VERSIONS_IN_KERNEL = ("import json, numpy, yaml, dateutil, metaflow\n"
                      "print(json.dumps({'numpy': numpy.__version__, 'PyYAML': yaml.__version__, "
                      "'python-dateutil': dateutil.__version__, 'metaflow': metaflow.__version__}))")


def write_nb(path: Path, cells: list[str]) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, str(path))
    return path


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "flowcell.cli", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300)


def test_export_magic_pins_equal_the_kernels_versions(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in
                ["%load_ext flowcell", *PIN_CELLS, "%export_flow pins.py", VERSIONS_IN_KERNEL]]
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    said = "".join(o.get("text", "") for o in nb.cells[-2].outputs)
    assert "pins.requirements.txt" in said and "python pins.py run" in said
    kernel = json.loads(nb.cells[-1].outputs[0]["text"])
    pins, source = read_pins(tmp_path / "pins.py")
    assert source == "pins.requirements.txt"
    assert pins == kernel  # exactly what the steps import (and metaflow, which the export imports)
    first = (tmp_path / "pins.py").read_text().splitlines()[0]
    assert first.startswith("# Requirements: pins.requirements.txt")


def test_plain_metaflow_run_of_the_default_export_still_works(tmp_path: Path) -> None:
    write_nb(tmp_path / "pins.ipynb", PIN_CELLS)
    proc = cli("export", "pins.ipynb", "-o", "flow.py", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "flow.requirements.txt" in proc.stderr
    req = (tmp_path / "flow.requirements.txt").read_text()
    assert "numpy==" in req and "PyYAML==" in req and "json" not in req.split("\n", 2)[2]
    env = dict(os.environ, METAFLOW_DEFAULT_DATASTORE="local", METAFLOW_DEFAULT_METADATA="local",
               USERNAME="tester", HOME=str(tmp_path))
    run = subprocess.run([sys.executable, "flow.py", "--quiet", "run"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 2024" in run.stdout + run.stderr


def test_env_pypi_and_conda_write_metaflows_decorators(tmp_path: Path) -> None:
    flow = read_notebook(write_nb(tmp_path / "pins.ipynb", PIN_CELLS))
    env = flow_environment(flow, with_metaflow=False)
    assert set(env.packages) == IMPORTED
    for kind in ("pypi", "conda"):
        exported = export_flow(flow, tmp_path / f"{kind}.py", env=kind)
        text = exported.path.read_text()
        assert f"@{kind}_base(python={env.python!r}, packages=" in text
        assert f"from metaflow import FlowSpec, {kind}_base" in text.replace("Parameter, ", "")
        assert not (tmp_path / f"{kind}.requirements.txt").exists()
        assert read_pins(exported.path) == (env.packages, f"{kind}.py (@{kind}_base)")
    # Metaflow reads the decorator (and, as documented, wants --environment=pypi to run it).
    proc = subprocess.run([sys.executable, "pypi.py", "--environment=pypi", "show"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300, env=dict(os.environ, HOME=str(tmp_path), USERNAME="tester"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    none = export_flow(flow, tmp_path / "bare.py", env="none")
    assert none.requirements is None and "_base" not in none.path.read_text()
    assert not (tmp_path / "bare.requirements.txt").exists()
    with pytest.raises(PinError, match="records no pins"):
        read_pins(tmp_path / "bare.py")


def test_check_reports_drift_one_line_per_package(tmp_path: Path) -> None:
    write_nb(tmp_path / "pins.ipynb", PIN_CELLS)
    assert cli("export", "pins.ipynb", cwd=tmp_path).returncode == 0
    clean = cli("export", "pins.ipynb", "--check", cwd=tmp_path)
    assert clean.returncode == 0 and "No drift: the 4 pins" in clean.stdout
    req = tmp_path / "pins.requirements.txt"
    text = req.read_text().replace("numpy==", "numpy==0.0.1+was").replace("PyYAML==", "PyYAML==0.0.1+was")
    req.write_text(text + "no-such-dist-anywhere==1.0\n")
    # The notebook now also imports pandas, which the export does not pin.
    write_nb(tmp_path / "pins.ipynb", [PIN_CELLS[0] + "\nimport pandas", *PIN_CELLS[1:]])
    drifted = cli("export", "pins.ipynb", "--check", cwd=tmp_path)
    assert drifted.returncode == 1
    lines = drifted.stdout.strip().splitlines()
    assert lines[0] == "4 packages drifted from pins.requirements.txt:"
    import numpy
    import pandas

    assert [line.strip() for line in lines[1:]] == [
        f"no-such-dist-anywhere: pinned 1.0, not installed",
        f"numpy: pinned 0.0.1+was{numpy.__version__}, installed {numpy.__version__}",
        f"PyYAML: pinned 0.0.1+was{__import__('yaml').__version__}, installed {__import__('yaml').__version__}",
        f"pandas: imported by the steps, not pinned (installed {pandas.__version__})",
    ]


def test_bad_inputs_are_one_sentence(tmp_path: Path) -> None:
    flow = read_notebook(write_nb(tmp_path / "pins.ipynb", PIN_CELLS))
    with pytest.raises(PinError, match="does not exist: export the flow first"):
        check_export(flow, tmp_path / "missing.py")
    export_flow(flow, tmp_path / "f.py")
    (tmp_path / "f.requirements.txt").write_text("numpy>=1\n")
    with pytest.raises(PinError, match=r"line 1: 'numpy>=1' is not a 'name==version' pin"):
        read_pins(tmp_path / "f.py")
    with pytest.raises(ExportError, match="--env takes one of"):
        export_flow(flow, tmp_path / "g.py", env="docker")
    flow.flow_decorators.append("@pypi_base(packages={'x': '1'})")
    with pytest.raises(ExportError, match="already declares @pypi_base"):
        export_flow(flow, tmp_path / "g.py", env="pypi")
    proc = cli("export", str(tmp_path / "pins.ipynb"), "--check", "-o", "nowhere.py", cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr


def test_mapping_skips_stdlib_flowcell_relative_and_unknown_modules() -> None:
    mods = imported_modules(["import os, json\nfrom . import sibling\nfrom flowcell import current\n"
                             "import yaml\nimport not_a_module_anyone_has\n", "this is not python"])
    assert mods == {"os", "json", "flowcell", "yaml", "not_a_module_anyone_has"}
    pins = distributions_for(mods)
    assert list(pins) == ["PyYAML"]


def test_each_run_records_the_versions_its_tasks_used(runtime: object, tmp_path: Path) -> None:
    import platform

    import numpy
    import yaml

    from conftest import run

    result, recorded, _ = run(runtime, """
%%flow EnvFlow
import json
import numpy as np
%%step start
import yaml
self.n = int(np.arange(3).sum())
self.doc = yaml.safe_dump({'n': self.n})
self.next(self.end)
%%step end
pass
""")
    assert result.status == "completed"
    assert recorded.environment == {"python": platform.python_version(),
                                    "packages": {"numpy": numpy.__version__, "PyYAML": yaml.__version__}}


def test_the_environment_decorator_keeps_its_name() -> None:
    """The pins module is not called ``flowcell.environment``: importing it would replace the decorator."""
    import flowcell.pins  # noqa: F401
    from flowcell import environment

    assert callable(environment) and not isinstance(environment, type(flowcell))
