"""Abuse against real servers (issue #7, part 4): each attack gets the answer the
contract gives it, and a well-behaved client on the same server is served
promptly all along (:class:`attacks.Prober`); where memory could grow, the
server's RSS stays bounded.

Attacks: a thousand idle connections, a flood of ``hello``s, 10,000 frames a
second on one connection (``rate_limited``), oversized frames and headers
(1009 / HTTP 4xx), slowloris (``--open-timeout``), path traversal through
``hello`` and through raw HTTP, a wrong token tried hundreds of times, and
cross-site WebSocket hijacking (``--allowed-origin``). Each test records what it
measured (:class:`attacks.Figures`; ``pytest -s`` shows it).
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any, Final

import pytest
from attacks import (
    CONTINUATION,
    TEXT,
    Figures,
    HandshakeRefused,
    Prober,
    WsSocket,
    bounded_gather,
    encode_frame,
    http_exchange,
    raise_open_files,
    rss_mib,
    text_frame,
    upgrade_request,
    wait_for_metric,
)
from conftest import ClientFactory, ProcessFactory, ServerFactory
from servers import TIMEOUT, Frame, ServerProcess, Stamps, http_get, metrics
from websockets.frames import CloseCode

MIB: Final = 1 << 20
RSS_SLACK_MIB: Final = 30.0
"""How far the server's RSS may grow during an attack that should cost it nothing lasting."""
PROMPT: Final = 1.0
"""Seconds the bystander may wait for any one answer during an attack (scaled)."""


async def started(make: ProcessFactory, *args: str) -> ServerProcess:
    """A running ``syncd serve`` with ``args``."""
    server = make(None, *args)
    await server.start()
    return server


def pid_of(server: ServerProcess) -> int:
    """The server process's id."""
    assert server.process is not None
    return server.process.pid


# -- 1. a thousand idle connections ----------------------------------------------------------

IDLE: Final = 1000
IDLE_DOCS: Final = 50
"""The idle clients share 50 documents, 20 each. (All on one document, each join's
presence goes to every client already there: joining takes ~9 s instead of ~1 s.)"""


@pytest.mark.slow
async def test_a_thousand_idle_connections(server_process: ProcessFactory) -> None:
    raise_open_files(2 * IDLE + 256)
    server = await started(server_process)
    pid = pid_of(server)
    figures = Figures("idle_connections")
    figures["rss_start_mib"] = rss_mib(pid)

    async def idle(i: int) -> WsSocket:
        ws = await WsSocket.open(server.port)
        await ws.hello(doc=f"idle-{i % IDLE_DOCS}", node=f"idle-{i}")
        return ws

    with Prober(server.url) as prober:
        started_at = time.perf_counter()
        sockets = await bounded_gather((idle(i) for i in range(IDLE)), 100)
        figures["open_seconds"] = time.perf_counter() - started_at
        held = await metrics(server.port)
        assert held["syncd_connections"] == IDLE + 1
        figures["connections_held"] = held["syncd_connections"]
        figures["rss_with_1000_mib"] = rss_mib(pid)
        # Every one of them is still served: a ping each, answered.
        started_at = time.perf_counter()
        pongs = await bounded_gather((ws.ping(i) for i, ws in enumerate(sockets)), 100)
        figures["ping_all_seconds"] = time.perf_counter() - started_at
        assert [p["type"] for p in pongs] == ["pong"] * IDLE
        await prober.check(PROMPT)
        figures["prober_rounds"] = len(prober.latencies)
        figures["prober_worst_s"] = prober.worst
    for ws in sockets:
        await ws.close()
    await wait_for_metric(server.port, "syncd_connections", lambda v: v == 0)
    figures["rss_after_close_mib"] = rss_mib(pid)
    figures.report()


# -- 2. a flood of hellos ---------------------------------------------------------------------

HELLOS: Final = 2000


async def visit(port: int, doc: str, node: str, **hello: Any) -> Frame:
    """Connect, say hello, leave: the welcome."""
    ws = await WsSocket.open(port)
    try:
        frames = await ws.hello(doc=doc, node=node, **hello)
    finally:
        await ws.close()
    return frames[0]


