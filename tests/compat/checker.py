"""Check one flowcell run with the suite's own ``check_results``.

Run as ``python checker.py CORE_DIR FLOW_NAME RUN_ID`` in the combination's folder.
``metaflow`` resolves to flowcell here (the same aliases a flowcell task gets), so the
suite's ``MetadataCheck`` — written against Metaflow's Client — reads flowcell's
store through flowcell's Client.  The suite's ``CliCheck`` drives Metaflow's own CLI
(``python test_flow.py dump ...``) and has no flowcell counterpart; it is not run.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Iterator


class CheckedFlow:
    """What ``check_results(flow, checker)`` uses of a flow: its name and its steps."""

    def __init__(self, path: str) -> None:
        from flowcell.graph import build_graph
        from flowcell.importer import read_flow_file

        source = read_flow_file(path)
        self.name = source.name
        self._graph = build_graph(source)

    def __iter__(self) -> Iterator[Any]:
        return iter(self._graph)


def main() -> None:
    core, flow_name, run_id = sys.argv[1:4]
    from flowcell._metaflow_shim import install

    install()
    sys.path.insert(0, core)
    # MetadataCheck reads the run id from argv[2], as the suite passes it.
    sys.argv = [sys.argv[0], "MetadataCheck", run_id]
    from metaflow_test.metadata_check import MetadataCheck

    namespace: dict[str, Any] = {"__name__": "check_flow"}
    code = Path("check_flow.py").read_text().split("\nif __name__ == '__main__':")[0]
    exec(compile(code, "check_flow.py", "exec"), namespace)
    flow = CheckedFlow("test_flow.py")
    assert flow.name == flow_name, (flow.name, flow_name)
    namespace["check_results"](flow, MetadataCheck(flow))


if __name__ == "__main__":
    main()
