"""Card types: Metaflow's ``MetaflowCard`` and the types a ``@card(type=...)`` can name.

A *card type* is a ``MetaflowCard`` subclass with a ``type`` string.  After a ``@card``
step's body ran, the card's components are rendered (each ``render()`` gives an HTML
fragment or a JSON-able dict), the card class is made with
``(options=..., components=[rendered, ...], graph=..., flow=...)`` and its
``render(task)`` gives the card's HTML, exactly the contract Metaflow's card
creator follows.  ``ALLOW_USER_COMPONENTS`` decides whether ``current.card.append``
may reach the card.

Built in, as in Metaflow: ``default`` (the components and the task's artifacts),
``blank`` (the components only), ``taskspec_card`` (the task's pathspec), ``error``
(what a card that failed to render shows), and Metaflow's own test types
(``test_pathspec_card``, ``test_editable_card``, ... in :mod:`flowcell._metaflow_test_cards`).
A ``MetaflowCard`` subclass defined in a flow's module code is a card type too.
"""

from __future__ import annotations

import html
import json
from typing import Any

from .cards import page


class MetaflowCard:
    """Base of every card type (Metaflow's class of the same name and attributes)."""

    RELOAD_POLICY_NEVER = "never"
    RELOAD_POLICY_ALWAYS = "always"
    RELOAD_POLICY_ONCHANGE = "onchange"
    RELOAD_POLICY_TOKEN = "[METAFLOW_RELOAD_TOKEN]"

    type: str | None = None
    ALLOW_USER_COMPONENTS = False
    RUNTIME_UPDATABLE = False
    RELOAD_POLICY = RELOAD_POLICY_NEVER
    scope = "task"
    runtime_data: Any = None

    def __init__(self, options: dict[str, Any] | None = None, components: list[Any] | None = None,
                 graph: Any = None, flow: Any = None, **kwargs: Any) -> None:
        pass

    def render(self, task: Any) -> str:
        """The card's HTML for a finished ``task``."""
        raise NotImplementedError

    def render_runtime(self, task: Any, data: Any) -> str:
        raise NotImplementedError

    def refresh(self, task: Any, data: Any) -> Any:
        raise NotImplementedError

    def reload_content_token(self, task: Any, data: Any) -> str:
        return "content-token"


def fragment(rendered: Any) -> str:
    """One rendered component as HTML: a fragment as it is, a dict (Metaflow's JSON form) as JSON."""
    if isinstance(rendered, str):
        return rendered
    return f"<pre>{html.escape(json.dumps(rendered, indent=1, default=str))}</pre>"


class BlankCard(MetaflowCard):
    """``blank``: only what the step appended."""

    type = "blank"
    ALLOW_USER_COMPONENTS = True
    RUNTIME_UPDATABLE = True

    def __init__(self, options: dict[str, Any] | None = None, components: list[Any] | None = None,
                 graph: Any = None, flow: Any = None, **kwargs: Any) -> None:
        self._components = list(components or [])
        self._title = (options or {}).get("title") or ""

    def _body(self, task: Any) -> str:
        return "".join(fragment(c) for c in self._components)

    def render(self, task: Any) -> str:
        return page(self._title or task.pathspec, self._body(task))


class DefaultCard(BlankCard):
    """``default``: the appended components, then a table of the task's artifacts."""

    type = "default"

    def _body(self, task: Any) -> str:
        from .cards import artifacts_table  # preview code loads only for a default card (start-up time)

        rows = getattr(task, "artifact_rows", None)  # None while the task still runs (a live refresh)
        return super()._body(task) + ("" if rows is None else artifacts_table(rows))


class TaskSpecCard(MetaflowCard):
    """``taskspec_card``: the task's pathspec, as text."""

    type = "taskspec_card"

    def render(self, task: Any) -> str:
        return str(task.pathspec)


class ErrorCard(MetaflowCard):
    """``error``: what a card shows when its own type failed to render."""

    type = "error"

    def __init__(self, options: dict[str, Any] | None = None, components: list[Any] | None = None,
                 graph: Any = None, flow: Any = None, **kwargs: Any) -> None:
        pass

    def render(self, task: Any, stack_trace: str | None = None) -> str:
        return page("Error Card", "<h3>Card Render Failed With Error</h3>"
                                  f"<pre>{html.escape(stack_trace or 'None')}</pre>")


_BUILT_IN: tuple[type[MetaflowCard], ...] = (DefaultCard, TaskSpecCard, ErrorCard, BlankCard)


def _subclasses(cls: type[MetaflowCard]) -> list[type[MetaflowCard]]:
    out = []
    for sub in cls.__subclasses__():
        out.append(sub)
        out.extend(_subclasses(sub))
    return out


def card_class(card_type: str | None) -> type[MetaflowCard] | None:
    """The card type named ``card_type``: a built-in one first, else any ``MetaflowCard``
    subclass defined so far: a flow's module code may define its own, and the task driver
    imports :mod:`flowcell._metaflow_test_cards` (Metaflow's test types) before it makes cards."""
    for cls in (*_BUILT_IN, *_subclasses(MetaflowCard)):
        if cls.type == card_type:
            return cls
    return None
