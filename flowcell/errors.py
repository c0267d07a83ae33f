"""One exception hierarchy for flowcell.

Every message says what happened and what to do about it.  Errors raised while a
step runs in a child kernel carry the child's own traceback and render it through
``_render_traceback_`` so IPython shows it instead of flowcell's internals.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # for annotations only: protocol imports nothing, errors stays import-free
    from .protocol import TaskError


class FlowcellError(Exception):
    """Base class of every error flowcell raises on purpose."""


class FlowSyntaxError(FlowcellError):
    """A ``%%flow`` or ``%%step`` cell (or a flow file) cannot be read."""


class LintError(FlowcellError):
    """The flow graph fails one of the structural checks Metaflow's lint makes."""

    def __init__(self, message: str, step: str | None = None, cell: str | None = None) -> None:
        super().__init__(message)
        self.step = step
        self.cell = cell


class InvalidNameError(FlowcellError):
    """A flow, step, parameter or tag name that flowcell cannot accept."""


class ParameterError(FlowcellError):
    """An unknown parameter, a missing required one, or a value of the wrong type."""


class TagLimitError(InvalidNameError):
    """Too many user tags on one run."""


class ExportError(FlowcellError):
    """The notebook cannot be exported faithfully; the message names the cell."""


class FlowImportError(FlowSyntaxError):
    """The file is not a Metaflow flow flowcell can read; the message says why."""


class MergeArtifactsError(FlowcellError):
    """``merge_artifacts`` found artifacts whose values differ between inputs."""


class StoreError(FlowcellError):
    """The datastore cannot be read or written."""


class CorruptBlobError(StoreError):
    """A blob's bytes no longer match their content address (or its file is gone).

    ``artifact`` and ``pathspec`` name what the blob holds, when the reader knows.
    """

    def __init__(self, message: str, address: str | None = None, missing: bool = False,
                 artifact: str | None = None, pathspec: str | None = None) -> None:
        super().__init__(message)
        self.address = address
        self.missing = missing
        self.artifact = artifact
        self.pathspec = pathspec

    def _render_traceback_(self) -> list[str]:
        # The sentence names the artifact, its task and the remedy: IPython shows just that.
        return [f"{type(self).__name__}: {self}"]


class StoreFullError(StoreError):
    """The disk holding the datastore is full."""


class NotFoundError(FlowcellError, KeyError):
    """A flow, run, step, task or artifact that does not exist."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NamespaceMismatch(FlowcellError):
    """An object exists but lies outside the current namespace."""


class UnpicklableArtifactError(FlowcellError):
    """An artifact set on ``self`` cannot be serialized."""


class KernelDiedError(FlowcellError):
    """The child kernel running a task exited (crash, ``os._exit``, out of memory)."""


class RunInterrupted(FlowcellError):
    """The user interrupted a run or spin; its tasks were stopped and the run marked failed."""

    def _render_traceback_(self) -> list[str]:
        return [str(self)]  # one sentence, no traceback of flowcell's own frames


class NothingToResume(FlowcellError):
    """``resume`` without a step, of a run that did not fail: the message names a step to give.

    ``str()`` shows the Python form; the shell and the notebook use :meth:`advice`
    with their own syntax, so a message is always in the syntax of where it is read.
    """

    def __init__(self, run: str, step: str) -> None:
        self.run, self.step = run, step
        super().__init__(self.advice(f"Runner(...).resume({step!r})"))

    def advice(self, example: str) -> str:
        return f"Run {self.run} has no failed step to resume from; name the step to resume from, e.g. {example}."


class StepFailed(FlowcellError):
    """A step raised an exception in its child kernel.

    ``traceback`` holds the child's formatted traceback lines (ANSI coloured, in
    the cell's own line numbers); IPython prints them via ``_render_traceback_``.
    """

    def __init__(
        self,
        pathspec: str,
        ename: str,
        evalue: str,
        traceback: list[str] | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(f"Step {pathspec} failed: {ename}: {evalue}")
        self.pathspec = pathspec
        self.ename = ename
        self.evalue = evalue
        self.traceback = list(traceback or [])
        self.detail = detail or {}

    @classmethod
    def of(cls, pathspec: str, error: TaskError | None, note: str | None = None) -> StepFailed:
        """The error a user sees for a failed task, in the notebook, the shell, a spin or a run."""
        if error is None:
            return cls(pathspec, "FlowcellError", "the task failed without reporting an error")
        lines = ([note] if note else []) + list(error.traceback)
        # stopped inside the step (Metaflow's TimeoutException) or, failing that, by the parent
        kind = StepTimeoutError if error.ename in ("StepTimeoutError", "TimeoutException") else cls
        return kind(pathspec, error.ename, error.evalue, lines, {"line": error.line})

    def _render_traceback_(self) -> list[str]:
        return [f"Step {self.pathspec} failed:", *self.traceback]


class StepTimeoutError(StepFailed):
    """A task ran longer than its ``@timeout`` allows (it was stopped)."""


class RunFailed(FlowcellError):
    """A run ended with a failed task; the run is recorded and can be resumed."""

    def __init__(self, message: str, run: Any = None, failure: StepFailed | None = None) -> None:
        super().__init__(message)
        self.run = run
        self.failure = failure

    def _render_traceback_(self) -> list[str]:
        lines = [str(self)]
        if self.failure is not None:
            lines += self.failure.traceback
        return lines


class PinError(FlowcellError):
    """An export's pinned environment cannot be written or read back; the message names the file."""


class MetaflowRunError(FlowcellError):
    """A run on Metaflow could not be started or read; the message says why."""
