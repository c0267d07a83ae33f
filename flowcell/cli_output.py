"""How the ``flowcell`` command reports a failure: one sentence, exit code 2, no colour in pipes.

A failure flowcell foresaw is a ``FlowcellError`` whose message is the sentence.  A
file or folder of the user's that cannot be used (``OSError``) becomes a sentence
naming it.  Anything else is a bug: the sentence says so and how to report it, and
``FLOWCELL_DEBUG=1`` prints the traceback.  Tracebacks of steps are coloured in the
kernel; on a stream that is not a terminal (a file, a pipe, CI) or with ``NO_COLOR``
the escapes are dropped.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO, cast

_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")


def fail(argv: list[str], kind: str, message: str) -> int:
    """One sentence on stderr (and one JSON object on stdout with ``--json``); exit code 2."""
    if "--json" in argv:
        sys.stdout.write(json.dumps({"status": "error", "error": {"type": kind, "message": message}}) + "\n")
    print(f"flowcell: {message}", file=sys.stderr)
    return 2


def os_error(argv: list[str], exc: OSError) -> int:
    """A file or folder that cannot be used, named in one sentence."""
    where = f"{exc.filename}: " if exc.filename else ""
    return fail(argv, type(exc).__name__, f"{where}{(exc.strerror or str(exc)).lower()}.")


def internal_error(argv: list[str], exc: BaseException) -> int:
    """An exception flowcell did not foresee: say it is a bug, and how to report it."""
    if os.environ.get("FLOWCELL_DEBUG"):
        import traceback

        traceback.print_exception(exc)
    command = argv[0] if argv else ""
    return fail(argv, "InternalError",
                f"internal error ({type(exc).__name__}: {exc}); this is a bug in flowcell, not in your flow: "
                f"please report it to the flowcell maintainers with the command you ran and the traceback "
                f"that FLOWCELL_DEBUG=1 flowcell {command} ... prints.")


class _Plain:
    """A standard stream without colour escapes."""

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        self._stream.write(_ANSI.sub("", text))
        return len(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextmanager
def plain_output() -> Iterator[None]:
    """No colour escapes on stdout or stderr when it is not a terminal, or with ``NO_COLOR``."""
    saved = sys.stdout, sys.stderr
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if os.environ.get("NO_COLOR") or not stream.isatty():
            setattr(sys, name, cast(TextIO, _Plain(stream)))
    try:
        yield
    finally:
        sys.stdout, sys.stderr = saved
