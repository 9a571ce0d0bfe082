"""Presence in ticks without sockets (:mod:`syncd.presence`): whatever the joins,
leaves, reconnects and cluster changes within a tick, every client's peers are
right once it has the tick's frame, and no client is ever told about itself.
:class:`~syncd.protocol.NodeArray`'s slices are exactly what encoding anew gives.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from hypothesis import given
from hypothesis import strategies as st

from syncd.presence import Roster
from syncd.protocol import NodeArray, presence_frame

NODES = st.sampled_from(["a", "b", "c", "d", "é", 'q"'])


@given(st.lists(NODES, unique=True), st.data())
def test_node_array_slices_encode_like_a_fresh_array(nodes: list[str], data: st.DataObject) -> None:
    array = NodeArray(nodes)
    assert json.loads(array.json) == nodes
    node = data.draw(NODES)
    rest = array.without(node)
    assert rest.nodes == tuple(n for n in nodes if n != node)
    assert rest.json == NodeArray(rest.nodes).json
    start = data.draw(st.integers(0, len(nodes) + 1))
    assert array.suffix(start).json == NodeArray(nodes[start:]).json
    if node not in nodes:
        assert array.plus(node).json == NodeArray([*nodes, node]).json
    more = data.draw(st.lists(NODES.filter(lambda n: n not in nodes), unique=True))
    assert array.concat(NodeArray(more)).json == NodeArray([*nodes, *more]).json


def test_presence_frame_leaves_out_empty_lists() -> None:
    assert presence_frame(joined=NodeArray(["x"]), left=NodeArray()) == (
        '{"type":"presence","joined":["x"]}'
    )
    assert json.loads(presence_frame(joined=["a"], left=["b"])) == {
        "type": "presence",
        "joined": ["a"],
        "left": ["b"],
    }


@dataclass
class Client:
    """A connection as the room sees it, and the peers as it knows them."""

    node: str
    version: int
    peers: set[str]


ACTIONS = st.lists(
    st.one_of(
        st.tuples(st.just("join"), NODES),
        st.tuples(st.just("leave"), st.integers(0, 20)),
        st.tuples(st.just("remote_join"), NODES),
        st.tuples(st.just("remote_leave"), NODES),
        st.tuples(st.just("tick"), st.just("")),
    ),
    max_size=80,
)


@given(ACTIONS)
def test_every_client_knows_the_peers_after_each_tick(actions: list[tuple[str, object]]) -> None:
    remote = {"r"}
    roster = Roster(remote)
    clients: list[Client] = []

    def present() -> set[str]:
        return {c.node for c in clients} | remote

    def tick() -> None:
        announcement = roster.announce()
        for client in clients:
            frame = announcement.frame_for(client.node, client.version) if announcement else None
            if frame is None:
                continue
            parsed = json.loads(frame)
            assert parsed["type"] == "presence" and ("joined" in parsed or "left" in parsed)
            assert client.node not in parsed.get("joined", []), "told about itself"
            client.peers |= set(parsed.get("joined", []))
            client.peers -= set(parsed.get("left", []))
        assert not roster.changed
        for client in clients:
            assert client.peers == present() - {client.node}, client

    for action, argument in actions:
        if action == "join":
            assert isinstance(argument, str)
            peers = roster.peers(argument)
            assert json.loads(b"".join(peers.pieces())) == list(peers.nodes)
            assert json.loads(peers.json) == list(peers.nodes)
            assert set(peers.nodes) == present() - {argument}, "welcome.peers is current"
            roster.connect(argument)
            clients.append(Client(argument, roster.version, set(peers.nodes)))
        elif action == "leave" and clients:
            assert isinstance(argument, int)
            gone = clients.pop(argument % len(clients))
            roster.disconnect(gone.node)
        elif action == "remote_join" and argument not in remote:
            assert isinstance(argument, str)
            remote.add(argument)
            roster.remote_changed([argument], [])
        elif action == "remote_leave" and argument in remote:
            assert isinstance(argument, str)
            remote.discard(argument)
            roster.remote_changed([], [argument])
        elif action == "tick":
            tick()
        assert roster.local_nodes == sorted({c.node for c in clients})
    tick()


def test_a_reconnect_within_a_tick_tells_the_others_nothing() -> None:
    roster = Roster()
    roster.connect("a")
    roster.connect("b")
    settled = roster.version
    announcement = roster.announce()
    assert announcement is not None
    roster.disconnect("b")
    roster.connect("b")
    announcement = roster.announce()
    assert announcement is not None and announcement.frame_for("a", settled) is None


def test_a_second_connection_changes_nothing() -> None:
    roster = Roster()
    roster.connect("a")
    roster.announce()
    roster.connect("a")
    assert not roster.changed
    assert roster.peers("a").nodes == ()
