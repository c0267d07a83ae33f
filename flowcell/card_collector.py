"""``current.card`` inside a task: which ``@card`` a component goes to, with Metaflow's rules.

* ``current.card.append``/``extend``/``clear``/``components``/``refresh`` reach the
  step's *default editable* card: among the cards whose type allows user components
  (``ALLOW_USER_COMPONENTS``), the only one; else the only one without an ``id``;
  else the one with ``customize=True``.  Without one, the call is ignored with a
  warning (user code never fails because of a card).
* ``current.card[ID]`` reaches the card with that ``id`` (editable or not); an unknown
  id gives an empty list, with a warning.  ``current.card[ID] = [...]`` replaces its
  components; ``current.card.get(type=T)`` lists the cards of a type.
* Anything appended that is not a ``MetaflowCardComponent`` is left out, with a warning.
* Warnings go to the task's stderr as ``[@card WARNING] ...`` and into the step's cards,
  unless ``METAFLOW_CARD_NO_WARNING`` is set, as in Metaflow.
"""

from __future__ import annotations

import html
import os
import re
import sys
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .card_types import card_class
from .cards import MetaflowCardComponent

#: Metaflow's pattern for a card id (others are treated as no id).
CARD_ID_PATTERN = re.compile(r"^[a-zA-Z0-9_]+$")


def warn(message: str) -> None:
    print(f"[@card WARNING] {message}", file=sys.stderr)


class WarningComponent(MetaflowCardComponent):
    """A warning shown in the card itself."""

    def __init__(self, message: str) -> None:
        self.message = message

    def render(self) -> str:
        return f"<div class='fc-section'><b>@card WARNING</b><pre>{html.escape(self.message)}</pre></div>"


class ComponentStore:
    """One card's components, in order; by ``component_id`` like a dict."""

    def __init__(self, components: Iterable[Any] = ()) -> None:
        self._map: dict[str, MetaflowCardComponent] = {}
        self._count = 0
        for c in components:
            self.append(c)

    def append(self, component: Any, id: str | None = None) -> None:
        if not isinstance(component, MetaflowCardComponent):
            warn(f"Component ({component}) is not a valid MetaflowCardComponent. It will not be stored.")
            return
        if id is not None:
            component.component_id = id
        elif component.component_id is None:
            self._count += 1
            component.component_id = f"{type(component).__name__.lower()}_{self._count}"
        self._map[str(component.component_id)] = component

    def extend(self, components: Iterable[Any]) -> None:
        for c in components:
            self.append(c)

    def clear(self) -> None:
        self._map.clear()

    def keys(self) -> list[str]:
        return list(self._map)

    def values(self) -> list[MetaflowCardComponent]:
        return list(self._map.values())

    def __getitem__(self, key: str) -> MetaflowCardComponent:
        return self._map[key]

    def __setitem__(self, key: str, value: Any) -> None:
        if key in self._map:
            raise KeyError(f"Component {key!r} is already in the card; assign the card's whole list instead, "
                           f"current.card[ID] = [...].")
        self.append(value, id=key)

    def __delitem__(self, key: str) -> None:
        del self._map[key]

    def __contains__(self, key: object) -> bool:
        return key in self._map

    def __iter__(self) -> Iterator[MetaflowCardComponent]:
        return iter(list(self._map.values()))

    def __len__(self) -> int:
        return len(self._map)


class CardComponents:
    """One ``@card`` of the step (Metaflow's ``CardComponentManager``)."""

    def __init__(self, spec: dict[str, Any], refresh: Callable[[], None] | None = None) -> None:
        self.spec = spec
        self.components = ComponentStore()
        self._refresh = refresh

    def append(self, component: Any, id: str | None = None) -> None:
        self.components.append(component, id=id)

    def extend(self, components: Iterable[Any]) -> None:
        self.components.extend(components)

    def clear(self) -> None:
        self.components.clear()

    def refresh(self, data: Any = None, force: bool = False) -> None:
        """Send the step's cards as they are now to the cell that runs the task (live ProgressBar)."""
        if self._refresh is not None:
            self._refresh()

    def __iter__(self) -> Iterator[MetaflowCardComponent]:
        return iter(self.components)

    def __len__(self) -> int:
        return len(self.components)


