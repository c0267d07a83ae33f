"""The pytest example in docs/ runs and passes (so the documentation stays true)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import ROOT


def test_quickstart_unit_test_example_passes(tmp_path: Path) -> None:
    example = ROOT / "docs" / "examples" / "test_quickstart_steps.py"
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(example)],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout
