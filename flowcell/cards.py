"""Cards: components a ``@card`` step appends to ``current.card``, rendered to HTML.

The names match ``metaflow.cards`` (the export rewrites ``flowcell.cards`` to it):
``Markdown``, ``Table`` (``from_dataframe``), ``Image`` (PNG bytes,
``from_matplotlib``), ``Artifact``, ``ProgressBar``, ``VegaChart``.  A card is one
self-contained HTML page: styles inline, images as data URIs, Vega-Lite charts
rendered to SVG when the card is made, so it displays with no network access.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

# The card's colours are variables: light by default, dark where the viewer prefers dark
# (a standalone card in a browser or attached to a pull request), and set to the
# notebook's own theme colours by the widgets' card frame in JupyterLab (it fills in the
# --fc-card-* variables on the card's root element; see labextension/widgets/runview.ts).
_STYLE = """
:root{color-scheme:light;--fc-card-bg:#fff;--fc-card-fg:#1f2328;--fc-card-muted:#57606a;--fc-card-border:#d0d7de;
--fc-card-subtle:#f6f8fa;--fc-card-track:#eaeef2;--fc-card-ok:#2da44e;--fc-card-link:#0969da}
@media (prefers-color-scheme:dark){:root{color-scheme:dark;--fc-card-bg:#0d1117;--fc-card-fg:#e6edf3;
--fc-card-muted:#9198a1;--fc-card-border:#3d444d;--fc-card-subtle:#151b23;--fc-card-track:#262c36;--fc-card-ok:#3fb950;
--fc-card-link:#4493f8}}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:16px;color:var(--fc-card-fg);
background:var(--fc-card-bg)}
a{color:var(--fc-card-link)}
.fc-card header{font-size:13px;color:var(--fc-card-muted);border-bottom:1px solid var(--fc-card-border);margin-bottom:12px;
padding-bottom:6px}
.fc-card table{border-collapse:collapse;margin:8px 0;font-size:13px}
.fc-card th,.fc-card td{border:1px solid var(--fc-card-border);padding:4px 8px;text-align:left;vertical-align:top}
.fc-card th{background:var(--fc-card-subtle)}
.fc-card pre,.fc-card code{background:var(--fc-card-subtle);border-radius:4px}
.fc-card pre{padding:8px;overflow:auto;font-size:12px;max-height:320px}
.fc-card code{padding:0 3px}
.fc-card pre code{padding:0}
.fc-card img{background:#fff}
.fc-progress{background:var(--fc-card-track);border-radius:4px;height:14px;width:320px;overflow:hidden;display:inline-block}
.fc-progress>div{background:var(--fc-card-ok);height:100%}
.fc-section{margin:10px 0}
"""


class MetaflowCardComponent:
    """Base of every component: ``render()`` returns an HTML fragment (or, as Metaflow's
    components do, a JSON-able dict).  ``current.card.append`` takes any subclass."""

    #: Metaflow's flag for components a runtime card may update while the task runs.
    REALTIME_UPDATABLE = False
    _component_id: str | None = None

    @property
    def component_id(self) -> str | None:
        return self._component_id

    @component_id.setter
    def component_id(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("Component ID must be a string")
        self._component_id = value

    def update(self, *args: Any, **kwargs: Any) -> None:
        raise NotImplementedError

    def render(self) -> Any:
        raise NotImplementedError


def render_safely(func: Any) -> Any:
    """Metaflow's decorator for ``render``: a failure (or a render that is not a str or a
    JSON-able dict) becomes an error fragment instead of breaking the card."""

    def render(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            out = func(self, *args, **kwargs)
            if not isinstance(out, (str, dict)):
                raise TypeError("Component render didn't return a `string` or `dict`")
            json.dumps(out)
            return out
        except Exception as exc:
            return (f"<div class='fc-section'><b>{html.escape(type(self).__name__)} failed to render:</b> "
                    f"<pre>{html.escape(f'{type(exc).__name__}: {exc}')}</pre></div>")

    return render


class Markdown(MetaflowCardComponent):
    def __init__(self, text: str = "") -> None:
        self.text = text

    def update(self, text: str) -> None:
        self.text = text

    def render(self) -> str:
        from markdown_it import MarkdownIt

        md = MarkdownIt("commonmark", {"html": False}).enable("table")
        return f"<div class='fc-section'>{md.render(self.text)}</div>"


class Table(MetaflowCardComponent):
    def __init__(self, data: list[list[Any]] | None = None, headers: list[str] | None = None) -> None:
        self.data = [list(row) for row in (data or [])]
        self.headers = list(headers or [])

    @classmethod
    def from_dataframe(cls, dataframe: Any, truncate: bool = True) -> Table:
        frame = dataframe.head(100) if truncate else dataframe
        return cls([[_cell(v) for v in row] for row in frame.itertuples(index=False)],
                   [str(c) for c in frame.columns])

    def render(self) -> str:
        head = "".join(f"<th>{html.escape(str(h))}</th>" for h in self.headers)
        rows = "".join("<tr>" + "".join(f"<td>{_cell_html(v)}</td>" for v in row) + "</tr>" for row in self.data)
        return f"<table>{'<tr>' + head + '</tr>' if head else ''}{rows}</table>"


def _cell(value: Any) -> Any:
    return value if isinstance(value, (int, float, str, MetaflowCardComponent)) else str(value)


def _cell_html(value: Any) -> str:
    if isinstance(value, MetaflowCardComponent):
        return str(value.render())
    return html.escape(str(value))


class Image(MetaflowCardComponent):
    def __init__(self, src: bytes | None = None, label: str | None = None) -> None:
        self.src = src or b""
        self.label = label

    @classmethod
    def from_matplotlib(cls, figure: Any, label: str | None = None) -> Image:
        buf = io.BytesIO()
        figure.savefig(buf, format="png", bbox_inches="tight")
        return cls(buf.getvalue(), label)

    @classmethod
    def from_pil_image(cls, image: Any, label: str | None = None) -> Image:
        buf = io.BytesIO()
        image.save(buf, format="PNG")
        return cls(buf.getvalue(), label)

    def render(self) -> str:
        data = base64.b64encode(self.src).decode()
        caption = f"<figcaption>{html.escape(self.label)}</figcaption>" if self.label else ""
        return f"<figure class='fc-section'><img src='data:image/png;base64,{data}' style='max-width:100%'/>{caption}</figure>"


class Artifact(MetaflowCardComponent):
    def __init__(self, artifact: Any, name: str | None = None, compressed: bool = True) -> None:
        self.artifact = artifact
        self.name = name

    def render(self) -> str:
        from .preview import preview_html

        title = f"<b>{html.escape(self.name)}</b> " if self.name else ""
        return f"<div class='fc-section'>{title}{preview_html(self.artifact)}</div>"


class ProgressBar(MetaflowCardComponent):
    def __init__(self, max: int = 100, label: str | None = None, value: int = 0, unit: str | None = None) -> None:
        self.max = max
        self.label = label
        self.value = value
        self.unit = unit

    def update(self, new_value: int) -> None:
        self.value = new_value

    def render(self) -> str:
        share = 0 if not self.max else min(100.0, 100.0 * self.value / self.max)
        label = html.escape(self.label or "")
        return (f"<div class='fc-section'>{label} <span class='fc-progress'><div style='width:{share:.1f}%'></div>"
                f"</span> {self.value}/{self.max}{' ' + html.escape(self.unit) if self.unit else ''}</div>")


class VegaChart(MetaflowCardComponent):
    """A Vega-Lite spec, rendered to inline SVG (``vl-convert``) when the card is made."""

    def __init__(self, spec: dict[str, Any], show_controls: bool = False) -> None:
        self.spec = spec

    @classmethod
    def from_altair_chart(cls, chart: Any) -> VegaChart:
        return cls(chart.to_dict())

    def update(self, spec: dict[str, Any]) -> None:
        self.spec = spec

    def render(self) -> str:
        try:
            import vl_convert
        except ImportError:
            return ("<div class='fc-section'><i>VegaChart needs the vl-convert-python package to render offline; "
                    f"the spec:</i><pre>{html.escape(json.dumps(self.spec, indent=1))}</pre></div>")
        return f"<div class='fc-section'>{vl_convert.vegalite_to_svg(self.spec)}</div>"


def page(title: str, body: str) -> str:
    """A complete, self-contained HTML document."""
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            # Tells the widgets' card frame that this card takes the notebook's theme colours
            # (a card of another kind keeps its own look on a white frame).
            "<meta name='color-scheme' content='light dark'><meta name='flowcell-card' content='themable'>"
            f"<style>{_STYLE}</style></head><body><div class='fc-card'><header>{html.escape(title)}</header>"
            f"{body}</div></body></html>")


def artifacts_table(artifacts: list[tuple[str, str, int, Any]]) -> str:
    """The default card's table of a task's artifacts: (name, type, size, value or MISSING)."""
    from .preview import preview_html

    rows = "".join(
        f"<tr><td><b>{html.escape(name)}</b></td><td>{html.escape(kind)}</td><td>{size:,} B</td>"
        f"<td>{preview_html(value, compact=True) if value is not _MISSING else '<i>passed through</i>'}</td></tr>"
        for name, kind, size, value in artifacts
    )
    return (f"<h3>Artifacts</h3><table><tr><th>name</th><th>type</th><th>size</th><th>value</th></tr>"
            f"{rows}</table>")


def render_card(card_type: str, card_id: str | None, title: str, components: list[MetaflowCardComponent],
                artifacts: list[tuple[str, str, int, Any]] | None) -> str:
    """HTML of a default (or blank) card made outside a task: ``flowcell card view`` of a step without one."""
    parts = [c.render() for c in components]
    if card_type == "default" and artifacts is not None:
        parts.append(artifacts_table(artifacts))
    return page(title + (f" ({card_id})" if card_id else ""), "".join(parts))


class _Missing:
    def __repr__(self) -> str:
        return "<not loaded>"


_MISSING = _Missing()
#: Stands for an artifact passed through by reference (not loaded), in the default card.
MISSING = _MISSING


def get_cards(task: Any, type: str | None = None, id: str | None = None) -> list[Any]:
    """The cards stored with a task (a ``Task`` or its pathspec); ``Task.cards`` filtered by type or id."""
    from .client import get_cards as client_get_cards  # the Client loads only when cards are read

    return client_get_cards(task, type=type, id=id)
