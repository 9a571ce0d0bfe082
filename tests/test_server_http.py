"""The plain-HTTP side of the port (contract §3, §7): /healthz, /metrics and the web client."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from conftest import ClientFactory, ServerFactory
from servers import REPO, http_get, metrics

import syncd
from syncd.server import WEB_ROOT, ServerConfig, SyncServer

CONTRACT_METRICS = [
    "syncd_connections",
    "syncd_documents",
    "syncd_ops_applied_total",
    "syncd_ops_ignored_total",
    "syncd_commits_total",
    "syncd_commit_seconds_count",
    "syncd_commit_seconds_sum",
    'syncd_commit_seconds_bucket{le="+Inf"}',
    "syncd_queue_drops_total",
    "syncd_clock_skew_rejections_total",
]


async def test_healthz_needs_no_token(make_server: ServerFactory) -> None:
    server = await make_server(token="secret", read_token="reader")
    for path in ("/healthz", "/healthz?probe=1"):
        answer = await http_get(server.port, path)
        assert answer.status == 200
        assert answer.body.strip() == b"ok"


async def test_metrics_lists_every_contract_metric(server: SyncServer) -> None:
    answer = await http_get(server.port, "/metrics")
    assert answer.status == 200
    assert answer.headers["content-type"].startswith("text/plain")
    text = answer.body.decode()
    assert "# TYPE syncd_commit_seconds histogram" in text
    for name in ("connections", "documents"):
        assert f"# TYPE syncd_{name} gauge" in text
    for name in ("ops_applied", "ops_ignored", "commits", "queue_drops", "clock_skew_rejections"):
        assert (
            f"# TYPE syncd_{name}_total counter" in text or f"# TYPE syncd_{name} counter" in text
        )
    values = await metrics(server.port)
    for name in CONTRACT_METRICS:
        assert name in values, name
    assert all(name.startswith("syncd_") for name in values)


async def test_metrics_name_the_version_of_pyproject_toml(server: SyncServer) -> None:
    with (REPO / "pyproject.toml").open("rb") as file:
        version = tomllib.load(file)["project"]["version"]
    assert syncd.__version__ == version
    values = await metrics(server.port)
    assert values[f'syncd_build_info{{version="{version}"}}'] == 1
    assert (await http_get(server.port, "/healthz")).body == b"ok\n"


async def test_metrics_count(server: SyncServer, connect: ClientFactory) -> None:
    before = await metrics(server.port)
    assert before["syncd_connections"] == 0 and before["syncd_documents"] == 0
    writer = await connect(server.url, "w")
    await writer.hello(doc="one")
    reader = await connect(server.url, "r")
    await reader.hello(doc="one")
    other = await connect(server.url, "o")
    await other.hello(doc="two")
    now = await metrics(server.port)
    assert now["syncd_connections"] == 3 and now["syncd_documents"] == 2
    a, b = writer.stamps.set("a", 1), writer.stamps.set("b", 2)
    assert (await writer.write([a, b]))["applied"] == 2
    assert (await writer.write([a, writer.stamps.set("c", 3)]))["ignored"] == 1
    after = await metrics(server.port)

    def grew(name: str) -> float:
        return after[name] - before[name]

    assert grew("syncd_ops_applied_total") == 3
    assert grew("syncd_ops_ignored_total") == 1
    assert grew("syncd_commits_total") in (1, 2), "group commit may batch both"
    assert grew("syncd_commit_seconds_count") == grew("syncd_commits_total")
    assert grew('syncd_commit_seconds_bucket{le="+Inf"}') == grew("syncd_commits_total")
    assert after["syncd_commit_seconds_sum"] > 0
    await reader.close()
    assert await writer.recv() == {"type": "presence", "left": ["r"]}
    assert (await metrics(server.port))["syncd_connections"] == 2


async def test_no_web_client_is_a_404_page(server: SyncServer) -> None:
    for path in ("/", "/index.html", "/assets/app.js"):
        answer = await http_get(server.port, path)
        assert answer.status == 404, path
        assert b"web client is not built" in answer.body


async def test_the_packaged_web_client_is_served_by_default(make_server: ServerFactory) -> None:
    assert ServerConfig().web_root == WEB_ROOT == Path(syncd.__file__).parent / "web"
    index = WEB_ROOT / "index.html"
    assert index.is_file(), f"{index} is missing: run `make build-web`"
    server = await make_server(web_root=WEB_ROOT)
    answer = await http_get(server.port, "/")
    assert answer.status == 200 and answer.body == index.read_bytes()
    assert b"<title>" in answer.body


@pytest.fixture
def web_root(tmp_path: Path) -> Path:
    """A built web client, with a secret beside it and a link pointing out of it."""
    dist = tmp_path / "web" / "dist"
    (dist / "assets").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>syncd</title>")
    (dist / "assets" / "app.js").write_text("console.log('syncd')")
    (tmp_path / "web" / "secret.txt").write_text("TOP SECRET")
    (dist / "link-out").symlink_to(tmp_path / "web" / "secret.txt")
    return dist


async def test_the_web_client_is_served(make_server: ServerFactory, web_root: Path) -> None:
    server = await make_server(web_root=web_root)
    index = await http_get(server.port, "/")
    assert index.status == 200
    assert index.headers["content-type"].startswith("text/html")
    assert index.body == (web_root / "index.html").read_bytes()
    script = await http_get(server.port, "/assets/app.js")
    assert script.status == 200 and script.body == b"console.log('syncd')"
    assert "javascript" in script.headers["content-type"]
    assert (await http_get(server.port, "/assets/missing.js")).status == 404


TRAVERSALS = [
    "/../secret.txt",
    "/../../etc/passwd",
    "/%2e%2e/%2e%2e/etc/passwd",
    "/%2e%2e/secret.txt",
    "/%2E%2E%2Fsecret.txt",
    "/..%2fsecret.txt",
    "/assets/../../secret.txt",
    "/assets/%2e%2e/%2e%2e/secret.txt",
    "/%252e%252e/secret.txt",
    "//etc/passwd",
    "/%2fetc%2fpasswd",
    "/etc/passwd",
    "/link-out",
    "/%00",
    "/index.html%00.js",
    "/" + "a" * 300,
    "/assets/" + "b" * 300 + ".js",
]


@pytest.mark.parametrize("path", TRAVERSALS, ids=[p[:40] for p in TRAVERSALS])
async def test_nothing_is_served_from_outside_the_web_client(
    make_server: ServerFactory, web_root: Path, path: str
) -> None:
    server = await make_server(web_root=web_root)
    answer = await http_get(server.port, path)
    assert answer.status in (400, 404), (path, answer)
    assert b"SECRET" not in answer.body and b"root:" not in answer.body
    assert (await http_get(server.port, "/healthz")).status == 200
