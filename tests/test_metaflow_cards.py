"""Metaflow's card semantics in a flowcell task (issue 13, cause 9): card types, which card
``current.card.append`` reaches, ids, options, render errors and timeouts.

The core suite's card tests run under ``tests/compat/``; this flow pins each rule.
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

from flowcell.cards import get_cards
from flowcell.client import Run
from flowcell.importer import read_flow_file
from flowcell.runtime.runs import start_run

FLOW = '''
from metaflow import FlowSpec, step, card, current, environment
from metaflow.cards import MetaflowCard
from metaflow.plugins.cards.card_modules.test_cards import TestStringComponent

WORD = "hello"


class WordCard(MetaflowCard):
    """A card type of the flow's own: an artifact and an option."""
    type = "word_card"

    def __init__(self, options={}, components=[], **kwargs):
        self.word = options.get("word")

    def render(self, task):
        return "%s %s" % (self.word, task["number"].data)


class CardFlow(FlowSpec):

    @card(type="test_editable_card", id="abc")
    @card(type="test_editable_card")
    @card(type="taskspec_card")
    @card(type="word_card", options=dict(word=WORD))
    @step
    def start(self):
        self.number = 7
        current.card.append("not a component")          # left out, with a warning
        current.card.append(TestStringComponent("7"))   # the only editable card without an id
        current.card["abc"].append(TestStringComponent("by id"))
        current.card["nope"].append(TestStringComponent("lost"))  # an empty list: no failure
        self.other_types = current.card.get(type="no_such_type")
        self.next(self.middle)

    @environment(vars={"METAFLOW_CARD_NO_WARNING": "True"})
    @card(type="test_non_editable_card", id="fixed")
    @card(type="test_error_card")
    @card(type="no_such_type")
    @step
    def middle(self):
        current.card.append(TestStringComponent("ignored"))  # no editable card here
        current.card["fixed"].append(TestStringComponent("reached by id"))
        self.next(self.end)

    @card(type="test_timeout_card", timeout=1, options={"timeout": 30}, save_errors=False)
    @card(type="test_timeout_card", id="slow", timeout=1, options={"timeout": 30})
    @step
    def end(self):
        self.done = True


if __name__ == "__main__":
    CardFlow()
'''


def _by(cards: list[Any]) -> dict[tuple[str, str | None], str]:
    return {(c.type, c.id): c.get() for c in cards}


def test_card_types_editable_cards_ids_errors_and_timeouts(runtime: Any, tmp_path: Path) -> None:
    path = tmp_path / "card_flow.py"
    path.write_text(textwrap.dedent(FLOW))
    result = start_run(runtime, read_flow_file(path), {})
    assert result.status == "completed", result.failures
    run = Run(result.pathspec, _check_namespace=False)
    start = run["start"].task
    cards = _by(get_cards(start))
    assert cards[("test_editable_card", None)].startswith("7"), "append reaches the one editable card without id"
    assert "@card WARNING" in cards[("test_editable_card", None)], "warnings are shown in the cards"
    assert cards[("test_editable_card", "abc")].startswith("by id")
    assert cards[("taskspec_card", None)] == start.pathspec
    assert cards[("word_card", None)] == "hello 7", "a card type from module code, options an expression"
    assert start.data.other_types == []
    assert "[@card WARNING] Component (not a component) is not a valid MetaflowCardComponent" in start.stderr

    middle = _by(get_cards(run["middle"].task))
    assert middle[("test_non_editable_card", "fixed")] == "reached by id", "no warnings with METAFLOW_CARD_NO_WARNING"
    assert "Unknown Things Happened" in middle[("test_error_card", None)], "a failed render is an error card"
    assert "no_such_type" in middle[("no_such_type", None)]

    end = run["end"].task
    assert end.data.done
    assert [(c.type, c.id) for c in get_cards(end)] == [("test_timeout_card", "slow")], \
        "a render past its timeout is an error card, or none with save_errors=False"
    assert "timed out after 1.0 seconds" in get_cards(end)[0].get()
