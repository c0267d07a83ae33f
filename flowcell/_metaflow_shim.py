"""``import metaflow`` inside a flowcell task resolves to flowcell.

A Metaflow flow does not only import Metaflow at the top of ``flow.py``: step bodies,
helper modules and libraries do ``from metaflow import current, Task``,
``from metaflow.exception import MetaflowException`` or
``from metaflow.cards import get_cards``.  Inside a flowcell task each of those must be
the running flow's ``current``, flowcell's Client and flowcell's exceptions, or the
step would read an empty ``current`` and Metaflow's own (empty) store.

:func:`install` puts a meta-path finder first on ``sys.meta_path`` that serves
``metaflow`` and the submodules flows use from small modules built here out of
flowcell's implementations.  Any other ``metaflow.*`` submodule is not found (one
clear ``ModuleNotFoundError``) rather than half-loading the real package.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections import namedtuple
from collections.abc import Callable, Sequence
from typing import Any

from ._exception_value import (CardNotPresentException, ExternalCommandFailed, MetaflowException,
                               MetaflowExceptionWrapper)
from . import errors
from ._flowspec import MissingInMergeArtifactsException, UnhandledInMergeArtifactsException
from .current import current
from .errors import FlowcellError
from .parameters import Config, IncludeFile, JSONType, Parameter
from .user_config import ConfigValue, config_expr


def _passthrough(name: str) -> Callable[..., Any]:
    """A decorator usable bare (``@step``) or called (``@retry(times=2)``): flowcell reads
    decorators from the source, so at run time it only has to leave the function alone."""

    def decorator(*args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and not kwargs and (callable(args[0]) or isinstance(args[0], type)):
            return args[0]
        return lambda f: f

    decorator.__name__ = name
    return decorator


_DECORATORS = (
    "step", "card", "retry", "catch", "timeout", "environment", "resources", "project", "parallel", "batch",
    "kubernetes", "pypi", "conda", "pypi_base", "conda_base", "schedule", "trigger", "trigger_on_finish",
    "secrets", "unbounded_test_foreach_internal", "exit_hook", "checkpoint", "model", "huggingface_hub",
)


class FlowSpec:
    """Stands in for Metaflow's ``FlowSpec`` in module code a task executes.

    A flowcell task runs the step bodies itself; the class exists so that the name
    imports and a ``FlowSpec`` subclass can be defined.
    """

    def __init__(self, use_cli: bool = True) -> None:
        if use_cli:
            raise FlowcellError("Run this flow with `flowcell run FLOW_FILE`, not by instantiating the class.")


class _Mutator:
    """Metaflow's ``FlowMutator``/``StepMutator``/``UserStepDecorator`` base classes (no local effect)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args, self._kwargs = args, kwargs


def _is_stringish(x: Any) -> bool:
    return isinstance(x, (str, bytes, bytearray))


def _to_unicode(x: Any) -> str:
    return x.decode("utf-8") if isinstance(x, (bytes, bytearray)) else str(x)


_CLIENT = ("Flow", "Run", "Step", "Task", "DataArtifact", "namespace", "get_namespace", "default_namespace",
           "inspect_spin")
_CARDS = ("get_cards", "Markdown", "Table", "Image", "Artifact", "ProgressBar", "VegaChart", "MetaflowCardComponent",
          "render_safely")
_CARD_TYPES = ("MetaflowCard", "DefaultCard", "BlankCard", "ErrorCard", "TaskSpecCard")


def _from_client(name: str) -> Any:
    if name not in _CLIENT:
        raise AttributeError(f"flowcell does not provide metaflow's {name!r} inside a task.")
    from . import client  # the Client loads only when a task uses it (start-up time)

    return getattr(client, name)


def _from_cards(name: str) -> Any:
    if name in _CARD_TYPES:
        from . import card_types  # loads only when a task uses cards (start-up time)

        return getattr(card_types, name)
    if name not in _CARDS:
        raise AttributeError(f"flowcell does not provide metaflow.cards' {name!r} inside a task.")
    from . import cards  # loads only when a task uses cards (start-up time)

    return getattr(cards, name)


def _from_test_cards(name: str) -> Any:
    from . import _metaflow_test_cards  # Metaflow's test card types, only when a flow imports them

    try:
        return getattr(_metaflow_test_cards, name)
    except AttributeError:
        raise AttributeError(f"flowcell does not provide Metaflow's test card {name!r}.") from None


def _from_top(name: str) -> Any:
    if name == "Runner":
        from .runner import Runner  # heavy; only when a task starts a run of its own

        return Runner
    if name == "get_cards":
        return _from_cards(name)
    return _from_client(name)


