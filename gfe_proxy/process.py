"""Instance processes: spawn, probe for readiness, pipe their logs, stop them (SPEC INST-1, INST-3).

One ``InstanceProcess`` is one backend server (gunicorn, uvicorn, any ``entrypoint``) in its own
process group on 127.0.0.1 and its own port. What it serves and when it is used is the
supervisor's business (supervisor.py); this module only knows processes and sockets.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import re
import signal
import socket
import sys
from collections import deque
from collections.abc import Coroutine
from typing import Any

from gfe_proxy import launch
from gfe_proxy.errors import StartupError

log = logging.getLogger("gfe_proxy.instances")

_PROBE_PATH = "/_ah/health"
_PR_SET_PDEATHSIG = 1
_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Exit|Interrupt)\b(:|$)")


def free_port(host: str = "127.0.0.1") -> int:
    """An ephemeral port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # pragma: no cover - runs in the child before exec
    # Linux: the instance gets SIGTERM if gfe-proxy itself is killed, so no orphans even then.
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Tasks:
    """Owner of background tasks: keeps references, names them, cancels them on close."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coro: Coroutine[Any, Any, Any], *, name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task %s failed: %r", task.get_name(), task.exception())

    async def close(self) -> None:
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class InstanceProcess:
    """One backend server process on 127.0.0.1:port, in its own process group."""

    def __init__(self, *, instance_id: str, service: str, spec: launch.Launch, port: int) -> None:
        self.id = instance_id
        self.service = service
        self.spec = spec
        self.port = port
        self.proc: asyncio.subprocess.Process | None = None
        self.stderr_tail: deque[str] = deque(maxlen=60)
        self.stopping = False
        self._readers: list[asyncio.Task[None]] = []

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode if self.proc else None

    def __repr__(self) -> str:
        return f"<InstanceProcess {self.service}/{self.id} port={self.port} pid={self.pid}>"

    async def spawn(self) -> None:
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *self.spec.argv,
                cwd=str(self.spec.cwd),
                env=self.spec.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        except FileNotFoundError:
            raise StartupError(
                f"service {self.service}: command not found: {self.spec.argv[0]!r}"
            ) from None
        except PermissionError:
            raise StartupError(
                f"service {self.service}: command not executable: {self.spec.argv[0]!r}"
            ) from None
        assert self.proc.stdout is not None
        assert self.proc.stderr is not None
        self._readers = [
            asyncio.get_running_loop().create_task(
                self._pipe(self.proc.stdout, keep=False), name=f"{self.id}-stdout"
            ),
            asyncio.get_running_loop().create_task(
                self._pipe(self.proc.stderr, keep=True), name=f"{self.id}-stderr"
            ),
        ]

    async def _pipe(self, stream: asyncio.StreamReader, *, keep: bool) -> None:
        # SPEC INST-3: instance stdout/stderr go to our log, prefixed with the instance id.
        while True:
            try:
                line = await stream.readline()
            except (ValueError, asyncio.LimitOverrunError):
                continue  # an overlong line: skip it rather than stop logging
            if not line:
                return
            text = line.decode("utf-8", "replace").rstrip()
            if keep:
                self.stderr_tail.append(text)
            log.info("[%s/%s] %s", self.service, self.id, text)

    async def wait_ready(self, limit: float) -> None:
        """Poll until the port answers HTTP (any status line); StartupError if it exits."""
        assert self.proc is not None
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while True:
            if self.proc.returncode is not None:
                await self._drain_readers()
                raise StartupError(self.exit_reason("before answering HTTP"))
            remaining = deadline - loop.time()
            if remaining <= 0:
                raise StartupError(
                    f"service {self.service}: instance {self.id} did not answer HTTP on port "
                    f"{self.port} within {limit:g}s"
                )
            try:
                if await asyncio.wait_for(self._probe(), timeout=remaining):
                    return
            except (TimeoutError, OSError):
                pass
            # A poll with a deadline: the port is not open yet.
            await asyncio.sleep(0.05)

    async def _probe(self) -> bool:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        try:
            writer.write(
                f"GET {_PROBE_PATH} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\n"
                "Connection: close\r\n\r\n".encode()
            )
            line = await reader.readline()
            return line.startswith(b"HTTP/")
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _drain_readers(self) -> None:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._readers, return_exceptions=True), 1.0)

    def exit_status(self) -> str:
        """``"was killed by signal 9"`` or ``"exited with code 3"``."""
        code = self.returncode
        if code is not None and code < 0:
            return f"was killed by signal {-code}"
        return f"exited with code {code}"

    def exit_reason(self, when: str) -> str:
        """One line for the log and the CLI: how it ended, when, and the telling stderr line."""
        # The most telling line: the last exception line of a traceback, else the last line.
        lines = [line.strip() for line in self.stderr_tail if line.strip()]
        last = next(
            (line for line in reversed(lines) if _EXCEPTION_LINE.match(line)),
            lines[-1] if lines else "",
        )
        return f"service {self.service}: instance {self.id} {self.exit_status()} {when}" + (
            f": {last.strip()}" if last else ""
        )

    async def wait(self) -> int:
        assert self.proc is not None
        code = await self.proc.wait()
        await self._drain_readers()
        return code

    async def stop(self, grace: float) -> None:
        """SIGTERM to the whole process group, SIGKILL after ``grace`` seconds."""
        self.stopping = True
        proc = self.proc
        if proc is None or proc.returncode is not None:
            return
        self._signal_group(signal.SIGTERM)
        try:
            await asyncio.wait_for(proc.wait(), timeout=grace)
        except TimeoutError:
            log.warning("[%s/%s] did not stop within %gs; killing", self.service, self.id, grace)
            self._signal_group(signal.SIGKILL)
            await proc.wait()
        # The leader is gone; make sure nothing it started outlives it.
        self._signal_group(signal.SIGKILL)
        await self._drain_readers()

    def kill(self) -> None:
        self._signal_group(signal.SIGKILL)

    def _signal_group(self, sig: signal.Signals) -> None:
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, sig)
