"""Faults for the crash-consistency and disk-full tests: crash points, a ledger, a full disk.

- :class:`CrashPoint`: a syscall of the store at which ``strace`` fault injection
  kills the server with SIGKILL (``-e inject=SYSCALL:signal=KILL:when=N``), and
  :func:`injected_kill` to prove from strace's log that the kill happened there.
  strace counts invocations per syscall *and per thread*, and only those touching
  the ``-P`` paths; ``--seccomp-bpf`` is not used: strace 6.1 then never delivers
  an injected signal.
- :class:`TracedServer`: a :class:`~servers.ServerProcess` whose command can be
  prefixed (with strace), and run again without the prefix on the same data.
- :class:`Ledger` and :func:`write_until_closed`: what writers sent and which of
  it the server acknowledged, checked against a fresh client's snapshot.
- :func:`check_data_files`: every data file the server left parses.
- :class:`FullDisk`: a disk that fills up and frees again under a running server,
  either a small tmpfs holding its data (:class:`TmpfsDisk`, Linux, root) with a
  filler file, or strace attached to the server failing every ``write`` with
  ENOSPC until it detaches (:class:`StraceDisk`).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import random
import re
import shutil
import signal
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Protocol

from servers import TIMEOUT, Frame, RawClient, ServerProcess
from websockets.exceptions import ConnectionClosed

__all__ = [
    "STRACE",
    "CrashPoint",
    "FullDisk",
    "Ledger",
    "StraceDisk",
    "Tmpfs",
    "TmpfsDisk",
    "TracedServer",
    "check_data_files",
    "injected_kill",
    "snapshot",
    "write_until_closed",
]

STRACE: Final = "/usr/bin/strace"


@dataclass(frozen=True)
class CrashPoint:
    """Kill the server at the ``when``-th call (in one thread) of one of ``syscalls``
    that touches one of ``paths`` (relative to ``docs/``; ``"."`` is the folder)."""

    name: str
    syscalls: tuple[str, ...]
    paths: tuple[str, ...]
    when: int
    faults: tuple[str, ...] = ()
    """Other ``-e inject=`` expressions, e.g. an error that leads to the crash point."""
    acks_before: bool = True
    """Whether writes are acknowledged before the crash (not so for the first file)."""

    @property
    def id(self) -> str:
        """A test id."""
        segment = next((p for p in self.paths if p.endswith(".log")), None)
        return f"{self.name}-{self.when}" + (f"-{segment}" if segment else "")

    def strace_prefix(self, docs: Path, log: Path) -> list[str]:
        """``strace … --`` for a command, logging the traced calls to ``log``."""
        traced = sorted({*self.syscalls, *(f.split(":")[0] for f in self.faults)})
        args = [STRACE, "-f", "-o", str(log), "-e", f"trace={','.join(traced)}"]
        for path in self.paths:
            args += ["-P", str(docs if path == "." else docs / path)]
        for fault in self.faults:
            args += ["-e", f"inject={fault}"]
        args += ["-e", f"inject={','.join(self.syscalls)}:signal=KILL:when={self.when}", "--"]
        return args


_LINE = re.compile(r"^(?P<pid>[0-9]+) +(?P<rest>.*)$")


def injected_kill(log: Path, syscalls: Sequence[str]) -> str:
    """The call at which strace's ``log`` shows a thread killed by SIGKILL, if it was
    one of ``syscalls`` that never returned; ``AssertionError`` otherwise."""
    last: dict[str, str] = {}
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in lines:
        match = _LINE.match(line)
        if match is None:
            continue
        pid, rest = match["pid"], match["rest"]
        if rest == "+++ killed by SIGKILL +++":
            call = last.get(pid, "")
            name = call.split("(", 1)[0]
            unfinished = call.endswith("= ?") or call.endswith("<unfinished ...>")
            if name in syscalls and unfinished:
                return f"{pid} {call}"
        elif not rest.startswith(("---", "+++", "<...")):
            last[pid] = rest
    raise AssertionError(f"no thread was killed in {'/'.join(syscalls)}:\n" + "\n".join(lines[-8:]))


@dataclass
class TracedServer(ServerProcess):
    """A server process whose command line starts with ``prefix`` (``()``: none)."""

    prefix: Sequence[str] = ()

    def command(self) -> list[str]:
        return [*self.prefix, *super().command()]

    def cleanup(self) -> None:
        """Kill the server under strace first: strace killed alone would leave it running."""
        if self.process is not None and self.process.poll() is None and self.prefix:
            children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
            try:
                pids = [int(pid) for pid in children.read_text().split()]
            except OSError:
                pids = []
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        super().cleanup()


@dataclass
class Ledger:
    """What the writers of one document sent and which of it was acknowledged."""

    sent: dict[str, Frame] = field(default_factory=dict)
    """Every entry sent, by ts (each ts is unique)."""
    acked: dict[str, Frame] = field(default_factory=dict)
    """For each key, the acknowledged entry with the greatest ts."""
    acks: int = 0
    """Messages acknowledged."""
    last_seq: int = 0
    """The greatest seq acknowledged."""

    def record(self, ops: list[Frame]) -> None:
        """Record the entries of a message about to be sent."""
        self.sent.update((entry["ts"], entry) for entry in ops)

    def ack(self, ops: list[Frame], seq: int) -> None:
        """Record the acknowledgement of a message that held ``ops``."""
        self.acks += 1
        self.last_seq = max(self.last_seq, seq)
        for entry in ops:
            known = self.acked.get(entry["key"])
            if known is None or entry["ts"] > known["ts"]:
                self.acked[entry["key"]] = entry

    def check(self, state: dict[str, Frame], context: str) -> None:
        """Every acknowledged write is in ``state`` (or a newer one that was sent),
        and ``state`` holds nothing that was not sent, byte for byte."""
        for key, entry in self.acked.items():
            held = state.get(key)
            assert held is not None, f"{context}: acknowledged key {key!r} is lost"
            assert held["ts"] >= entry["ts"], f"{context}: {key!r} went back to {held}"
        for entry in state.values():
            assert self.sent.get(entry["ts"]) == entry, f"{context}: {entry} was never sent"


async def write_until_closed(
    client: RawClient,
    ledger: Ledger,
    rng: random.Random,
    keys: Sequence[str],
    *,
    window: int = 4,
    messages: int = 1000,
    seconds: float = 4 * TIMEOUT,
    pad: tuple[int, int] = (50, 400),
) -> bool:
    """Pipeline random writes (``window`` unanswered at most) until the connection
    closes (``True``) or ``messages`` were sent and answered or ``seconds`` passed
    (``False``). Errors answers are not acknowledgements: they are only counted out."""
    pending: dict[int, list[Frame]] = {}
    sent = 0
    try:
        async with asyncio.timeout(seconds):
            for _ in range(20 * messages):
                while sent < messages and len(pending) < window:
                    ops = [
                        client.stamps.delete(key)
                        if rng.random() < 0.2
                        else client.stamps.set(key, {"n": sent, "pad": "p" * rng.randint(*pad)})
                        for key in rng.sample(list(keys), rng.randint(1, 3))
                    ]
                    ledger.record(ops)
                    id = client.next_id()
                    pending[id] = ops
                    await client.send({"type": "ops", "id": id, "ops": ops})
                    sent += 1
                if not pending:
                    return False
                frame = await client.recv()
                if frame["type"] == "ack":
                    ledger.ack(pending.pop(frame["id"]), frame["seq"])
                elif frame["type"] == "error" and frame.get("id") in pending:
                    del pending[frame["id"]]
    except ConnectionClosed:
        return True
    except TimeoutError:
        return False
    return False


async def snapshot(
    url: str, doc: str = "default", node: str = "judge"
) -> tuple[Frame, dict[str, Frame]]:
    """A fresh client's welcome and snapshot (every entry by key) of ``doc``."""
    client = await RawClient.connect(url, node)
    try:
        handshake = await client.hello(doc=doc)
    finally:
        await client.close()
    return handshake.welcome, handshake.state