class CardCollector:
    """``current.card``: the step's ``@card``s (dicts of ``type``, ``id``, ``customize``)."""

    def __init__(self, decorators: list[dict[str, Any]], publish: Callable[[CardCollector], None] | None = None
                 ) -> None:
        self._publish = publish
        self.cards = [CardComponents(dict(d), self._refresh_all) for d in decorators]
        self._default: CardComponents | None = None
        self._by_id: dict[str, CardComponents] = {}
        self._finalized = False
        self._warned: set[str] = set()

    def _refresh_all(self) -> None:
        if self._publish is not None:
            self._publish(self)

    def _finalize(self) -> None:
        """Resolve the default editable card and the ids, once the flow's module code (which may
        define card types) ran."""
        if self._finalized:
            return
        self._finalized = True
        editable = []
        ids: dict[str, list[CardComponents]] = {}
        for card in self.cards:
            cls = card_class(card.spec.get("type"))
            card.spec["exists"] = cls is not None
            card_id = card.spec.get("id")
            if card_id is not None and not CARD_ID_PATTERN.match(str(card_id)):
                warn(f"@card with id '{card_id}' doesn't match the pattern {CARD_ID_PATTERN.pattern}; "
                     f"current.card['{card_id}'] will not reach it.")
                card.spec["id"] = card_id = None
            if card_id is not None:
                ids.setdefault(card_id, []).append(card)
            if cls is not None and cls.ALLOW_USER_COMPONENTS:
                editable.append(card)
        self._by_id = {k: v[0] for k, v in ids.items() if len(v) == 1}
        for dup in (k for k, v in ids.items() if len(v) > 1):
            self._warn(f"Multiple @card decorators have the id {dup}: current.card['{dup}'] will not work.")
        if len(editable) == 1:
            self._default = editable[0]
            return
        no_id = [c for c in editable if c.spec.get("id") is None]
        if len(no_id) == 1:
            self._default = no_id[0]
        customized = [c for c in editable if str(c.spec.get("customize")) == "True"]
        if len(customized) > 1:
            self._warn("Multiple @card decorators have customize=True; current.card.append ignores them all.")
        elif len(customized) == 1:
            self._default = customized[0]

    def _warn(self, message: str, once: str | None = None) -> None:
        if once is not None:
            if once in self._warned:
                return
            self._warned.add(once)
        warn(message)
        if not os.environ.get("METAFLOW_CARD_NO_WARNING"):
            for card in self.cards:
                card.components.append(WarningComponent(message))

    def _editable(self, what: str) -> CardComponents | None:
        self._finalize()
        if self._default is None:
            if len(self.cards) == 1:
                kind = self.cards[0].spec.get("type")
                problem = (f"Card of type `{kind}` is not an editable card." if self.cards[0].spec.get("exists")
                           else f"Card of type `{kind}` doesn't exist.")
            else:
                problem = f"`current.card.{what}` cannot disambiguate between multiple editable cards."
            self._warn(f"{problem} `current.card.{what}` is ignored in this task; give each @card an id and use "
                       f"current.card[ID].{what}.", once=what)
        return self._default

    def __getitem__(self, card_id: str) -> Any:
        self._finalize()
        if card_id in self._by_id:
            return self._by_id[card_id]
        self._warn(f"`current.card['{card_id}']` is not present: set id='{card_id}' on a @card to use it. "
                   "It returns an empty list not tied to any card.", once=f"getitem:{card_id}")
        return []

    def __setitem__(self, card_id: str, components: list[Any]) -> None:
        self._finalize()
        if card_id not in self._by_id:
            self._warn(f"`current.card['{card_id}']` is not present: set id='{card_id}' on a @card to use it.")
            return
        if not isinstance(components, list):
            self._warn(f"`current.card['{card_id}']` not set: assign a list of MetaflowCardComponents.")
            return
        card = self._by_id[card_id]
        card.components = ComponentStore(components)

    def get(self, type: str | None = None) -> list[CardComponents]:
        """The cards of this step whose type is ``type``."""
        return [c for c in self.cards if c.spec.get("type") == type]

    def append(self, component: Any, id: str | None = None) -> None:
        card = self._editable("append")
        if card is not None:
            card.append(component, id=id)

    def extend(self, components: Iterable[Any]) -> None:
        card = self._editable("extend")
        if card is not None:
            card.extend(components)

    def clear(self) -> None:
        self._finalize()
        if self._default is not None:
            self._default.clear()

    @property
    def components(self) -> ComponentStore | None:
        card = self._editable("components")
        return None if card is None else card.components

    def refresh(self, *args: Any, **kwargs: Any) -> None:
        """Send the step's cards as they are now to the cell that runs the task (live ProgressBar)."""
        self._refresh_all()
