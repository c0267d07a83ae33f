"""Child kernels: started over IPC (no TCP port), pooled, watched for death.

Every task runs in a child IPython kernel (``ipykernel``), driven with
``jupyter_client``'s async client.  The sockets and connection files live in a
private temporary directory (mode 700), the kernel's own stdout/stderr go to a log
file there (so ipykernel's start-up chatter never reaches the user's cell), and a
pool keeps a few kernels warm so a task or a spin does not pay the ~0.6 s start-up.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_client.asynchronous.client import AsyncKernelClient

from .._hygiene import end_processes, processes_with_env
from ..errors import KernelDiedError
from .launch import KERNEL_DIR_ENV, KERNEL_ID_ENV, Launched, kernel_env, make_workdir, spawn

Message = dict[str, Any]

#: Seconds a kernel has to acknowledge a request (its "busy" status) before it is replaced.
ACK_TIMEOUT = 10.0


class KernelLost(Exception):
    """The kernel died or stopped answering before it started the request: not the request's fault."""


class ChildKernel:
    """One running child kernel process and its client."""

    def __init__(self, launched: Launched) -> None:
        self.launched = launched
        self.process = launched.process
        self.log_path = launched.log_path
        self.kc = AsyncKernelClient()
        self.kc.load_connection_info(launched.connection)  # type: ignore[arg-type]
        self.tasks_run = 0
        #: Pathspec of the last task this kernel ran (named when the kernel turns out broken).
        self.last_task: str | None = None

    @classmethod
    async def start(cls, workdir: Path, cwd: str, env: dict[str, str]) -> ChildKernel:
        return await cls.connect(spawn(workdir, cwd, env))

    @classmethod
    async def connect(cls, launched: Launched) -> ChildKernel:
        """Wait for a started kernel to answer, then import the task driver in it."""
        kernel = cls(launched)
        kernel.kc.start_channels()
        try:
            await kernel._wait_ready(timeout=60)
            # Import the task driver now, so the first task doesn't pay for it.
            await kernel.execute("import flowcell._child", lambda m: None)
        except BaseException:
            await kernel.shutdown(now=True)
            raise
        return kernel

    async def _wait_ready(self, timeout: float) -> None:
        """Wait for the kernel's first reply, failing fast if its process exits."""
        deadline = time.monotonic() + timeout
        while True:
            ready = asyncio.ensure_future(self.kc.wait_for_ready(timeout=max(1.0, deadline - time.monotonic())))
            try:
                while not ready.done():
                    if not await self.is_alive():
                        raise KernelDiedError(f"{self._death_message()} while starting; its log:\n{self.log_tail()}")
                    await asyncio.wait([ready], timeout=0.05)
                ready.result()
                return
            except RuntimeError:
                # A missed heartbeat on a loaded machine reads as "died"; the process says otherwise.
                if not await self.is_alive() or time.monotonic() > deadline:
                    raise
            finally:
                if not ready.done():
                    ready.cancel()

    async def is_alive(self) -> bool:
        return self._exit_code() is None

    def _exit_code(self) -> int | None:
        """The kernel's exit code (negative: signal), without reaping it.

        An exited kernel is left a zombie until :meth:`shutdown`, so its pid (and
        process group id) cannot be reused before its group has been ended.
        """
        if self.process.returncode is not None:
            return self.process.returncode
        try:
            info = os.waitid(os.P_PID, self.process.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return self.process.poll()
        if info is None:
            return None
        return -info.si_status if info.si_code in (os.CLD_KILLED, os.CLD_DUMPED) else info.si_status

    def log_tail(self, limit: int = 2000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-limit:]
        except OSError:
            return ""

    async def execute(
        self,
        code: str,
        on_message: Callable[[Message], None],
        timeout: float | None = None,
        ack_timeout: float | None = None,
    ) -> Message:
        """Run ``code``; pass each iopub message to ``on_message``; return the reply.

        Raises :class:`KernelLost` if the kernel dies, or sends nothing for the
        request within ``ack_timeout``, before it starts the request;
        :class:`KernelDiedError` if it exits after starting it, before going idle;
        :class:`asyncio.TimeoutError` if ``timeout`` passes first.
        """
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False)
        now = time.monotonic()
        deadline = None if timeout is None else now + timeout
        ack_deadline = None if ack_timeout is None else now + ack_timeout
        acked = False
        while True:
            if deadline is not None and time.monotonic() > deadline:
                raise asyncio.TimeoutError()
            try:
                msg = await self.kc.get_iopub_msg(timeout=0.25)
            except Exception:  # queue.Empty from the zmq poll: check the kernel's pulse
                if not await self.is_alive():
                    if not acked:
                        raise KernelLost(f"{self._death_message()} before starting it") from None
                    raise KernelDiedError(self._death_message()) from None
                if not acked and ack_deadline is not None and time.monotonic() > ack_deadline:
                    raise KernelLost(f"did not acknowledge it within {ack_timeout:g} s") from None
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            acked = True
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
            on_message(msg)
        while True:
            try:
                reply: Message = await self.kc.get_shell_msg(timeout=5)
            except Exception:
                if not await self.is_alive():
                    raise KernelDiedError(self._death_message()) from None
                raise
            if reply.get("parent_header", {}).get("msg_id") == msg_id:
                return reply

    def _death_message(self) -> str:
        code = self._exit_code()
        how = ""
        if code is not None and code < 0:
            try:
                how = f" (killed by {signal.Signals(-code).name}"
            except ValueError:
                how = f" (signal {-code}"
            how += ", e.g. a segmentation fault or the out-of-memory killer)" if -code in (9, 11) else ")"
        elif code is not None:
            how = f" (exit code {code})"
        return f"kernel died{how}"

    async def interrupt(self) -> None:
        if self._exit_code() is None:
            try:
                os.kill(self.process.pid, signal.SIGINT)
            except OSError:
                pass

    async def shutdown(self, now: bool = False) -> None:
        """Stop the kernel (``now``: kill at once), end the processes its tasks left, remove its files."""
        try:
            self.kc.stop_channels()
        except Exception:
            pass
        if self._exit_code() is None and not now:
            self.process.terminate()
            for _ in range(100):
                if self._exit_code() is not None:
                    break
                await asyncio.sleep(0.01)
        if self.process.returncode is None:
            # The kernel leads its own process group; until it is reaped its id cannot be reused.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except OSError:
                pass
        for _ in range(400):
            if self.process.poll() is not None:
                break
            await asyncio.sleep(0.005)
        # Processes that left the group (setsid) still carry the kernel's id in their environment.
        if self.tasks_run:
            await asyncio.get_running_loop().run_in_executor(None, self._end_strays)
        self.launched.cleanup()

    def _end_strays(self) -> None:
        end_processes(processes_with_env(KERNEL_ID_ENV, str(self.launched.connection["ip"])))


