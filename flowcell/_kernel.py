"""Entry point of a child kernel: ipykernel, with no TCP socket and a reaper for a task's processes.

Started as ``python -m flowcell._kernel -f CONNECTION_FILE`` (see ``runtime/launch.py``).
Two differences from ``python -m ipykernel_launcher``:

* ipykernel 7's IOPub thread binds a ``tcp://127.0.0.1`` socket for the output of
  forked subprocesses, even when the kernel's own channels use IPC.  Here that pipe
  is an IPC socket beside the kernel's others (``<ip>-pipe``, in the private 0700
  kernel folder), so a child kernel listens on no TCP port at all while output from
  ``os.fork``/``multiprocessing`` children still reaches the task.
* On Linux the kernel becomes a "child subreaper": processes a step starts, even ones
  that detach into their own session, stay its descendants, so the task driver can
  end them when the task ends (``flowcell._hygiene``).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any


def _ipc_iopub_thread() -> Any:
    from ipykernel.iostream import IOPubThread

    class IPCPipeIOPubThread(IOPubThread):
        """ipykernel's IOPub thread with its subprocess pipe on an IPC socket."""

        pipe_path = ""

        def _setup_pipe_in(self) -> None:
            import zmq
            from zmq.eventloop.zmqstream import ZMQStream

            self._pipe_uuid = __import__("os").urandom(16)
            pipe_in = self.socket.context.socket(zmq.PULL)
            pipe_in.linger = 0
            pipe_in.bind(f"ipc://{self.pipe_path}")
            self._pipe_in = ZMQStream(pipe_in, self.io_loop)
            self._pipe_in.on_recv(self._handle_pipe_msg)

        def _setup_pipe_out(self) -> tuple[Any, Any]:
            import zmq

            ctx = zmq.Context()  # a forked process needs its own context
            pipe_out = ctx.socket(zmq.PUSH)
            pipe_out.linger = 3000
            pipe_out.connect(f"ipc://{self.pipe_path}")
            return ctx, pipe_out

    return IPCPipeIOPubThread


def _app_class() -> Any:
    from ipykernel.kernelapp import IPKernelApp

    thread_class = _ipc_iopub_thread()

    class FlowcellKernelApp(IPKernelApp):
        """IPKernelApp whose IOPub pipe for forked output is IPC (``init_iopub`` as upstream otherwise)."""

        def init_iopub(self, context: Any) -> None:
            import zmq

            self.iopub_socket = context.socket(zmq.XPUB)
            self.iopub_socket.linger = 1000
            self._apply_curve_server_options(self.iopub_socket)
            self.iopub_port = self._bind_socket(self.iopub_socket, self.iopub_port)  # type: ignore[no-untyped-call]
            self.configure_tornado_logger()  # type: ignore[no-untyped-call]
            thread_class.pipe_path = f"{self.ip}-pipe"
            self.iopub_thread = thread_class(self.iopub_socket, pipe=True, session=self.session)
            self.iopub_thread.start()
            self.iopub_socket = self.iopub_thread.background_socket

    return FlowcellKernelApp


def main() -> None:
    # As ipykernel_launcher does: the working directory is not an import path while ipykernel loads.
    if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path.cwd()):
        del sys.path[0]
    from ._hygiene import become_subreaper

    become_subreaper()
    _app_class().launch_instance()


if __name__ == "__main__":
    main()
