"""The three servers under test, each started as a real process listening on 127.0.0.1.

- **syncd**: ``syncd serve --host 127.0.0.1 --port P --data DIR --rate-limit 0`` (the
  venv's console script), every write fsync'd before its ack;
- **pycrdt-websocket**: ``python -m bench.server.pycrdt_server P`` (in memory);
- **y-websocket**: ``node bench/yjs/node_modules/@y/websocket-server/src/server.js``,
  the package's own server, with ``HOST`` and ``PORT`` set and persistence off (its
  default: ``YPERSISTENCE`` unset).

A server is measured as its process tree (the process and its descendants: Node may
start helpers), from ``/proc``: its peak resident memory is the sum of their
``VmHWM`` in ``/proc/PID/status``, read just before it is stopped (``VmRSS``: what it
holds at a given moment), its CPU time the sum of their user and system time with
that of the children they reaped. Its output goes to a log file beside its data,
shown if it fails.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO

from bench.server.clients import SYNCD_DIALECT, YJS_DIALECT

__all__ = [
    "HOST",
    "PYCRDT",
    "SERVERS",
    "SYNCD",
    "Y_WEBSOCKET",
    "RunningServer",
    "ServerKind",
    "node_version",
    "start_server",
    "syncd_metrics",
    "wait_listening",
]

HOST: Final = "127.0.0.1"
_ROOT: Final = Path(__file__).resolve().parents[2]
YJS_DIR: Final = _ROOT / "bench" / "yjs"
_Y_SERVER: Final = YJS_DIR / "node_modules" / "@y" / "websocket-server" / "src" / "server.js"


@dataclass(frozen=True)
class ServerKind:
    """One server under test."""

    name: str
    dialect: str
    durable: bool
    """Whether it fsyncs a write before acknowledging it."""


SYNCD: Final = ServerKind("syncd", SYNCD_DIALECT, durable=True)
PYCRDT: Final = ServerKind("pycrdt-websocket", YJS_DIALECT, durable=False)
Y_WEBSOCKET: Final = ServerKind("y-websocket", YJS_DIALECT, durable=False)
SERVERS: Final = (SYNCD, PYCRDT, Y_WEBSOCKET)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def node_version() -> str:
    """``node --version``, or ``unknown``."""
    try:
        done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return done.stdout.strip()


@dataclass
class RunningServer:
    """A server process and where it listens."""

    kind: ServerKind
    process: subprocess.Popen[bytes]
    port: int
    data: Path
    started_ns: int
    """``monotonic_ns`` just before the process was started."""
    log_path: Path
    _log: TextIO | None = field(default=None, repr=False)
    pid: int = 0
    """The server's own process: ``process`` itself, or the child of the tracer it runs
    under (see ``prefix`` of :func:`start_server`)."""

    def __post_init__(self) -> None:
        self.pid = self.pid or self.process.pid

    def path(self, doc: str) -> str:
        """The request path of document ``doc``."""
        return "/ws" if self.kind.dialect == SYNCD_DIALECT else f"/{doc}"

    def peak_rss(self) -> int:
        """The process tree's peak resident set size (``VmHWM``) in bytes, 0 if unknown."""
        return sum(_status_bytes(pid, "VmHWM:") for pid in _tree(self.pid))

    def rss(self) -> int:
        """The process tree's resident set size now (``VmRSS``) in bytes, 0 if unknown."""
        return sum(_status_bytes(pid, "VmRSS:") for pid in _tree(self.pid))

    def cpu_seconds(self) -> float:
        """CPU time the process tree has used so far (user + system), 0 if unknown."""
        return sum(_cpu_seconds(pid) for pid in _tree(self.pid))

    def log_tail(self, lines: int = 20) -> str:
        """The end of the server's output."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def kill(self) -> None:
        """``kill -9``, and reap it."""
        if self.process.poll() is None:
            _signal(self.pid, signal.SIGKILL)
        self.process.wait(timeout=10)
        self._close_log()

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (a graceful stop, which lets cProfile write its file), then SIGKILL."""
        if self.process.poll() is None:
            _signal(self.pid, signal.SIGTERM)  # a tracer exits with the server
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def _tree(pid: int) -> list[int]:
    """``pid`` and its live descendants (from ``/proc/PID/task/TID/children``)."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children", encoding="ascii") as children:
                    pending.extend(int(child) for child in children.read().split())
            except OSError:
                continue
    return found


def _status_bytes(pid: int, name: str) -> int:
    """A size in bytes from ``/proc/PID/status`` (``VmHWM:``, ``VmRSS:``), 0 if unknown."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(name):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and of the children it reaped, 0 if unknown."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # After the command's name: utime, stime, cutime, cstime are fields 14-17 (proc(5)).
    return sum(int(value) for value in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def _signal(pid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signum)


def _traced_child(tracer: subprocess.Popen[bytes], timeout: float = 10.0) -> int:
    """The pid of the command a tracer started, once it runs the command: strace also
    forks children of its own that exec nothing (its seccomp check), so a child counts
    only once its command line differs from the tracer's."""
    proc = Path("/proc")
    children = proc / str(tracer.pid) / "task" / str(tracer.pid) / "children"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and tracer.poll() is None:
        with contextlib.suppress(OSError):
            own = (proc / str(tracer.pid) / "cmdline").read_bytes()
            for pid in children.read_text().split():
                if (proc / pid / "cmdline").read_bytes() not in (own, b""):
                    return int(pid)
        time.sleep(0.01)
    raise RuntimeError(f"{tracer.args!r} started no process within {timeout:.0f} s")


def _command(
    kind: ServerKind,
    port: int,
    data: Path,
    profile: Path | None,
    extra: tuple[str, ...] = (),
    venv: Path | None = None,
) -> list[str]:
    if kind is SYNCD:
        # No rate limit: a writer sends tens of thousands of one-entry messages a second
        # on one connection (the peers have no limit either).
        serve = ["serve", "--host", HOST, "--port", str(port), "--data", str(data)]
        serve += ["--rate-limit", "0", *extra]
        if profile is not None:
            return [sys.executable, "-m", "cProfile", "-o", str(profile), "-m", "syncd", *serve]
        bin_dir = venv / "bin" if venv is not None else Path(sys.executable).parent
        return [str(bin_dir / "syncd"), *serve]
    if kind is PYCRDT:
        return [sys.executable, "-m", "bench.server.pycrdt_server", str(port)]
    if not _Y_SERVER.is_file():
        raise RuntimeError(f"{_Y_SERVER} is missing: run `npm ci --prefix bench/yjs` first")
    return ["node", str(_Y_SERVER)]


def start_server(
    kind: ServerKind,
    data: Path,
    *,
    port: int | None = None,
    profile: Path | None = None,
    extra: tuple[str, ...] = (),
    venv: Path | None = None,
    prefix: tuple[str, ...] = (),
) -> RunningServer:
    """Start ``kind`` with its data (and log) under ``data``; see :func:`wait_listening`.

    ``extra``: more ``syncd serve`` options (e.g. ``--cluster``), syncd only; ``venv``:
    the virtual environment whose ``syncd`` to run (another build), this one's if None.
    ``prefix``: a tracer to run it under (e.g. ``strace … --``); the server is its child.
    """
    data.mkdir(parents=True, exist_ok=True)
    port = port or _free_port()
    env = {**os.environ, "HOST": HOST, "PORT": str(port)}
    env.pop("YPERSISTENCE", None)
    log_path = data.parent / f"{data.name}.{kind.name}.log"
    log = open(log_path, "a", encoding="utf-8")  # noqa: SIM115 (closed by stop/kill)
    started = time.monotonic_ns()
    process = subprocess.Popen(
        [*prefix, *_command(kind, port, data / "store", profile, extra, venv)],
        cwd=_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = RunningServer(kind, process, port, data, started, log_path, log)
    if prefix:
        server.pid = _traced_child(process)
    return server


async def syncd_metrics(server: RunningServer, timeout: float = 30.0) -> dict[str, float]:
    """syncd's ``/metrics``: each sample by name (labels kept in the name, as printed)."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(HOST, server.port), timeout)
    try:
        writer.write(f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
        body = await asyncio.wait_for(reader.read(), timeout)
    finally:
        writer.close()
    samples = {}
    for line in body.decode(errors="replace").split("\r\n\r\n", 1)[-1].splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("syncd_"):
            samples[name] = float(value)
    return samples


async def wait_listening(server: RunningServer, timeout: float = 30.0) -> int:
    """Wait until the server accepts connections; the ``monotonic_ns`` when it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise RuntimeError(f"{server.kind.name} exited:\n{server.log_tail()}")
        try:
            _, writer = await asyncio.open_connection(HOST, server.port)
        except OSError:
            await asyncio.sleep(0.005)
            continue
        accepted = time.monotonic_ns()
        writer.close()
        await writer.wait_closed()
        return accepted
    raise RuntimeError(f"{server.kind.name} did not listen within {timeout:.0f} s")