class KernelPool:
    """Keeps ``size`` child kernels warm; hands them out one task at a time."""

    def __init__(self, size: int = 2, cwd: str | None = None, env: dict[str, str] | None = None,
                 workdir: Path | None = None) -> None:
        self.size = size
        self.cwd = cwd or os.getcwd()
        self.env = kernel_env(env)
        self._workdir = workdir or make_workdir()
        self._idle: list[ChildKernel] = []
        self._starting: set[asyncio.Task[ChildKernel]] = set()
        self._busy: set[ChildKernel] = set()
        self._closed = False
        #: Seconds a kernel has to acknowledge a task before it is replaced (None: wait for ever).
        self.ack_timeout: float | None = ACK_TIMEOUT

    @property
    def idle_count(self) -> int:
        return len(self._idle)

    def _spawn(self) -> asyncio.Task[ChildKernel]:
        task = asyncio.ensure_future(ChildKernel.start(self._workdir, self.cwd, self.env))
        self._starting.add(task)
        task.add_done_callback(self._started)
        return task

    def _started(self, task: asyncio.Task[ChildKernel]) -> None:
        self._starting.discard(task)
        if task.cancelled() or task.exception() is not None:
            return
        kernel = task.result()
        if self._closed:
            asyncio.ensure_future(kernel.shutdown(now=True))
        elif getattr(task, "_flowcell_claimed", False):
            return
        else:
            self._idle.append(kernel)

    def adopt(self, launched: list[Launched]) -> None:
        """Take kernels that were started before the pool existed (see ``launch``)."""
        for item in launched:
            task = asyncio.ensure_future(ChildKernel.connect(item))
            self._starting.add(task)
            task.add_done_callback(self._started)

    def warm(self, count: int | None = None) -> None:
        """Start kernels in the background until ``count`` (default ``size``) are ready or starting."""
        want = self.size if count is None else count
        while not self._closed and len(self._idle) + len(self._starting) < want:
            self._spawn()

    async def acquire(self) -> ChildKernel:
        """A ready kernel: an idle one, one about to finish starting, or a new one."""
        if self._closed:
            raise RuntimeError("kernel pool is shut down")
        while self._idle:
            kernel = self._idle.pop()
            if await kernel.is_alive():
                self._busy.add(kernel)
                self.warm(min(self.size, len(self._busy) + len(self._idle) + 1) - len(self._busy))
                return kernel
            asyncio.ensure_future(kernel.shutdown(now=True))
        unclaimed = [t for t in self._starting if not getattr(t, "_flowcell_claimed", False)]
        task = unclaimed[0] if unclaimed else self._spawn()
        task._flowcell_claimed = True  # type: ignore[attr-defined]
        kernel = await asyncio.shield(task)
        if kernel in self._idle:
            self._idle.remove(kernel)
        self._busy.add(kernel)
        return kernel

    async def release(self, kernel: ChildKernel, healthy: bool = True) -> None:
        """Give a kernel back; a dead or suspect one is replaced by a fresh start."""
        self._busy.discard(kernel)
        kernel.tasks_run += 1
        if healthy and not self._closed and await kernel.is_alive():
            self._idle.append(kernel)
            return
        await kernel.shutdown(now=True)
        if not self._closed:
            self.warm()

    async def shutdown(self) -> None:
        self._closed = True
        starting = list(self._starting)
        for task in starting:
            task.cancel()
        # Wait for the cancellations, or asyncio reports "Task was destroyed but it is pending".
        await asyncio.gather(*starting, return_exceptions=True)
        kernels = self._idle + list(self._busy)
        self._idle, self._busy = [], set()
        await asyncio.gather(*(k.shutdown(now=True) for k in kernels), return_exceptions=True)
        await asyncio.get_running_loop().run_in_executor(
            None, lambda: end_processes(processes_with_env(KERNEL_DIR_ENV, str(self._workdir))))
        shutil.rmtree(self._workdir, ignore_errors=True)
