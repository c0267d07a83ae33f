"""flowcell: write, run, spin and export Metaflow-style workflows from Jupyter.

Importing flowcell is cheap: the Client, the runtime and the magics load on first
use.  In a notebook: ``%load_ext flowcell``.
"""

from __future__ import annotations

from typing import Any

from ._version import __version__

# `current` is imported here, not lazily: the submodule of the same name would shadow it.
from .current import current

# Parameter and friends load on first use: every `flowcell ...` command imports this
# package, and a command handed to the warm kernel server should cost little more
# than the interpreter's own start.


def _decorator(name: str) -> Any:
    def decorator(*args: Any, **kwargs: Any) -> Any:
        # In a notebook, decorators live on the %%step line; this name exists so that
        # code written for Metaflow (from metaflow import retry) also imports here.
        if len(args) == 1 and callable(args[0]) and not kwargs:
            return args[0]
        return lambda f: f

    decorator.__name__ = name
    return decorator


card = _decorator("card")
retry = _decorator("retry")
catch = _decorator("catch")
timeout = _decorator("timeout")
environment = _decorator("environment")

_LAZY = {
    "Parameter": "parameters", "IncludeFile": "parameters", "Config": "parameters",
    "JSONType": "parameters",
    "Flow": "client", "Run": "client", "Step": "client", "Task": "client", "DataArtifact": "client",
    "namespace": "client", "get_namespace": "client", "default_namespace": "client",
    "inspect_spin": "client", "Runner": "runner", "FlowcellError": "errors", "get_cards": "client",
    "browse": "widgets",
}

__all__ = ["__version__", "current", "Parameter", "IncludeFile", "Config", "JSONType",
           "card", "retry", "catch", "timeout", "environment",
           "load_ipython_extension", "unload_ipython_extension", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'flowcell' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"flowcell.{module}"), name)
    globals()[name] = value
    return value


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    """Where JupyterLab finds the prebuilt front-end extension shipped in the wheel."""
    return [{"src": "labextension", "dest": "flowcell"}]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext flowcell``: register the magics and warm the kernel pool."""
    from .magics import load

    load(ipython)


def unload_ipython_extension(ipython: Any) -> None:
    from .magics import unload

    unload(ipython)
