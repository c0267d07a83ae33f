"""The ``flowcell`` command's entry point: hand run/spin/resume to a warm kernel server first.

Trying the server needs only the standard library and :mod:`flowcell.warm`, so a served
command does not pay for importing the CLI (argparse, the option parser, the model)
before its work is handed over; everything else goes to :func:`flowcell.cli.main`.
"""

from __future__ import annotations

import os
import sys


def main() -> int:
    try:
        return _main(sys.argv[1:])
    except BrokenPipeError:
        # `flowcell --help | head`: the reader left; say nothing more (as other CLIs do).
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


def _main(argv: list[str]) -> int:
    # --root is applied by the CLI itself, which then tries the server with the right store.
    if (argv and argv[0] in ("run", "spin", "resume") and not {"-h", "--help"} & set(argv)
            and not any(a == "--root" or a.startswith("--root=") for a in argv)):
        from .warm import try_server

        served = try_server(argv)
        if served is not None:
            return served
    from .cli import main as cli_main

    return cli_main(argv)