def check_data_files(docs: Path, context: str, staged: bool = True) -> int:
    """Every document file parses as a TinyDB file and every log line as JSON (only a
    segment's last line may be torn); ``staged``: a ``.tmp`` file may remain (it is
    removed when its document is loaded). Returns how many files were read."""
    count = 0
    for path in sorted(docs.iterdir()):
        count += 1
        if path.name.endswith(".tmp"):
            assert staged, f"{context}: {path.name} was left behind"
        elif path.name.endswith(".json"):
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except ValueError as error:
                raise AssertionError(f"{context}: {path.name} is unreadable: {error}") from None
            assert isinstance(data.get("meta"), dict), f"{context}: {path.name}: no meta"
            assert isinstance(data.get("entries"), dict), f"{context}: {path.name}: no entries"
        elif path.name.endswith(".log"):
            lines = path.read_bytes().split(b"\n")
            for number, line in enumerate(lines[:-1], 1):  # the last is the torn tail or b""
                try:
                    record = json.loads(line)
                except ValueError:
                    raise AssertionError(f"{context}: {path.name}:{number} is torn") from None
                assert isinstance(record.get("seq"), int), f"{context}: {path.name}:{number}"
        else:
            raise AssertionError(f"{context}: unexpected file {path.name}")
    return count