def _build(name: str) -> types.ModuleType:
    """The module that stands for ``name`` (a member of :data:`MODULES`)."""
    mod = types.ModuleType(name)
    mod.__path__ = []  # a package: its submodules come from this finder only
    attrs: dict[str, Any] = {}
    if name == "metaflow":
        attrs.update({d: _passthrough(d) for d in _DECORATORS})
        attrs.update(
            current=current, Parameter=Parameter, IncludeFile=IncludeFile, Config=Config, JSONType=JSONType,
            FlowSpec=FlowSpec, config_expr=config_expr, FlowMutator=_Mutator, StepMutator=_Mutator,
            UserStepDecorator=_Mutator, user_step_decorator=_passthrough("user_step_decorator"),
            MetaflowException=MetaflowException, __getattr__=_from_top,
        )
    elif name == "metaflow.plugins":
        attrs["InternalTestUnboundedForeachInput"] = InternalTestUnboundedForeachInput
    elif name == "metaflow.client":
        attrs["__getattr__"] = _from_client
    elif name == "metaflow.exception":
        attrs.update(
            MetaflowException=MetaflowException, MetaflowNamespaceMismatch=errors.NamespaceMismatch,
            MetaflowNotFound=errors.NotFoundError, MetaflowInternalError=FlowcellError,
            ExternalCommandFailed=ExternalCommandFailed, MetaflowExceptionWrapper=MetaflowExceptionWrapper,
            MissingInMergeArtifactsException=MissingInMergeArtifactsException,
            UnhandledInMergeArtifactsException=UnhandledInMergeArtifactsException,
        )
    elif name in ("metaflow.cards", "metaflow.plugins.cards.card_modules", "metaflow.plugins.cards.card_modules.card",
                  "metaflow.plugins.cards.card_modules.basic", "metaflow.plugins.cards.card_modules.components",
                  "metaflow.plugins.cards.card_modules.renderer_tools"):
        attrs["__getattr__"] = _from_cards
    elif name == "metaflow.plugins.cards.card_modules.test_cards":
        attrs["__getattr__"] = _from_test_cards
    elif name == "metaflow.plugins.cards.exception":
        attrs["CardNotPresentException"] = CardNotPresentException
    elif name == "metaflow.util":
        attrs.update(is_stringish=_is_stringish, to_unicode=_to_unicode)
    elif name == "metaflow.metaflow_current":
        attrs.update(current=current, Current=type(current))
    elif name == "metaflow.user_configs.config_parameters":
        attrs.update(ConfigValue=ConfigValue, config_expr=config_expr, Config=Config)
    elif name == "metaflow.parameters":
        attrs.update(Parameter=Parameter, JSONType=JSONType)
    elif name == "metaflow.includefile":
        attrs.update(IncludeFile=IncludeFile, IncludedFile=_IncludedFile)
    mod.__dict__.update(attrs)
    return mod


class InternalTestUnboundedForeachInput:
    """Metaflow's test input for an unbounded foreach: the items of an iterable, by index."""

    def __init__(self, iterable: Any) -> None:
        self.iterable = list(iterable)

    def __iter__(self) -> Any:
        return iter(self.iterable)

    def __getitem__(self, key: int) -> Any:
        return self.iterable[key] if key is not None and 0 <= key < len(self.iterable) else None

    def __len__(self) -> int:
        return len(self.iterable)

    def __repr__(self) -> str:
        return f"InternalTestUnboundedForeachInput({self.iterable!r})"


class _IncludedFile:
    """Metaflow wraps an included file's content in this; flowcell gives the content itself."""


#: The ``metaflow`` modules a flowcell task provides.
MODULES = frozenset({
    "metaflow", "metaflow.client", "metaflow.exception", "metaflow.cards", "metaflow.plugins",
    "metaflow.plugins.cards", "metaflow.plugins.cards.exception", "metaflow.util", "metaflow.metaflow_current",
    "metaflow.plugins.cards.card_modules", "metaflow.plugins.cards.card_modules.card",
    "metaflow.plugins.cards.card_modules.basic", "metaflow.plugins.cards.card_modules.components",
    "metaflow.plugins.cards.card_modules.renderer_tools", "metaflow.plugins.cards.card_modules.test_cards",
    "metaflow.parameters", "metaflow.includefile", "metaflow.user_configs",
    "metaflow.user_configs.config_parameters",
})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves :data:`MODULES`; other ``metaflow.*`` names are not found."""

    def find_spec(self, fullname: str, path: Sequence[str] | None = None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if fullname in MODULES:
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        return _build(spec.name)

    def exec_module(self, module: types.ModuleType) -> None:
        return None


_finder = _Finder()


def install() -> None:
    """Make ``metaflow`` (and the submodules flows use) resolve to flowcell in this process."""
    if sys.meta_path and sys.meta_path[0] is _finder:
        return
    if _finder in sys.meta_path:
        sys.meta_path.remove(_finder)
    sys.meta_path.insert(0, _finder)
    for name in [n for n in sys.modules if n == "metaflow" or n.startswith("metaflow.")]:
        if getattr(getattr(sys.modules[name], "__spec__", None), "loader", None) is not _finder:
            del sys.modules[name]  # a real Metaflow imported earlier would shadow flowcell's


def task_namespace(file: str | None) -> dict[str, Any]:
    """A fresh module namespace for a flow's code, as flowcell runs it.

    A flow file's ``from metaflow import FlowSpec, step, retry`` loses the names a
    notebook does not need when flowcell reads it; the class body (constants, helper
    methods, decorated steps) still uses them, so they are there from the start.
    """
    import builtins

    install()
    import metaflow  # this finder's module

    namespace: dict[str, Any] = {"__name__": "__main__", "__file__": file, "__builtins__": builtins}
    for name in ("FlowSpec", "step", *_DECORATORS):
        namespace[name] = getattr(metaflow, name)
    return namespace


#: ``current.parallel`` (Metaflow's namedtuple of the same fields).
_Parallel = namedtuple("_Parallel", ["main_ip", "num_nodes", "node_index", "control_task_id"])


def parallel_info(foreach_stack: list[dict[str, Any]]) -> Any:
    """``current.parallel`` in a @parallel step (run locally as a foreach over node indices)."""
    if not foreach_stack or foreach_stack[-1].get("var") != "_parallel_ubf_iter":
        return None
    frame = foreach_stack[-1]
    return _Parallel("127.0.0.1", frame["num_splits"], frame["index"], None)
