"""Short, safe previews of artifact values (HTML and text) for cards and widgets.

A preview never loads more than it shows: arrays are summarised from a sample of
at most ``SAMPLE`` elements (on a memory-mapped array only those pages are read),
DataFrames show their head, containers their first items.
"""

from __future__ import annotations

import base64
import html
import reprlib
from typing import Any

SAMPLE = 100_000
_repr = reprlib.Repr()
_repr.maxstring, _repr.maxother, _repr.maxlist, _repr.maxdict = 200, 200, 10, 10


def is_png(value: Any) -> bool:
    return isinstance(value, (bytes, bytearray)) and bytes(value[:8]) == b"\x89PNG\r\n\x1a\n"


def summary(value: Any) -> str:
    """One line describing ``value`` (type, shape, size)."""
    kind = type(value).__name__
    if hasattr(value, "shape") and hasattr(value, "dtype"):
        return f"{kind} shape={tuple(value.shape)} dtype={value.dtype}"
    if hasattr(value, "shape") and hasattr(value, "columns"):
        return f"{kind} shape={tuple(value.shape)}"
    if isinstance(value, (list, tuple, set, frozenset, dict)):
        return f"{kind} of {len(value)} item{'s' if len(value) != 1 else ''}"
    if isinstance(value, (str, bytes)):
        return f"{kind} of length {len(value)}"
    return kind


def _array_stats(value: Any) -> str:
    try:
        import numpy as np

        flat = value.reshape(-1)
        sample = flat[:SAMPLE]
        if sample.size == 0 or not np.issubdtype(sample.dtype, np.number):
            return ""
        note = "" if flat.size <= SAMPLE else f" (first {SAMPLE:,} of {flat.size:,})"
        return (f"min {sample.min():.4g}, max {sample.max():.4g}, mean {sample.mean():.4g}{note}")
    except Exception:
        return ""


def preview_text(value: Any) -> str:
    if hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "reshape"):
        stats = _array_stats(value)
        return summary(value) + (f"; {stats}" if stats else "")
    if hasattr(value, "head") and hasattr(value, "columns"):
        return summary(value) + "\n" + str(value.head(5))
    return _repr.repr(value)


def preview_html(value: Any, compact: bool = False) -> str:
    """HTML preview: DataFrame head, array stats, PNG image, text, nested containers."""
    if is_png(value):
        data = base64.b64encode(bytes(value)).decode()
        return f"<img src='data:image/png;base64,{data}' style='max-width:{160 if compact else 480}px'/>"
    if hasattr(value, "head") and hasattr(value, "columns") and hasattr(value, "to_html"):
        return (f"<div>{html.escape(summary(value))}</div>"
                + str(value.head(3 if compact else 10).to_html(border=0, max_cols=12)))
    if hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "reshape"):
        return f"<code>{html.escape(preview_text(value))}</code>"
    if isinstance(value, dict) and not compact:
        rows = "".join(f"<tr><td>{html.escape(_repr.repr(k))}</td><td>{html.escape(summary(v))}: "
                       f"{html.escape(_repr.repr(v))}</td></tr>" for k, v in list(value.items())[:20])
        more = f"<div>... {len(value) - 20} more</div>" if len(value) > 20 else ""
        return f"<div>{html.escape(summary(value))}</div><table>{rows}</table>{more}"
    if isinstance(value, str) and not compact and ("\n" in value or len(value) > 80):
        return f"<pre>{html.escape(value[:4000])}{'...' if len(value) > 4000 else ''}</pre>"
    return f"<code>{html.escape(_repr.repr(value))}</code>"


TEXT_LIMIT = 20_000
_long_repr = reprlib.Repr()
_long_repr.maxstring, _long_repr.maxother, _long_repr.maxlist, _long_repr.maxdict = 2000, 2000, 50, 50
_long_repr.maxlevel = 4


def _cell(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:79] + "…"


def preview_value(value: Any) -> dict[str, Any]:
    """A JSON preview of ``value`` for the widgets' front end (built as DOM there, never as HTML).

    ``kind`` is ``table`` (a DataFrame's head with dtypes and shape), ``array``
    (shape, dtype, summary statistics of a sample), ``image`` (a PNG as a data URI)
    or ``text`` (a string or a repr, at most ``TEXT_LIMIT`` characters).
    """
    out: dict[str, Any] = {"summary": summary(value)}
    if is_png(value):
        return {**out, "kind": "image", "src": "data:image/png;base64," + base64.b64encode(bytes(value)).decode()}
    if hasattr(value, "head") and hasattr(value, "columns") and hasattr(value, "dtypes"):
        head = value.iloc[:10, :20]
        return {**out, "kind": "table", "shape": list(value.shape),
                "columns": [_cell(c) for c in head.columns], "dtypes": [str(d) for d in head.dtypes],
                "index": [_cell(i) for i in head.index],
                "rows": [[_cell(v) for v in row] for row in head.itertuples(index=False)],
                "more_columns": max(0, value.shape[1] - 20)}
    if hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "reshape"):
        return {**out, "kind": "array", "shape": list(value.shape), "dtype": str(value.dtype),
                "stats": _array_stats(value), "text": _repr.repr(value)}
    if isinstance(value, str):
        return {**out, "kind": "text", "text": value[:TEXT_LIMIT], "length": len(value)}
    text = _long_repr.repr(value)
    return {**out, "kind": "text", "text": text[:TEXT_LIMIT], "length": len(text)}


def preview_data(task: Any, name: str) -> dict[str, Any]:
    """Load artifact ``name`` of ``task`` (a client Task) and preview it; a failure is shown, not raised."""
    try:
        return preview_value(task[name].data)
    except Exception as exc:  # the preview says why instead (unpicklable, missing module, corrupt blob)
        return {"kind": "error", "summary": "", "text": f"{type(exc).__name__}: {exc}"}