@pytest.mark.slow
async def test_a_flood_of_hellos(server_process: ProcessFactory) -> None:
    server = await started(server_process)
    pid = pid_of(server)
    figures = Figures("hello_flood")
    figures["rss_start_mib"] = rss_mib(pid)
    with Prober(server.url) as prober:
        started_at = time.perf_counter()
        welcomes = await bounded_gather(
            # Half to one document, half each to a document of its own.
            (
                visit(server.port, "busy" if i % 2 else f"new-{i}", f"flood-{i}")
                for i in range(HELLOS)
            ),
            50,
        )
        figures["hellos"] = HELLOS
        figures["seconds"] = time.perf_counter() - started_at
        assert all(w["type"] == "welcome" and w["seq"] == 0 for w in welcomes)
        await prober.check(PROMPT)
        figures["prober_worst_s"] = prober.worst
        await wait_for_metric(server.port, "syncd_connections", lambda v: v == 1)
    figures["rss_end_mib"] = rss_mib(pid)
    figures.report()


async def test_a_second_hello_is_bad_message_and_the_connection_stays(
    server_process: ProcessFactory,
) -> None:
    server = await started(server_process)
    ws = await WsSocket.open(server.port)
    await ws.hello(doc="again", node="twice")
    for i in range(200):
        await ws.send({"type": "hello", "v": 1, "doc": f"other-{i}", "node": "twice"})
    for _ in range(200):
        error = await ws.recv()
        assert error["type"] == "error" and error["code"] == "bad_message", error
    assert (await ws.ping(1))["type"] == "pong"
    ack = await write_one(ws, Stamps("twice"), "k", 1, id=2)
    assert ack["seq"] == 1
    # It still serves its first document, not one of the others.
    assert (await visit(server.port, "again", "check"))["seq"] == 1
    await ws.close()


async def write_one(ws: WsSocket, stamps: Stamps, key: str, value: Any, id: int) -> Frame:
    """Write one entry and wait for its answer."""
    await ws.send({"type": "ops", "id": id, "ops": [stamps.set(key, value)]})
    return await ws.until(lambda f: f["type"] in ("ack", "error") and f.get("id") == id)


def files_under(root: Path) -> set[str]:
    """Every file below ``root``, as paths relative to it."""
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}


async def test_visits_without_writes_leave_no_files(server_process: ProcessFactory) -> None:
    """A document nobody wrote to is not created on disk."""
    server = await started(server_process, "--token", "rw", "--read-token", "ro")
    await bounded_gather(
        (visit(server.port, f"looked-at-{i}", f"v{i}", token="rw") for i in range(200)),
        50,
    )
    await bounded_gather(
        (visit(server.port, f"read-{i}", f"r{i}", token="ro") for i in range(50)), 50
    )
    writer = await WsSocket.open(server.port)
    await writer.hello(doc="written", node="w", token="rw")
    assert (await write_one(writer, Stamps("w"), "k", 1, id=1))["type"] == "ack"
    await writer.close()
    # A read-only visit to a written document adds no file either.
    await visit(server.port, "written", "r", token="ro")
    server.signal(15)
    assert await server.wait() == 0
    docs = files_under(server.data / "docs")
    assert not {f for f in docs if not f.startswith("written.")}, sorted(docs)[:10]
    assert "written.json" in docs or any(f.endswith(".log") for f in docs), docs


# -- 3. ten thousand frames a second ----------------------------------------------------------

FLOOD: Final = 10_000
BATCHES: Final = 20
RATE: Final = 1000
BURST: Final = 2000


def flood_frames(stamps: Stamps) -> list[tuple[Frame, int | None]]:
    """The flood: pings with and without id, and one-entry writes, each with its id."""
    frames: list[tuple[Frame, int | None]] = []
    for i in range(FLOOD):
        if i % 10 == 0:
            frames.append(({"type": "ops", "id": i, "ops": [stamps.set(f"k{i}", i)]}, i))
        elif i % 10 == 5:
            frames.append(({"type": "ping"}, None))
        else:
            frames.append(({"type": "ping", "id": i}, i))
    return frames


