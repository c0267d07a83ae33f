"""The ``self`` a step body sees inside its child kernel.

Artifacts from the input task are hydrated lazily: an attribute is read from the
store only when the step touches it, and an artifact the step never touched is
passed on to the next step as a reference (no bytes read or written).
"""

from __future__ import annotations

import inspect
from collections import namedtuple
from collections.abc import Callable, Iterator
from typing import Any

from ._exception_value import MetaflowException
from .errors import FlowcellError, MergeArtifactsError

#: Names of FlowSpec's API; a step may not overwrite them.
RESERVED = frozenset(
    {"next", "input", "index", "foreach_stack", "merge_artifacts", "name", "cmd", "script_name",
     "_current_step", "_foreach_stack", "_flow_name"}
)

Loader = Callable[[dict[str, Any]], Any]


class StepRef:
    """What ``self.<step_name>`` evaluates to: a target for ``self.next``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<step {self.name}>"


class UnhandledInMergeArtifactsException(MergeArtifactsError, MetaflowException):
    """Metaflow's name for a conflict ``merge_artifacts`` cannot resolve (``.artifact_names``)."""

    headline = "Unhandled artifacts in merge"

    def __init__(self, msg: str, unhandled: list[str]) -> None:
        MetaflowException.__init__(self, msg)
        self.artifact_names = unhandled


class MissingInMergeArtifactsException(FlowcellError, MetaflowException):
    """Metaflow's name for ``merge_artifacts(include=...)`` naming artifacts no input has."""

    headline = "Missing artifacts in merge"

    def __init__(self, msg: str, unhandled: list[str]) -> None:
        MetaflowException.__init__(self, msg)
        self.artifact_names = unhandled


class MergeArtifactsUsageError(FlowcellError, MetaflowException):
    """``merge_artifacts`` called where or how it cannot work (Metaflow raises its base exception)."""

    def __init__(self, msg: str) -> None:
        MetaflowException.__init__(self, msg)


#: One entry of Metaflow's ``self._foreach_stack`` (a namedtuple there too).
ForeachFrame = namedtuple("ForeachFrame", ["step", "var", "num_splits", "index", "value"])


class ArtifactView:
    """Read-only lazy view of one input task's artifacts (an element of ``inputs``)."""

    def __init__(self, step: str, pathspec: str, refs: dict[str, dict[str, Any]], loader: Loader,
                 foreach_frame: dict[str, Any] | None = None) -> None:
        object.__setattr__(self, "_fc_step", step)
        object.__setattr__(self, "_fc_pathspec", pathspec)
        object.__setattr__(self, "_fc_refs", refs)
        object.__setattr__(self, "_fc_loader", loader)
        object.__setattr__(self, "_fc_cache", {})
        object.__setattr__(self, "_fc_frame", foreach_frame)
        object.__setattr__(self, "_fc_peeked", set())  # names tested with `in` (reuse's read set)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_fc_"):
            raise AttributeError(name)
        cache = self._fc_cache
        if name in cache:
            return cache[name]
        if name == "input" and self._fc_frame is not None:
            return _foreach_value(self, self._fc_frame)
        ref = self._fc_refs.get(name)
        if ref is None:
            raise AttributeError(
                f"Input from step '{self._fc_step}' ({self._fc_pathspec}) has no artifact {name!r}."
            )
        value = cache[name] = self._fc_loader(ref)
        return value

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("The inputs of a join are read-only; set artifacts on self instead.")

    def __contains__(self, name: str) -> bool:
        self._fc_peeked.add(name)
        return name in self._fc_refs

    def __repr__(self) -> str:
        return f"<input {self._fc_pathspec}>"


def _foreach_value(source: Any, frame: dict[str, Any]) -> Any:
    loaded = getattr(source, "__dict__", {}).get("_fc_loaded")
    listed = loaded is not None and frame["var"] in loaded
    items = getattr(source, frame["var"])
    if loaded is not None and not listed and frame["var"] in loaded:
        # Reading an item is matched by the item's own digest (reuse), not by the whole list;
        # a later read of the list itself counts again (FlowInstance.__getattr__).
        loaded.discard(frame["var"])
        source.__dict__["_fc_item_only"].add(frame["var"])
    try:
        return items[frame["index"]]
    except TypeError:
        return list(items)[frame["index"]]


class Inputs:
    """``inputs`` of a join: indexable, iterable, and named after parent steps."""

    def __init__(self, views: list[ArtifactView]) -> None:
        self._views = views

    def __getitem__(self, index: int) -> ArtifactView:
        return self._views[index]

    def __iter__(self) -> Iterator[ArtifactView]:
        return iter(self._views)

    def __len__(self) -> int:
        return len(self._views)

    def __getattr__(self, name: str) -> ArtifactView:
        if name.startswith("_"):
            raise AttributeError(name)
        for view in self._views:
            if view._fc_step == name:
                return view
        steps = ", ".join(sorted({v._fc_step for v in self._views}))
        raise AttributeError(f"This join has no input from step {name!r}; its inputs come from: {steps}.")


