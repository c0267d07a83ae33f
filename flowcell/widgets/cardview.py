"""A card in the notebook: its self-contained HTML in a frame sized to its content."""

from __future__ import annotations

import html
from typing import Any

import traitlets

from ._base import FlowcellWidget


class CardView(FlowcellWidget):
    """One card (``get_cards(task)[i]``): the frame grows and shrinks with the card, live updates included."""

    html = traitlets.Unicode("").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)

    def __init__(self, card: Any) -> None:
        self.card = card
        super().__init__(kind="card", html=card.html, title=f"{card.type} card of {card.pathspec}")

    def update(self, card: Any) -> None:
        """Show a newer version of the card (``current.card.refresh()`` while the task runs)."""
        self.card, self.html = card, card.html

    def fallback_html(self) -> str:
        # Without a widget front end the frame cannot measure its content: a height
        # estimated from the card's length, scrollable beyond it.
        lines = self.html.count("<tr") + self.html.count("<p") + self.html.count("<h") + 4 * self.html.count("<img")
        height = max(160, min(900, 60 + 28 * lines))
        return (f"<iframe srcdoc=\"{html.escape(self.html, quote=True)}\" title=\"{html.escape(self.title)}\" "
                f"style='width:100%;height:{height}px;border:1px solid #d0d7de;border-radius:6px'></iframe>")

    def fallback_text(self) -> str:
        return f"<{self.title}>"
