"""Per-combination results, cached in a JSON-lines file so a long side is measured once."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
#: Metaflow 2.19.39's own results on this suite (~36 min on a quiet machine): reused, not re-run.
METAFLOW_RESULTS = HERE / "metaflow-2.19.39.jsonl"
FLOWCELL_RESULTS = HERE / "flowcell.jsonl"


def load(path: Path) -> dict[str, dict[str, Any]]:
    """The latest result per combination key."""
    out: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            if line.strip():
                row = json.loads(line)
                out[row["key"]] = row
    return out


def append(path: Path, row: dict[str, Any]) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row, ensure_ascii=False) + "\n")
