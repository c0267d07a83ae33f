"""The card types and components Metaflow ships for testing cards.

Metaflow registers these with its built-in card types, so a flow (and Metaflow's own
core test suite) can name them in ``@card(type=...)`` and import them from
``metaflow.plugins.cards.card_modules.test_cards``.  Same names and behaviour, written
on flowcell's ``MetaflowCard``; a flowcell task serves this module under that name.
"""

from __future__ import annotations

import random
import string
import time
from typing import Any

from .card_types import MetaflowCard
from .cards import MetaflowCardComponent, render_safely

_SEPARATOR = "$&#!!@*"


class TestStringComponent(MetaflowCardComponent):
    """A component that renders to its text."""

    REALTIME_UPDATABLE = True

    def __init__(self, text: str) -> None:
        self._text = text

    def render(self) -> str:
        return str(self._text)

    def update(self, text: str) -> None:
        self._text = text


class TestJSONComponent(MetaflowCardComponent):
    """A component that renders to the JSON-able data it holds."""

    REALTIME_UPDATABLE = True

    def __init__(self, data: Any) -> None:
        self._data = data

    @render_safely
    def render(self) -> Any:
        return self._data

    def update(self, data: Any) -> None:
        self._data = data


class TestPathSpecCard(MetaflowCard):
    """The task's pathspec and a random suffix (two renders never match)."""

    type = "test_pathspec_card"

    def render(self, task: Any) -> str:
        suffix = "".join(random.choice(string.ascii_uppercase + string.digits) for _ in range(6))
        return f"{task.pathspec} {suffix}"


class _JoinedCard(MetaflowCard):
    def __init__(self, components: list[Any] | None = None, **kwargs: Any) -> None:
        self._components = list(components or [])

    def render(self, task: Any) -> str:
        return _SEPARATOR.join(str(c) for c in self._components)


class TestEditableCard(_JoinedCard):
    """Its appended components' renders, joined by a separator."""

    type = "test_editable_card"
    separator = _SEPARATOR
    ALLOW_USER_COMPONENTS = True


class TestEditableCard2(_JoinedCard):
    type = "test_editable_card_2"
    separator = _SEPARATOR
    ALLOW_USER_COMPONENTS = True


class TestNonEditableCard(_JoinedCard):
    """Like ``test_editable_card``, but ``current.card.append`` does not reach it."""

    type = "test_non_editable_card"
    separator = _SEPARATOR


class TestMockCard(MetaflowCard):
    """The value of the artifact named by ``options["key"]``."""

    type = "test_mock_card"

    def __init__(self, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._key = (options or {"key": "dummy_key"})["key"]

    def render(self, task: Any) -> str:
        return f"{task[self._key].data}"


class TestErrorCard(MetaflowCard):
    """A card whose render always raises."""

    type = "test_error_card"

    def render(self, task: Any) -> str:
        raise Exception("Unknown Things Happened")


class TestTimeoutCard(MetaflowCard):
    """Sleeps ``options["timeout"]`` seconds before it renders (for @card's timeout)."""

    type = "test_timeout_card"

    def __init__(self, options: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self._timeout = (options if options is not None else {"timeout": 50}).get("timeout", 10)

    def render(self, task: Any) -> str:
        time.sleep(self._timeout)
        return f"{task.pathspec}"