@pytest.mark.slow
async def test_ten_thousand_frames_a_second_are_rate_limited(
    server_process: ProcessFactory, connect: ClientFactory
) -> None:
    """``--rate-limit`` and ``--rate-burst`` (defaults 1000 and 2000)."""
    server = await started(server_process)
    pid = pid_of(server)
    figures = Figures("frame_flood")
    flooder = await WsSocket.open(server.port)
    await flooder.hello(doc="flooded", node="flooder")
    stamps = Stamps("flooder")
    frames = flood_frames(stamps)
    batch = FLOOD // BATCHES
    payloads = [
        b"".join(text_frame(f) for f, _ in frames[b * batch : (b + 1) * batch])
        for b in range(BATCHES)
    ]
    answers: list[Frame] = []

    async def read_answers() -> None:
        for _ in range(FLOOD):
            answers.append(await flooder.recv(timeout=4 * TIMEOUT))

    rss_before = rss_mib(pid)
    with Prober(server.url) as prober:
        reading = asyncio.create_task(read_answers())
        started_at = time.perf_counter()
        for b, payload in enumerate(payloads):  # 10,000 frames in one second, in 20 bursts
            flooder.write(payload)
            await flooder.drain()
            await asyncio.sleep(max(0.0, started_at + (b + 1) / BATCHES - time.perf_counter()))
        sent_seconds = time.perf_counter() - started_at
        async with asyncio.timeout(6 * TIMEOUT):
            await reading
        elapsed = time.perf_counter() - started_at
        await prober.check(PROMPT)
        figures["prober_worst_s"] = prober.worst
    figures["rss_growth_mib"] = rss_mib(pid) - rss_before
    assert rss_mib(pid) <= rss_before + RSS_SLACK_MIB

    limited = [a for a in answers if a["type"] == "error"]
    assert {a["code"] for a in limited} <= {"rate_limited"}, {a["code"] for a in limited}
    ids_sent = sorted(i for _, i in frames if i is not None)
    ids_answered = sorted(a["id"] for a in answers if "id" in a)
    assert ids_answered == ids_sent, "every frame with an id is answered once, with its id"
    assert sum(1 for a in answers if "id" not in a) == FLOOD // 10, "and every other one too"
    accepted = FLOOD - len(limited)
    figures.values.update(
        sent=FLOOD,
        send_seconds=round(sent_seconds, 2),
        answered_seconds=round(elapsed, 2),
        accepted=accepted,
        rate_limited=len(limited),
    )
    # A token bucket: the burst at once, then the rate (with slack for timing).
    assert BURST - 10 <= accepted <= BURST + RATE * elapsed + 10, (accepted, elapsed)

    # Nothing of a rejected write was applied; every accepted one was.
    acked = {a["id"] for a in answers if a["type"] == "ack"}
    refused = {a["id"] for a in limited if "id" in a and a["id"] % 10 == 0}
    assert acked and refused and acked.isdisjoint(refused)
    reader = await connect(server.url, "checker")
    state = (await reader.hello(doc="flooded")).state
    assert set(state) == {f"k{i}" for i in acked}
    figures["writes_acked"], figures["writes_refused"] = len(acked), len(refused)

    # The flooder was never closed: after a pause it is served again.
    await asyncio.sleep(0.5)
    assert (await flooder.ping(FLOOD + 1))["type"] == "pong"
    ack = await write_one(flooder, stamps, "after", 1, id=FLOOD + 2)
    assert ack["type"] == "ack" and ack["applied"] == 1
    figures.report()


async def test_rate_limit_small_numbers(make_server: ServerFactory) -> None:
    """Burst 5, then 10 a second; per connection."""
    server = await make_server(rate_limit=10, rate_burst=5)
    ws = await WsSocket.open(server.port)
    await ws.hello(node="fast")
    other = await WsSocket.open(server.port)
    await other.hello(node="other")
    ws.write(b"".join(text_frame({"type": "ping", "id": i}) for i in range(30)))
    await ws.drain()
    answers = [await ws.until(lambda f: f["type"] in ("pong", "error")) for _ in range(30)]
    pongs = [a["id"] for a in answers if a["type"] == "pong"]
    limited = [a for a in answers if a["type"] == "error"]
    assert 4 <= len(pongs) <= 7, pongs
    assert all(a["code"] == "rate_limited" and a["message"] for a in limited), limited
    assert sorted(pongs + [a["id"] for a in limited]) == list(range(30))
    # Another connection has a bucket of its own.
    assert (await other.ping(1))["type"] == "pong"
    # A rejected write applied nothing, and may be sent again after a pause.
    stamps = Stamps("fast")
    entry = stamps.set("k", "v")
    ws.write(b"".join(text_frame({"type": "ops", "id": 100 + i, "ops": [entry]}) for i in range(8)))
    await ws.drain()
    answers = [await ws.until(lambda f: f.get("id", -1) >= 100) for _ in range(8)]
    assert {(a["type"], a["code"]) for a in answers} == {("error", "rate_limited")}, answers
    await asyncio.sleep(0.6)
    await ws.send({"type": "ops", "id": 200, "ops": [entry]})
    ack = await ws.until(lambda f: f.get("id") == 200)
    assert ack == {"type": "ack", "id": 200, "seq": 1, "applied": 1, "ignored": 0}


