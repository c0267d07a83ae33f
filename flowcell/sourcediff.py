"""How two versions of a step or of the module code differ, in words a person reads.

Plain text in, plain text out: no store and no IPython, so ``flowcell status``,
``%flow_status`` and the JupyterLab badges share the same sentences.  Whether code
changed at all is decided elsewhere, on normalised digests (whitespace, comments
and docstrings do not count, see :mod:`flowcell.fingerprint`); these helpers only
describe a change already found: how many lines (``+2 −1``), which definitions of
the module code (``def clean``), and the unified diff ``flowcell status --diff``
prints.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence

#: U+2212, the minus sign: "+2 −1" reads as counts, not as a range or an option.
MINUS = "\u2212"
#: A change names at most this many definitions; the rest are counted.
MAX_NAMES = 3


def _lines(text: str) -> list[str]:
    # Trailing whitespace and the final newline are invisible in a cell: not a change.
    lines = [line.rstrip() for line in text.splitlines()]
    while lines and not lines[-1]:
        lines.pop()
    return lines


def line_changes(old: str, new: str) -> tuple[int, int]:
    """``(added, removed)`` lines from ``old`` to ``new`` (a changed line counts once each way)."""
    added = removed = 0
    matcher = difflib.SequenceMatcher(None, _lines(old), _lines(new), autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag in ("replace", "delete"):
            removed += i2 - i1
        if tag in ("replace", "insert"):
            added += j2 - j1
    return added, removed


def describe_lines(added: int, removed: int) -> str:
    """``+2 −1 lines`` (``+1 −0 line`` reads oddly, so the noun follows the larger count)."""
    noun = "line" if max(added, removed) == 1 else "lines"
    return f"+{added} {MINUS}{removed} {noun}"


def unified_diff(old: str, new: str, old_label: str, new_label: str, context: int = 3) -> str:
    """The unified diff from ``old`` to ``new`` (empty when they differ only in trailing whitespace)."""
    lines = difflib.unified_diff(_lines(old), _lines(new), old_label, new_label, n=context, lineterm="")
    return "\n".join(lines)


def changed_names(old: Mapping[str, str], new: Mapping[str, str]) -> tuple[list[str], list[str], list[str]]:
    """``(changed, added, removed)`` names between two ``{name: digest}`` maps, in the new map's order."""
    changed = [name for name in new if name in old and old[name] != new[name]]
    added = [name for name in new if name not in old]
    removed = [name for name in old if name not in new]
    return changed, added, removed


def _names(names: Sequence[str]) -> str:
    shown = ", ".join(f"`{n}`" for n in names[:MAX_NAMES])
    more = len(names) - MAX_NAMES
    return shown + (f" and {more} more" if more > 0 else "")


def describe_module_change(old: Mapping[str, str], new: Mapping[str, str]) -> str | None:
    """``module code changed (`def clean`)``, or None when every definition is the same.

    A definition that moved within the cells is not a change (the maps are compared
    by name); one added or removed is said so.
    """
    changed, added, removed = changed_names(old, new)
    if not (changed or added or removed):
        return None
    parts = []
    if changed:
        parts.append(_names(changed))
    if added:
        parts.append(f"added {_names(added)}")
    if removed:
        parts.append(f"removed {_names(removed)}")
    return f"module code changed ({'; '.join(parts)})"


def describe_list_change(what: str, old: Sequence[str], new: Sequence[str]) -> str | None:
    """``decorators changed (@retry(times=2) → @retry(times=3))``, or None when equal."""
    if list(old) == list(new):
        return None
    before = " ".join(old) or "none"
    after = " ".join(new) or "none"
    return f"{what} changed ({before} \u2192 {after})"
