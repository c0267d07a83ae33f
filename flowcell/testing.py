"""Helpers for tests written by ``--as-test``: spin a step on inputs frozen in a fixture store.

A fixture store is an ordinary flowcell store holding one run: the parent task(s)
with the step's input artifacts, and the step's task with the outputs the spin
computed when the test was written.  The test spins that task against a private
copy of the store, so it never depends on (or touches) the runs in ``.flowcell/``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import FlowcellError

#: The file in a fixture store that says what to spin and as whom.
MANIFEST = "frozen-spin.json"


@contextmanager
def _environment(values: dict[str, str | None]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


class FrozenSpin:
    """A spin of the fixture's task and the outputs recorded for it."""

    def __init__(self, fixture: str | Path, notebook: str | Path) -> None:
        self.fixture = Path(fixture)
        manifest = self.fixture / MANIFEST
        if not manifest.exists():
            raise FlowcellError(f"{self.fixture} is not a frozen spin fixture (no {MANIFEST}); regenerate the test.")
        self.manifest: dict[str, Any] = json.loads(manifest.read_text())
        self.notebook = Path(notebook)
        self.result: Any = None
        self._expected: dict[str, Any] = {}
        self._actual: dict[str, Any] = {}

    def spin(self) -> Any:
        """Spin the step on a private copy of the frozen inputs; returns the ``SpinResult``."""
        from .client import Task
        from .runner import Runner

        # The step only reads the store, but SQLite and the blob store write side
        # files: work on a copy so the committed fixture never changes.
        copy = Path(tempfile.mkdtemp(prefix="flowcell-frozen-")) / "store"
        shutil.copytree(self.fixture, copy)
        env: dict[str, str | None] = {"FLOWCELL_ROOT": str(copy), "FLOWCELL_USER": self.manifest["user"],
                                      "FLOWCELL_PRODUCTION_TOKEN": None}
        names = list(self.manifest["expect"])
        # Values are read inside the fixture's namespace (the run belongs to its user).
        with _environment(env), Runner(self.notebook).spin(self.manifest["pathspec"]) as result:
            self.result = result
            recorded = Task(self.manifest["pathspec"], _root=copy)
            self._expected = {n: recorded[n].data for n in names}
            if result.successful:
                self._actual = {n: result.task[n].data for n in names if n in result.task}
        return result

    def expected(self, name: str) -> Any:
        """The value ``name`` had when the test was written."""
        if self.result is None:
            self.spin()
        return self._expected[name]

    def actual(self, name: str) -> Any:
        """The value the step produces now; an AssertionError if the spin failed or lost it."""
        if self.result is None:
            self.spin()
        if not self.result.successful:
            error = self.result.outcome.error if self.result.outcome else None
            raise AssertionError(f"The spin of {self.manifest['step']} failed: {self.result.exception}\n"
                                 + "\n".join(error.traceback if error else []))
        if name not in self._actual:
            raise AssertionError(f"The spin of {self.manifest['step']} no longer produces {name!r}.")
        return self._actual[name]


def assert_artifact_equal(actual: Any, expected: Any, name: str = "artifact") -> None:
    """Equality that understands arrays and DataFrames (exact values, dtypes and index)."""
    kind = type(expected).__module__.split(".")[0]
    if kind == "numpy" and hasattr(expected, "shape"):
        import numpy.testing

        numpy.testing.assert_array_equal(actual, expected, err_msg=f"{name} changed", strict=True)
    elif kind == "pandas" and hasattr(expected, "index"):
        import pandas.testing  # type: ignore[import-untyped]

        check = pandas.testing.assert_frame_equal if hasattr(expected, "columns") else pandas.testing.assert_series_equal
        check(actual, expected, obj=name)
    else:
        assert actual == expected, f"{name} changed: expected {expected!r}, got {actual!r}"
