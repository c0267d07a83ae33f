"""Metaflow's exception classes and values, as flows inside a flowcell task see them.

Metaflow stores a caught or failed task's exception as a wrapper with ``.exception``
(the message), ``.type`` (the fully qualified class name, e.g. ``builtins.KeyError``)
and ``.stacktrace``.  flowcell's ``Task.exception`` was a plain ``"Type: message"``
string; :class:`TaskException` is still that string and has Metaflow's attributes.

The classes a flow imports from ``metaflow.exception`` are defined here (served by
``_metaflow_shim``) and carry Metaflow's module names, so a stored exception and a
``@catch`` value's ``.type`` read as Metaflow's, here and in a process running real
Metaflow.
"""

from __future__ import annotations

from typing import Any


class TaskException(str):
    """``"Type: message"`` with Metaflow's ``.exception``, ``.type`` and ``.stacktrace``."""

    exception: str
    type: str
    stacktrace: str | None

    def __new__(cls, error: dict[str, Any]) -> TaskException:
        self = super().__new__(cls, f"{error.get('ename')}: {error.get('evalue')}")
        self.exception = str(error.get("evalue", ""))
        self.type = str(error.get("qualname") or error.get("ename") or "")
        self.stacktrace = error.get("text") or None
        return self


class MetaflowException(Exception):
    """Metaflow's base exception, as flows subclass it (``headline``, ``message``)."""

    headline = "Flow failed"

    def __init__(self, msg: str = "", lineno: int | None = None, source_file: str | None = None) -> None:
        self.message = msg
        self.line_no = lineno
        self.source_file = source_file
        super().__init__(msg)

    def __str__(self) -> str:
        return str(self.message)


class ExternalCommandFailed(MetaflowException):
    headline = "External command failed"


class MetaflowExceptionWrapper(Exception):
    """Metaflow's wrapper of a caught exception (``.exception``, ``.type``, ``.stacktrace``)."""

    def __init__(self, exc: BaseException | None = None) -> None:
        super().__init__()
        if exc is not None:
            self.exception = str(exc)
            self.type = f"{type(exc).__module__}.{type(exc).__qualname__}"
            self.stacktrace = None


class CardNotPresentException(MetaflowException):
    """No card matches (Metaflow's ``metaflow.plugins.cards.exception`` name)."""

    headline = "Card not found"


class TimeoutException(MetaflowException):
    """A step stopped by its ``@timeout`` (Metaflow's ``metaflow.plugins.timeout_decorator`` name)."""

    headline = "@timeout"


#: ``.type`` of a ``@catch`` value when the task died without raising (Metaflow's name).
FAILURE_HANDLED_BY_CATCH = "metaflow.plugins.catch_decorator.FailureHandledByCatch"

for _cls in (MetaflowException, ExternalCommandFailed, MetaflowExceptionWrapper):
    _cls.__module__ = "metaflow.exception"
CardNotPresentException.__module__ = "metaflow.plugins.cards.exception"
TimeoutException.__module__ = "metaflow.plugins.timeout_decorator"