class FlowInstance:
    """A flow object for one task: artifacts on ``self``, ``next``, ``input``...

    ``refs`` are the input artifacts (name -> stored reference); ``loader`` reads one.
    """

    def __init__(
        self,
        flow_name: str,
        step_names: set[str],
        refs: dict[str, dict[str, Any]],
        loader: Loader,
        foreach_stack: list[dict[str, Any]],
        step: str | None = None,
        script_name: str | None = None,
    ) -> None:
        d = self.__dict__
        d["_fc_step"] = step
        d["_fc_script_name"] = script_name
        d["_fc_flow_name"] = flow_name
        d["_fc_steps"] = step_names
        d["_fc_refs"] = dict(refs)
        d["_fc_loader"] = loader
        d["_fc_loaded"] = set()
        d["_fc_peeked"] = set()  # names tested with `in` or looked up and absent (reuse's read set)
        d["_fc_set"] = set()  # names assigned on self (reuse: what the task wrote)
        d["_fc_read_all"] = False  # merge_artifacts read every input
        d["_fc_item_only"] = set()  # foreach lists loaded only to give self.input
        d["_fc_deleted"] = set()
        d["_fc_stack"] = foreach_stack
        d["_fc_next"] = None
        d["_fc_values"] = {}

    # -- artifacts -----------------------------------------------------------------

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_fc_"):
            raise AttributeError(name)
        values = self._fc_values
        if name in values:
            if name in self._fc_item_only:  # the list itself is read now, not just its item
                self._fc_item_only.discard(name)
                self._fc_loaded.add(name)
            return values[name]
        ref = self._fc_refs.get(name)
        if ref is not None and name not in self._fc_deleted:
            value = values[name] = self._fc_loader(ref)
            self._fc_loaded.add(name)
            return value
        if name in self._fc_steps:
            return StepRef(name)
        member = _MEMBERS.get(name)
        if member is not None:
            return member(self)
        cls = self.__dict__.get("_fc_class")
        if isinstance(cls, type) and not name.startswith("__") and name in _class_attributes(cls):
            # A constant, helper method or property of a flow file's FlowSpec class.
            raw = inspect.getattr_static(cls, name)
            if isinstance(raw, (staticmethod, classmethod)) or not hasattr(raw, "__get__"):
                return getattr(cls, name)
            return raw.__get__(self, type(self))
        self._fc_peeked.add(name)
        raise AttributeError(
            f"Flow {self._fc_flow_name} has no artifact or step named {name!r} here; "
            "set it on self in this step or in a step before it."
        )

    def __setattr__(self, name: str, value: Any) -> None:
        if name in RESERVED:
            raise AttributeError(f"'{name}' is part of the flow's API and cannot be assigned; choose another name.")
        if name.startswith("_fc_"):
            raise AttributeError(f"Names starting with _fc_ are reserved by flowcell: {name!r}.")
        if name in self.__dict__.get("_fc_params", ()):
            raise AttributeError(f"{name!r} is a parameter of the flow; parameters cannot be assigned in a step.")
        cls = self.__dict__.get("_fc_class")
        if isinstance(cls, type) and name in _class_attributes(cls):
            raise AttributeError(f"{name!r} is an attribute of the flow's class (a constant); it cannot be assigned.")
        if name in self._fc_steps:
            raise AttributeError(
                f"{name!r} is the name of a step; an artifact cannot share it. Choose another name."
            )
        self._fc_values[name] = value
        self._fc_set.add(name)
        self._fc_deleted.discard(name)

    def __delattr__(self, name: str) -> None:
        if name in self._fc_values:
            del self._fc_values[name]
        elif name not in self._fc_refs or name in self._fc_deleted:
            raise AttributeError(f"No artifact {name!r} to delete.")
        if name in self._fc_refs:
            self._fc_deleted.add(name)

    def __contains__(self, name: str) -> bool:
        self._fc_peeked.add(name)
        return name in self._fc_values or (name in self._fc_refs and name not in self._fc_deleted)

    # -- FlowSpec API --------------------------------------------------------------

    def next(self, *targets: Any, foreach: str | None = None, condition: str | None = None,
             num_parallel: int | None = None) -> None:
        """Record the transition; it is checked against the graph after the body."""
        if num_parallel is not None:
            if not isinstance(num_parallel, int) or num_parallel < 1:
                raise FlowcellError(f"num_parallel must be a positive integer, not {num_parallel!r}.")
            # As Metaflow: the @parallel step runs as a foreach over its node indices.
            self._fc_values["_parallel_ubf_iter"] = list(range(num_parallel))
            foreach = "_parallel_ubf_iter"
        if self._fc_next is not None:
            raise FlowcellError("self.next() was called twice in one step; call it once, as the last statement.")
        names: list[str] = []
        cases: dict[str, str] = {}
        if len(targets) == 1 and isinstance(targets[0], dict):
            for key, target in targets[0].items():
                if not isinstance(target, StepRef):
                    raise FlowcellError(f"self.next() case {key!r} must map to a step such as self.a, not {target!r}.")
                cases[key] = target.name
                names.append(target.name)
        else:
            for target in targets:
                if not isinstance(target, StepRef):
                    raise FlowcellError(f"self.next() takes steps such as self.train, not {target!r}.")
                names.append(target.name)
        self.__dict__["_fc_next"] = {"steps": names, "foreach": foreach, "condition": condition, "cases": cases}

    @property
    def input(self) -> Any:
        if not self._fc_stack:
            raise AttributeError("self.input exists only in a step inside a foreach.")
        if "input" not in self._fc_values:
            self._fc_values["input"] = _foreach_value(self, self._fc_stack[-1])
        return self._fc_values["input"]

    @property
    def index(self) -> int | None:
        return self._fc_stack[-1]["index"] if self._fc_stack else None

    def foreach_stack(self) -> list[tuple[int, int | None, Any]]:
        """``(index, num_splits, value)`` for each enclosing foreach, outermost first."""
        out = []
        for frame in self._fc_stack:
            try:
                value = _foreach_value(self, frame)
            except Exception:
                value = None
            out.append((frame["index"], None if frame.get("unbounded") else frame["num_splits"], value))
        return out

    def merge_artifacts(
        self,
        inputs: Inputs,
        exclude: list[str] | None = None,
        include: list[str] | None = None,
    ) -> None:
        """Carry over artifacts that agree across all inputs (by content address)."""
        if not isinstance(inputs, Inputs):
            raise MergeArtifactsUsageError("merge_artifacts() works only in a join step, given the join's inputs.")
        if exclude and include:
            raise MergeArtifactsUsageError("merge_artifacts() takes include= or exclude=, not both.")
        exclude_set = set(exclude or [])
        self.__dict__["_fc_read_all"] = True
        candidates: dict[str, dict[str, Any]] = {}
        conflicts: set[str] = set()
        for view in inputs:
            for name, ref in view._fc_refs.items():
                if name in exclude_set or name in self._fc_values:
                    continue
                if include is not None and name not in include:
                    continue
                seen = candidates.get(name)
                if seen is None:
                    candidates[name] = ref
                elif seen.get("address") != ref.get("address"):
                    conflicts.add(name)
        missing = [n for n in include or [] if n not in candidates and n not in self._fc_values]
        if missing:
            raise MissingInMergeArtifactsException(
                f"merge_artifacts(include=...) names artifacts no input has: {', '.join(missing)}.", missing)
        if conflicts:
            raise UnhandledInMergeArtifactsException(
                "These artifacts have different values in the inputs of this join: "
                f"{', '.join(sorted(conflicts))}. Set them explicitly (self.<name> = ...) "
                "before calling merge_artifacts, or exclude them.", sorted(conflicts)
            )
        for name, ref in candidates.items():
            self._fc_refs[name] = ref
            self._fc_deleted.discard(name)

    def __repr__(self) -> str:
        return f"<flow {self._fc_flow_name}>"