async def test_rate_limit_zero_is_off(make_server: ServerFactory) -> None:
    server = await make_server(rate_limit=0, rate_burst=1)
    ws = await WsSocket.open(server.port)
    await ws.hello(node="fast")
    count = 3000
    ws.write(b"".join(text_frame({"type": "ping", "id": i}) for i in range(count)))
    await ws.drain()
    answers = [await ws.recv() for _ in range(count)]
    assert [a["type"] for a in answers] == ["pong"] * count


# -- 4. oversized frames and headers ----------------------------------------------------------


async def over_the_limit(port: int, frames: list[bytes]) -> int | None:
    """Send ``frames`` after a hello (stopping when the server closes); its close code."""
    ws = await WsSocket.open(port)
    await ws.hello(node="big")
    closing = asyncio.create_task(ws.closed(timeout=4 * TIMEOUT))
    try:
        for frame in frames:
            if closing.done():
                break
            ws.write(frame)
            await ws.drain()
    except ConnectionError:
        pass
    code, _ = await closing
    ws.abort()
    return code


def endless_fragments(total: int, size: int = 64 * 1024) -> list[bytes]:
    """One text message in fragments of ``size`` bytes, ``total`` bytes in all, never finished."""
    chunk = b"x" * size
    first = encode_frame(TEXT, b'{"type":"ping","pad":"' + chunk[22:], fin=False)
    return [first] + [encode_frame(CONTINUATION, chunk, fin=False)] * (total // size - 1)


def absurd_length() -> bytes:
    """A frame header declaring 2^40 bytes of payload, then a few bytes of it."""
    return bytes([0x81, 0x80 | 127]) + (1 << 40).to_bytes(8, "big") + b"\0\0\0\0" + b"{" * 100


@pytest.mark.slow
async def test_oversized_frames_and_headers(server_process: ProcessFactory) -> None:
    server = await started(server_process)
    pid = pid_of(server)
    figures = Figures("oversized")
    at_limit = json.dumps({"type": "ping", "id": 7, "pad": ""})
    at_limit = at_limit.replace('""', '"' + "x" * (MIB - len(at_limit)) + '"')
    baseline = rss_mib(pid)
    figures["rss_start_mib"] = baseline
    with Prober(server.url) as prober:
        # Exactly 1 MiB is fine; one byte more closes with 1009.
        ws = await WsSocket.open(server.port)
        await ws.hello(node="limit")
        ws.write(encode_frame(TEXT, at_limit.encode()))
        assert (await ws.until(lambda f: f.get("id") == 7))["type"] == "pong"
        ws.write(encode_frame(TEXT, at_limit.encode() + b" "))
        assert (await ws.closed())[0] == CloseCode.MESSAGE_TOO_BIG
        ws.abort()
        started_at = time.perf_counter()
        codes = await asyncio.gather(
            *(over_the_limit(server.port, endless_fragments(64 * MIB)) for _ in range(8)),
            *(over_the_limit(server.port, [absurd_length()]) for _ in range(8)),
        )
        figures["oversized_seconds"] = time.perf_counter() - started_at
        assert codes == [CloseCode.MESSAGE_TOO_BIG] * 16
        figures["rss_after_frames_mib"] = rss_mib(pid)

        # Headers: one huge line, too many lines, a megabyte of them.
        huge_line = upgrade_request(server.port, {"X-Filler": "a" * (256 * 1024)})
        many = upgrade_request(server.port, {f"X-H{i}": "v" for i in range(1000)})
        endless = upgrade_request(server.port, {f"X-H{i}": "v" * 1000 for i in range(4000)})
        for request in (huge_line, many, endless):
            answers = await asyncio.gather(*(http_exchange(server.port, request) for _ in range(8)))
            for answer in answers:
                assert answer is None or 400 <= answer.status < 500, answer
                assert answer is None or answer.status != 101
        figures["header_answers"] = sorted({a.status if a else "hung up" for a in answers})
        await prober.check(PROMPT)
        figures["prober_worst_s"] = prober.worst
    assert (await http_get(server.port, "/healthz")).status == 200
    after = rss_mib(pid)
    figures["rss_end_mib"] = after
    figures.report()
    assert after <= baseline + RSS_SLACK_MIB


# -- 5. slowloris ---------------------------------------------------------------------------------

SLOW_SOCKETS: Final = 200
OPEN_TIMEOUT: Final = 2.0


async def drip(port: int, silent: bool, budget: float) -> float | None:
    """Open a connection and send a request line, then a header byte a second (or, if
    ``silent``, nothing at all); seconds until the server hung up (``None``: never did)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started_at = time.perf_counter()
    try:
        if not silent:
            writer.write(f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nX-Slow: ".encode())
        for _ in range(int(budget) + 1):
            try:
                data = await asyncio.wait_for(reader.read(1024), 1.0)
            except TimeoutError:
                if not silent:
                    writer.write(b"a")
                continue
            except ConnectionError:
                return time.perf_counter() - started_at
            if not data:
                return time.perf_counter() - started_at
            raise AssertionError(f"the server answered an unfinished request: {data[:100]!r}")
        return None
    finally:
        writer.transport.abort()


@pytest.mark.slow
async def test_slowloris_is_cut_after_the_open_timeout(server_process: ProcessFactory) -> None:
    """``--open-timeout``: unfinished handshakes are cut."""
    raise_open_files(SLOW_SOCKETS * 2 + 256)
    server = await started(server_process, "--open-timeout", str(OPEN_TIMEOUT))
    figures = Figures("slowloris")
    budget = OPEN_TIMEOUT + 6
    with Prober(server.url) as prober:
        dripping = asyncio.gather(
            *(drip(server.port, i % 4 == 0, budget) for i in range(SLOW_SOCKETS))
        )
        await asyncio.sleep(OPEN_TIMEOUT / 2)
        # Meanwhile, newcomers are served.
        assert (await visit(server.port, "meanwhile", "newcomer"))["type"] == "welcome"
        assert (await http_get(server.port, "/healthz")).status == 200
        cut = await dripping
        await prober.check(PROMPT)
        figures["prober_worst_s"] = prober.worst
    never = sum(1 for c in cut if c is None)
    assert never == 0, f"{never} of {SLOW_SOCKETS} slow connections were never cut"
    times = [c for c in cut if c is not None]
    figures.values.update(
        sockets=SLOW_SOCKETS,
        open_timeout=OPEN_TIMEOUT,
        cut_after_min_s=round(min(times), 2),
        cut_after_max_s=round(max(times), 2),
    )
    figures.report()
    assert min(times) >= OPEN_TIMEOUT - 0.2
    assert max(times) <= OPEN_TIMEOUT + 2.5


# -- 6. path traversal ---------------------------------------------------------------------------

BAD_DOCS: Final = [
    "../../etc/passwd",
    "..",
    ".",
    "...",
    "a/b",
    "/etc/passwd",
    "..\\..\\windows",
    "a\\b",
    "%2e%2e",
    "%2e%2e%2fetc",
    "a\x00b",
    "\x00",
    "d" * 129,
    "d" * 100_000,
    "doc\n",
    " doc",
    "ｄｏｃ",
    "..%2f..%2f",
]


async def test_document_names_cannot_escape_the_data_directory(
    server_process: ProcessFactory, tmp_path: Path
) -> None:
    server = await started(server_process)
    before = files_under(tmp_path)
    with Prober(server.url) as prober:
        for name in BAD_DOCS:
            ws = await WsSocket.open(server.port)
            await ws.send({"type": "hello", "v": 1, "doc": name, "node": "evil"})
            code, frames = await ws.closed()
            assert code == CloseCode.POLICY_VIOLATION, name
            assert [f["code"] for f in frames] == ["bad_message"], (name, frames)
        await prober.check(PROMPT)
    # The longest valid name works, and lives in the data directory.
    longest = "d" * 128
    ws = await WsSocket.open(server.port)
    await ws.hello(doc=longest, node="fine")
    assert (await write_one(ws, Stamps("fine"), "k", 1, id=1))["type"] == "ack"
    await ws.close()
    new = files_under(tmp_path) - before
    data = str(server.data.relative_to(tmp_path))
    logs = str(server.logs.relative_to(tmp_path))
    outside = {f for f in new if not f.startswith((data + "/", logs + "/"))}
    assert not outside, outside
    docs = files_under(server.data / "docs")
    assert all(f.startswith((longest + ".", "bystander.")) for f in docs), docs


PASSWD = Path("/etc/passwd").read_bytes()
SECRET = b'[build-system]\nrequires = ["a secret two folders above the web root"]\n'
"""A file two folders above the served web client, as ``pyproject.toml`` is above
``web-client/dist`` in a checkout."""

RAW_PATHS: Final = [
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "//etc/passwd",
    "/..%2f..%2fetc/passwd",
    "/../../../../../../../../etc/passwd",
    "/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/..%2f..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
    "/%2fetc%2fpasswd",
    "/../../pyproject.toml",
    "/..%2f..%2fpyproject.toml",
    "/.%2e/.%2e/pyproject.toml",
    "/%2E%2E/%2E%2E/pyproject.toml",
    "/%252e%252e/%252e%252e/pyproject.toml",
    "/..\\..\\pyproject.toml",
    "/%2e%2e%5c%2e%2e%5cpyproject.toml",
    "/%c0%ae%c0%ae/%c0%ae%c0%ae/pyproject.toml",
    "/assets/../../../pyproject.toml",
    "/index.html/../../../pyproject.toml",
    "../../pyproject.toml",
    "http://127.0.0.1/../../pyproject.toml",
    "/%00",
    "/index.html%00.js",
    "/" + "a" * 5000,
]


async def test_raw_http_paths_cannot_escape_the_web_client(
    make_server: ServerFactory, tmp_path: Path
) -> None:
    checkout = tmp_path / "checkout"
    web_root = checkout / "web-client" / "dist"
    web_root.mkdir(parents=True)
    (web_root / "index.html").write_text("<!doctype html><title>syncd</title>\n")
    (checkout / "pyproject.toml").write_bytes(SECRET)
    server = await make_server(web_root=web_root)
    index = await http_get(server.port, "/")
    assert index.status == 200, "the web client is built and served"
    for path in RAW_PATHS:
        request = f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
        answer = await http_exchange(server.port, request.encode("latin-1"))
        assert answer is not None, path
        assert answer.status == 404, (path, answer.status, answer.body[:200])
        assert PASSWD[:40] not in answer.body and b"root:" not in answer.body, path
        assert SECRET[:40] not in answer.body and b"[build-system]" not in answer.body, path
    assert (await http_get(server.port, "/healthz")).status == 200


# -- 7. a wrong token, hundreds of times ---------------------------------------------------------

ATTEMPTS: Final = 300


async def try_token(port: int, token: str | None) -> tuple[int | None, list[Frame]]:
    ws = await WsSocket.open(port)
    hello: Frame = {"type": "hello", "v": 1, "node": "guess"}
    if token is not None:
        hello["token"] = token
    await ws.send(hello)
    try:
        return await ws.closed()
    finally:
        ws.abort()


@pytest.mark.slow
async def test_a_wrong_token_tried_hundreds_of_times(server_process: ProcessFactory) -> None:
    server = await started(server_process, "--token", "s3cret", "--read-token", "r3ad")
    figures = Figures("wrong_tokens")
    guesses = [None, "", "s3cre", "s3cret ", "S3CRET", "s3cret\x00", "r3ad-", "x" * 10_000]
    guesses += [f"guess-{i}" for i in range(ATTEMPTS - len(guesses))]
    with Prober(server.url, token="s3cret") as prober:
        started_at = time.perf_counter()
        results = await bounded_gather((try_token(server.port, g) for g in guesses), 25)
        figures["attempts"] = len(guesses)
        figures["seconds"] = time.perf_counter() - started_at
        for guess, (code, frames) in zip(guesses, results, strict=True):
            assert code == CloseCode.POLICY_VIOLATION, guess
            assert [f["code"] for f in frames] == ["unauthorized"], (guess, frames)
        # The right tokens still work.
        ws = await WsSocket.open(server.port)
        assert (await ws.hello(node="right", token="s3cret"))[0]["readonly"] is False
        ro = await WsSocket.open(server.port)
        assert (await ro.hello(node="reader", token="r3ad"))[0]["readonly"] is True
        await prober.check(PROMPT)
        figures["prober_worst_s"] = prober.worst
    counted = (await metrics(server.port)).get('syncd_errors_total{code="unauthorized"}')
    assert counted == len(guesses)
    figures.report()


# -- 8. cross-site WebSocket hijacking ------------------------------------------------------------

LISTED: Final = ("http://app.example:5173", "https://other.example")


def origin_cases(port: int) -> list[tuple[dict[str, str], int]]:
    """(headers, expected status) for a server allowing :data:`LISTED`."""
    own = f"127.0.0.1:{port}"
    return [
        ({}, 101),  # no Origin: the CLI, a script
        ({"Origin": f"http://{own}"}, 101),  # the server's own web client
        ({"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}, 101),
        ({"Origin": "http://app.example:5173"}, 101),
        ({"Origin": "https://other.example"}, 101),
        ({"Host": f"localhost:{port}", "Origin": f"http://{own}"}, 403),
        ({"Origin": f"http://localhost:{port}"}, 403),
        ({"Origin": f"http://127.0.0.1:{port + 1}"}, 403),
        ({"Origin": "http://127.0.0.1"}, 403),
        ({"Origin": f"http://{own}.evil.example"}, 403),
        ({"Origin": "http://evil.example"}, 403),
        ({"Origin": "https://evil.example"}, 403),
        ({"Origin": "http://app.example:5174"}, 403),
        ({"Origin": "http://app.example"}, 403),
        ({"Origin": "https://app.example:5173"}, 403),
        ({"Origin": "http://other.example"}, 403),
        ({"Origin": "null"}, 403),
        # DNS rebinding: the page's own name now points here, Host and Origin agree.
        ({"Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"}, 403),
    ]


async def test_cross_site_websocket_hijacking_is_refused(
    make_server: ServerFactory, connect: ClientFactory
) -> None:
    server = await make_server(allowed_origins=LISTED)
    bystander = await connect(server.url, "by")
    await bystander.hello()
    wrong = []
    for headers, expected in origin_cases(server.port):
        answer = await http_exchange(server.port, upgrade_request(server.port, headers))
        status = answer.status if answer else None
        if status != expected:
            wrong.append((headers, status, expected))
        if expected == 101 and status == 101:
            # A real WebSocket: it says hello and is welcomed.
            ws = await WsSocket.open(server.port, headers)
            assert (await ws.hello(node="allowed"))[0]["type"] == "welcome"
            await ws.close()
    assert not wrong, wrong
    # Refused handshakes cost the others nothing.
    assert [f["type"] for f in await bystander.ping()][-1] == "pong"


async def test_allowed_origin_star_allows_any(make_server: ServerFactory) -> None:
    server = await make_server(allowed_origins=("*",))
    for origin in ("http://evil.example", "null", f"http://localhost:{server.port}"):
        ws = await WsSocket.open(server.port, {"Origin": origin})
        assert (await ws.hello(node="any"))[0]["type"] == "welcome"
        await ws.close()


async def test_a_refused_origin_gets_no_websocket(server_process: ProcessFactory) -> None:
    """The default (no ``--allowed-origin``) refuses a foreign page."""
    server = await started(server_process)
    with pytest.raises(HandshakeRefused) as refused:
        await WsSocket.open(server.port, {"Origin": "http://evil.example"})
    assert refused.value.answer.status == 403
    ws = await WsSocket.open(server.port, {"Origin": f"http://127.0.0.1:{server.port}"})
    assert (await ws.hello(node="own"))[0]["type"] == "welcome"
    assert (await ws.ping(1))["type"] == "pong"
    await ws.close()
