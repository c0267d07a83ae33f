"""Making a step's cards at the end of its task, in the child kernel, as Metaflow's card creator does.

For each ``@card`` of the step: its components are rendered (a component that fails or
renders to something that is neither a str nor a JSON-able dict is left out), the card
type is made with ``options`` and those renders, and ``render(task)`` runs under the
card's ``timeout`` (45 s by default).  A card that cannot be made (unknown type, a
constructor that rejects the options, a render that raises, returns nothing or runs
out of time) becomes Metaflow's error card, or no card with ``save_errors=False``.
The step itself never fails because of a card.
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable
from typing import Any

from . import _metaflow_test_cards  # noqa: F401  # Metaflow's test card types are card types in every task
from ._alarm import time_limit
from .card_collector import CardCollector
from .card_types import ErrorCard, card_class
from .cards import MISSING, MetaflowCardComponent
from .protocol import CardSpec

DEFAULT_TIMEOUT = 45.0


class _ArtifactView:
    def __init__(self, task: RenderedTask, name: str) -> None:
        self._task, self.id = task, name

    @property
    def data(self) -> Any:
        return self._task._value(self.id)


class RenderedTask:
    """The task a card type renders: ``pathspec``, ``task[name].data``, ``task.data.name``,
    and the artifact rows of the default card.  The task is not committed yet when its
    cards are made, so this reads the task's own outputs instead of the Client."""

    finished = True
    successful = True

    def __init__(self, pathspec: str, refs: dict[str, dict[str, Any]] | None, values: dict[str, Any],
                 load: Callable[[dict[str, Any]], Any]) -> None:
        self.pathspec = pathspec
        self.id = pathspec.rsplit("/", 1)[-1]
        self._refs, self._values, self._load = refs or {}, values, load
        #: (name, type, size, value or MISSING), or None while the task still runs (a live refresh)
        self.artifact_rows = None if refs is None else [
            (name, ref.get("type", ""), int(ref.get("size", 0)), values.get(name, MISSING))
            for name, ref in sorted(refs.items())]

    def _value(self, name: str) -> Any:
        if name in self._values:
            return self._values[name]
        if name in self._refs:
            return self._load(self._refs[name])
        raise KeyError(f"Task {self.pathspec} has no artifact {name!r}.")

    def __getitem__(self, name: str) -> _ArtifactView:
        self._value(name)
        return _ArtifactView(self, name)

    def __contains__(self, name: object) -> bool:
        return name in self._values or name in self._refs

    @property
    def data(self) -> Any:
        task = self

        class _Data:
            def __getattr__(self, name: str) -> Any:
                try:
                    return task._value(name)
                except KeyError as exc:
                    raise AttributeError(str(exc)) from None

        return _Data()


class _CardTimeout(Exception):
    pass


def _rendered(components: list[MetaflowCardComponent]) -> list[Any]:
    out = []
    for c in components:
        try:
            r = c.render()
            if isinstance(r, dict):
                json.dumps(r)
            elif not isinstance(r, str):
                continue
        except Exception:  # a component that cannot render is left out, as Metaflow does
            continue
        out.append(r)
    return out


def _one(spec: CardSpec, components: list[MetaflowCardComponent], task: RenderedTask,
         options: dict[str, Any] | None) -> str | None:
    cls = card_class(spec.type)
    if cls is None:
        trace = f"Card of type {spec.type!r} does not exist."
    else:
        try:
            kwargs: dict[str, Any] = {"components": _rendered(components), "graph": None, "flow": None}
            if options is not None:
                kwargs["options"] = options
            card = cls(**kwargs)
        except TypeError:
            trace = f"Card of type {spec.type!r} does not take the options {options!r}."
        else:
            try:
                with time_limit(spec.timeout if spec.timeout is not None else DEFAULT_TIMEOUT, _CardTimeout):
                    out = card.render(task)
            except _CardTimeout:
                trace = (f"Card rendering timed out after {spec.timeout} seconds. To increase the timeout "
                         "duration for card rendering, set the `timeout` parameter in the @card decorator.")
            except Exception:
                trace = traceback.format_exc()
            else:
                if out is not None and not isinstance(out, NotImplementedError):
                    return str(out)
                trace = f"No information rendered from card of type {spec.type}"
    if not spec.save_errors:
        return None
    return ErrorCard().render(task, stack_trace=trace)


def render_cards(specs: list[CardSpec], collector: CardCollector, task: RenderedTask,
                 options: Callable[[CardSpec], dict[str, Any] | None]) -> list[dict[str, Any]]:
    """``[{"type", "id", "html"}]`` for the step's cards (a card that could not be made and
    has ``save_errors=False`` is left out)."""
    collector._finalize()
    out = []
    for spec, card in zip(specs, collector.cards):
        html = _one(spec, list(card.components), task, options(spec))
        if html is not None:
            out.append({"type": spec.type, "id": card.spec.get("id"), "html": html})
    return out