def _class_attributes(cls: type) -> set[str]:
    """Names a flow class defines itself (not FlowSpec's or object's)."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__ in ("builtins", "flowcell._metaflow_shim"):
            continue
        names.update(klass.__dict__)
    return names


def add_class_constants(flow: FlowInstance) -> None:
    """Store the flow class's constants as artifacts, as Metaflow does, where not already passed on."""
    cls = flow.__dict__.get("_fc_class")
    if not isinstance(cls, type):
        return
    values, refs = flow._fc_values, flow._fc_refs
    for name in sorted(_class_attributes(cls)):
        if name.startswith("_") or name in values or name in refs:
            continue
        raw = inspect.getattr_static(cls, name)
        if callable(raw) or isinstance(raw, (property, staticmethod, classmethod)) or hasattr(raw, "kwargs"):
            continue  # methods, properties and Parameter objects are not constants
        values[name] = raw


def _foreach_frames(flow: FlowInstance) -> list[Any]:
    out = []
    for frame in flow._fc_stack:
        try:
            value = _foreach_value(flow, frame)
        except Exception:
            value = None
        out.append(ForeachFrame(frame.get("step", ""), frame["var"], frame["num_splits"], frame["index"], value))
    return out


#: FlowSpec's own members that flows and helpers read on ``self``, with Metaflow's meaning.
_MEMBERS: dict[str, Callable[[FlowInstance], Any]] = {
    "name": lambda f: f._fc_flow_name,
    "_flow_name": lambda f: f._fc_flow_name,
    "_current_step": lambda f: f.__dict__.get("_fc_step"),
    "_foreach_stack": _foreach_frames,
    "script_name": lambda f: f.__dict__.get("_fc_script_name"),
    "_graph": lambda f: _flow_graph(f.__dict__.get("_fc_file")),
}


def _flow_graph(path: str | None) -> Any:
    """``self._graph``: the flow's graph, read from its file when a step asks for it."""
    if not path:
        raise AttributeError("self._graph needs the flow's file; this task has none.")
    from .graph import build_graph  # read only when a step uses self._graph
    from .importer import read_flow_file
    from .model import read_notebook

    return build_graph(read_notebook(path) if path.endswith(".ipynb") else read_flow_file(path))
