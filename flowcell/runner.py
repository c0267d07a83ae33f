"""``Runner``: run, spin and resume a notebook's flow from Python (and pytest).

Every ``Runner`` in a process shares one warm kernel pool, so a test module that
spins several steps pays for kernel start-up once.
"""

from __future__ import annotations

import atexit
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, TypeVar

from .errors import FlowcellError

T = TypeVar("T")
_lock = threading.Lock()
_shared: dict[str, Any] = {}


def shared_runtime() -> Any:
    """The process's kernel pool, started on first use and closed at exit."""
    with _lock:
        runtime = _shared.get("runtime")
        if runtime is None:
            from .runtime.engine import Runtime

            runtime = _shared["runtime"] = Runtime(pool_size=2)
            atexit.register(runtime.close)
        return runtime


def load_flow(path: str | Path) -> Any:
    """A notebook (``.ipynb``) or a Metaflow flow file (``.py``) as a FlowSource."""
    p = Path(path)
    if p.suffix == ".py":
        from .importer import read_flow_file

        return read_flow_file(p)
    from .model import read_notebook

    return read_notebook(p)


class _Result(Generic[T]):
    """A context manager around an already finished result (Metaflow's shape)."""

    def __init__(self, value: T) -> None:
        self.value = value

    def __enter__(self) -> T:
        return self.value

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        return None


class ExecutingRun:
    """The outcome of ``Runner.run``/``resume``: ``.run`` is the Client's ``Run``."""

    def __init__(self, result: Any) -> None:
        self._result = result
        self.status: str = result.status
        self.pathspec: str = result.pathspec

    @property
    def run(self) -> Any:
        from .client import Run

        return Run._open(self.pathspec, self._result.root)

    @property
    def successful(self) -> bool:
        return self.status == "completed"

    def __repr__(self) -> str:
        return f"<ExecutingRun {self.pathspec} {self.status}>"


class Runner:
    """Drive a notebook's flow: ``with Runner("flow.ipynb").run(alpha=0.5) as r: r.run``."""

    def __init__(self, flow: str | Path, max_workers: int = 4, **kwargs: Any) -> None:
        self.path = Path(flow)
        self.max_workers = max_workers
        self.flow = load_flow(self.path)
        self._spinner: Any = None

    def run(self, tags: list[str] | None = None, reuse: bool = False, **params: Any) -> _Result[ExecutingRun]:
        """Run the flow; with ``reuse=True`` unchanged tasks are taken from earlier runs (docs/reuse.md)."""
        from .runtime.runs import start_run

        result = start_run(shared_runtime(), self.flow, params, tags=tags, max_workers=self.max_workers,
                           reuse=reuse)
        return _Result(ExecutingRun(result))

    def resume(self, step: str | None = None, origin_run_id: int | str | None = None,
               tags: list[str] | None = None, **params: Any) -> _Result[ExecutingRun]:
        from .runtime.runs import start_resume

        result = start_resume(shared_runtime(), self.flow, step, origin_run_id, params, tags=tags,
                              max_workers=self.max_workers)
        return _Result(ExecutingRun(result))

    def spin(self, pathspec: str, artifacts: dict[str, Any] | None = None, persist: bool = False,
             skip_decorators: bool = False, artifacts_module: str | None = None,
             from_metaflow: str | None = None, split: int | None = None) -> _Result[Any]:
        """Spin one step; ``pathspec`` is ``STEP`` or any of Metaflow's longer forms.

        Inside a foreach every split runs (``.tasks``; ``.task`` is the first) unless
        ``pathspec`` names a task or ``split`` an index.
        """
        from .options import spin_overrides, spin_target
        from .runtime.spin import Spinner

        if self._spinner is None:
            self._spinner = Spinner(shared_runtime())
        step, target = spin_target(self.flow.name, [pathspec])
        overrides = spin_overrides(artifacts_module, artifacts)
        result = self._spinner.spin(self.flow, step, target, overrides,
                                    persist=persist, skip_decorators=skip_decorators, from_metaflow=from_metaflow,
                                    split=split)
        return _Result(result)