class Tmpfs:
    """A tmpfs of ``size`` bytes mounted at ``path`` (Linux, root); :meth:`fill` takes
    its free space with a filler file and :meth:`free` gives it back."""

    def __init__(self, path: Path, size: int) -> None:
        self.path = path
        self.size = size
        self.filler = path / "filler"
        self.mounted = False

    def mount(self) -> str | None:
        """Mount; ``None``, or why it could not be."""
        if shutil.which("mount") is None:
            return "no mount command"
        self.path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={self.size},mode=0755", "tmpfs", str(self.path)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            check=False,
        )
        if result.returncode != 0:
            return result.stderr.strip() or f"mount exited with {result.returncode}"
        self.mounted = True
        return None

    def unmount(self) -> None:
        """Unmount (lazily if something still holds a file there)."""
        if self.mounted:
            result = subprocess.run(["umount", str(self.path)], timeout=TIMEOUT, check=False)
            if result.returncode != 0:
                subprocess.run(["umount", "-l", str(self.path)], timeout=TIMEOUT, check=False)
            self.mounted = False

    def available(self) -> int:
        """Free bytes."""
        stat = os.statvfs(self.path)
        return stat.f_bavail * stat.f_frsize

    def fill(self) -> None:
        """Write the filler until the file system is full."""
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            size = 1 << 16
            for _ in range(self.size // size + 64):
                try:
                    os.write(fd, b"\0" * size)
                except OSError as error:
                    if error.errno != errno.ENOSPC:
                        raise
                    if size == 1:
                        break
                    size = max(size // 16, 1)  # the last bytes, in smaller writes
        finally:
            os.close(fd)
        assert self.available() == 0, f"{self.available()} bytes still free"

    def free(self) -> None:
        """Delete the filler."""
        self.filler.unlink(missing_ok=True)


class FullDisk(Protocol):
    """Where a server keeps its data, and a way to fill that disk up and free it."""

    data: Path
    how: str

    async def fill(self, process: ServerProcess) -> None:
        """From now on the server's writes fail with ENOSPC."""

    async def free(self, process: ServerProcess) -> None:
        """From now on they succeed again."""

    def close(self) -> None:
        """Undo everything (the server is stopped first)."""


class TmpfsDisk:
    """The data on a small tmpfs, filled by a filler file."""

    how = "a full tmpfs"

    def __init__(self, tmpfs: Tmpfs) -> None:
        self.tmpfs = tmpfs
        self.data = tmpfs.path / "data"

    async def fill(self, process: ServerProcess) -> None:
        await asyncio.to_thread(self.tmpfs.fill)

    async def free(self, process: ServerProcess) -> None:
        self.tmpfs.free()

    def close(self) -> None:
        self.tmpfs.unmount()


class StraceDisk:
    """The data on the ordinary disk; strace attaches to the server to fail each of its
    ``write`` calls with ENOSPC (sockets use ``sendto``), and detaches to free it."""

    how = "strace -e inject=write:error=ENOSPC"

    def __init__(self, data: Path, log: Path) -> None:
        self.data = data
        self.log = log
        self.strace: subprocess.Popen[str] | None = None

    async def fill(self, process: ServerProcess) -> None:
        assert process.process is not None
        if self.strace is not None:  # attached to a server that died since
            assert self.strace.wait(TIMEOUT) is not None
            self.close()
        pid = str(process.process.pid)
        inject = "inject=write,pwrite64:error=ENOSPC"
        self.strace = subprocess.Popen(
            [
                STRACE,
                "-f",
                "-o",
                str(self.log),
                "-e",
                "trace=write,pwrite64",
                "-e",
                inject,
                "-p",
                pid,
            ],
            stdin=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        stderr = self.strace.stderr
        assert stderr is not None
        async with asyncio.timeout(TIMEOUT):
            for _ in range(100):  # "strace: Process N attached with M threads"
                line = await asyncio.to_thread(stderr.readline)
                assert line, f"strace could not attach (exit {self.strace.wait(TIMEOUT)})"
                if "attached" in line:
                    return
        raise AssertionError("strace did not report attaching")

    async def free(self, process: ServerProcess) -> None:
        assert self.strace is not None
        self.strace.send_signal(signal.SIGINT)  # strace detaches; the server runs on
        await asyncio.to_thread(self.strace.wait, TIMEOUT)
        self.close()
        injected = self.log.read_text(encoding="utf-8", errors="replace").count("(INJECTED)")
        assert injected, "strace failed no write: the disk was never full"

    def close(self) -> None:
        if self.strace is not None:
            if self.strace.poll() is None:
                self.strace.kill()
                self.strace.wait(TIMEOUT)
            if self.strace.stderr is not None:
                self.strace.stderr.close()
            self.strace = None
