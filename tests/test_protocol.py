"""The server's side of the wire protocol (contract §4–§6), without sockets.

:class:`syncd.protocol.ServerSession` is fed text frames as the WebSocket layer would
hand them over; each test checks the event it returns, or the :class:`ProtocolError`
it raises — its code, the ``id`` it echoes and whether the connection must close.
The frame builders are checked against the contract's own examples, field for field.

Hypothesis adds two properties: no text, however odd, makes ``receive`` raise anything
but a ``ProtocolError``; and every valid ``hello`` comes back with its fields intact.
"""

from __future__ import annotations

import json
from typing import Any, Final

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from websockets.frames import CloseCode

from syncd.crdt import MAX_ID, CrdtError, Document
from syncd.errors import ProtocolError
from syncd.protocol import (
    DEFAULT_DOC,
    DOC_NAME_RULE,
    ERROR_CODES,
    Access,
    DocumentHead,
    Hello,
    HelloEvent,
    OpsEvent,
    PingEvent,
    ServerSession,
    Since,
    as_text,
    check_doc_name,
    entries_frame,
    error_frame,
    handshake,
    message_id,
    pong_frame,
    presence_frame,
    synced_frame,
    valid_doc_name,
    welcome_pieces,
)
from syncd.ratelimit import TokenBucket

MISSING: Final = object()
"""A field value meaning "leave the field out"."""

OPS: Final = (
    '{"type": "ops", "id": 17, "ops": '
    '[{"key": "title", "ts": "1764028800123-00000-tui-3f9a", "value": "hello"}]}'
)
"""A valid ``ops`` frame (contract §5)."""

DEEP: Final = "[" * 100_000 + "]" * 100_000
"""JSON nested deeper than Python's parser goes (the core's frame check accepts it)."""

HUGE_INT: Final = "1" * 5000
"""An integer with more digits than Python's ``int`` parsing allows by default (4300)."""


def hello(**fields: Any) -> str:
    """The contract's example ``hello``, with ``fields`` changed or (``MISSING``) removed."""
    frame: dict[str, Any] = {"type": "hello", "v": 1, "doc": "default", "node": "tui-3f9a"}
    for name, value in fields.items():
        if value is MISSING:
            frame.pop(name, None)
        else:
            frame[name] = value
    return json.dumps(frame)


def opened(access: Access | None = None, **fields: Any) -> ServerSession:
    """A session past a successful handshake."""
    session = ServerSession(access or Access())
    assert isinstance(session.receive(hello(**fields)), HelloEvent)
    return session


def rejected(session: ServerSession, text: str | bytes) -> ProtocolError:
    """The error ``receive`` raises for ``text``."""
    with pytest.raises(ProtocolError) as raised:
        session.receive(text)
    return raised.value


def assert_still_waiting(session: ServerSession) -> None:
    """A failed handshake leaves the session waiting: anything else is still ``not_ready``."""
    assert session.hello is None
    assert rejected(session, OPS).code == "not_ready"


# -- before hello ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "{",
        "{'type': 'hello'}",
        '{"type": "hello", "v": 1, "node": "n"} x',
        '{"type": "hello", "v": NaN, "node": "n"}',
        '{"type": "hello", "v": 1, "node": "n",}',
    ],
)
def test_before_hello_text_that_is_not_json_is_bad_json_and_closes(text: str) -> None:
    session = ServerSession(Access())
    error = rejected(session, text)
    assert (error.code, error.close_code, error.id) == (
        "bad_json",
        CloseCode.POLICY_VIOLATION,
        None,
    )
    assert session.hello is None


@pytest.mark.parametrize(
    "text",
    [
        OPS,
        '{"type": "ping", "id": 3}',
        '{"type": "ping"}',
        '{"type": "welcome", "v": 1}',
        '{"type": "no-such-type"}',
        '{"type": "HELLO", "v": 1, "node": "n"}',
    ],
)
def test_before_hello_another_frame_is_not_ready_and_closes(text: str) -> None:
    session = ServerSession(Access())
    error = rejected(session, text)
    assert (error.code, error.close_code) == ("not_ready", CloseCode.POLICY_VIOLATION)
    assert error.id == json.loads(text).get("id"), "the id of the message it answers, if any"
    assert_still_waiting(session)


@pytest.mark.parametrize("text", ["[]", "42", '"hello"', "null", "{}", '{"type": 1, "v": 1}'])
def test_before_hello_json_that_is_no_frame_is_bad_message_and_closes(text: str) -> None:
    session = ServerSession(Access())
    error = rejected(session, text)
    assert (error.code, error.close_code) == ("bad_message", CloseCode.POLICY_VIOLATION)
    assert_still_waiting(session)


MALFORMED_HELLOS: Final = {
    "missing v": {"v": MISSING},
    "doc empty": {"doc": ""},
    "doc of 129 characters": {"doc": "d" * 129},
    "doc starting with a dot": {"doc": ".hidden"},
    "doc only a dot": {"doc": "."},
    "doc dot-dot": {"doc": ".."},
    "doc with a slash": {"doc": "a/b"},
    "doc with a backslash": {"doc": "a\\b"},
    "doc with a space": {"doc": "a b"},
    "doc non-ASCII": {"doc": "café"},
    "doc with a newline at the end": {"doc": "doc\n"},
    "doc a number": {"doc": 5},
    "doc null": {"doc": None},
    "doc a list": {"doc": ["default"]},
    "node missing": {"node": MISSING},
    "node empty": {"node": ""},
    "node of 65 characters": {"node": "n" * 65},
    "node with a dot": {"node": "a.b"},
    "node with a space": {"node": "a b"},
    "node with NUL": {"node": "a\x00"},
    "node a number": {"node": 7},
    "node null": {"node": None},
    "token a number": {"token": 5},
    "token a list": {"token": ["secret"]},
    "token an object": {"token": {}},
    "token true": {"token": True},
    "token with an unpaired surrogate": {"token": "\ud800"},
    "since a string": {"since": "e-91c2:1234"},
    "since a list": {"since": ["e-91c2", 1234]},
    "since a number": {"since": 1234},
    "since empty": {"since": {}},
    "since without epoch": {"since": {"seq": 1}},
    "since without seq": {"since": {"epoch": "e-91c2"}},
    "since epoch a number": {"since": {"epoch": 5, "seq": 1}},
    "since seq negative": {"since": {"epoch": "e-91c2", "seq": -1}},
    "since seq true": {"since": {"epoch": "e-91c2", "seq": True}},
    "since seq false": {"since": {"epoch": "e-91c2", "seq": False}},
    "since seq fractional": {"since": {"epoch": "e-91c2", "seq": 1.5}},
    "since seq 1.0": {"since": {"epoch": "e-91c2", "seq": 1.0}},
    "since seq a string": {"since": {"epoch": "e-91c2", "seq": "1"}},
    "since seq 2^53": {"since": {"epoch": "e-91c2", "seq": MAX_ID + 1}},
    "since seq 2^64": {"since": {"epoch": "e-91c2", "seq": 2**64}},
}


@pytest.mark.parametrize("fields", MALFORMED_HELLOS.values(), ids=MALFORMED_HELLOS.keys())
def test_a_malformed_hello_is_bad_message_and_closes(fields: dict[str, Any]) -> None:
    session = ServerSession(Access())
    error = rejected(session, hello(**fields))
    assert (error.code, error.close_code, error.id) == (
        "bad_message",
        CloseCode.POLICY_VIOLATION,
        None,
    )
    assert error.message
    assert_still_waiting(session)


@pytest.mark.parametrize(
    "text",
    [
        hello()[:-1] + ', "extra": ' + DEEP + "}",
        hello(doc=MISSING)[:-1] + ', "extra": ' + DEEP + "}",
        hello()[:-1] + ', "extra": ' + HUGE_INT + "}",
        hello(v=MISSING)[:-1] + ', "v": ' + HUGE_INT + "}",
    ],
    ids=["deeply nested field", "deeply nested field, default doc", "huge integer", "huge v"],
)
def test_a_hello_python_cannot_parse_is_bad_message_and_closes(text: str) -> None:
    session = ServerSession(Access())
    error = rejected(session, text)
    assert (error.code, error.close_code) == ("bad_message", CloseCode.POLICY_VIOLATION)
    assert_still_waiting(session)


@pytest.mark.parametrize("version", [2, 0, -1, 1.5, 10**30])
def test_a_hello_of_another_version_is_unsupported_version_and_closes(version: Any) -> None:
    session = ServerSession(Access())
    error = rejected(session, hello(v=version))
    assert (error.code, error.close_code) == ("unsupported_version", CloseCode.POLICY_VIOLATION)
    assert_still_waiting(session)


@pytest.mark.parametrize("version", ["1", True, None, [1], {"major": 1}])
def test_a_v_present_but_not_the_number_1_is_unsupported_version(version: Any) -> None:
    """Contract §4: ``unsupported_version`` "if ``v`` is present and not 1" — whatever its type.

    (Only a *missing* ``v`` is named as ``bad_message``.)
    """
    session = ServerSession(Access())
    error = rejected(session, hello(v=version))
    assert (error.code, error.close_code) == ("unsupported_version", CloseCode.POLICY_VIOLATION)
    assert_still_waiting(session)


def test_the_contract_example_hello_opens_the_session() -> None:
    text = (
        '{"type": "hello", "v": 1, "doc": "default", "node": "tui-3f9a",\n'
        ' "token": "optional secret", "since": {"epoch": "e-91c2", "seq": 1234}}'
    )
    session = ServerSession(Access())
    event = session.receive(text)
    expected = Hello("default", "tui-3f9a", "optional secret", Since("e-91c2", 1234))
    assert event == HelloEvent(expected, readonly=False)
    assert session.hello == expected
    assert session.readonly is False


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"doc": MISSING}, Hello(DEFAULT_DOC, "tui-3f9a")),
        ({"doc": "d" * 128, "node": "n" * 64}, Hello("d" * 128, "n" * 64)),
        ({"doc": "-_.9aZ", "node": "-_9aZ"}, Hello("-_.9aZ", "-_9aZ")),
        ({"since": None, "token": None}, Hello("default", "tui-3f9a")),
        ({"since": {"epoch": "", "seq": 0}}, Hello("default", "tui-3f9a", None, Since("", 0))),
        (
            {"since": {"epoch": "e", "seq": MAX_ID, "extra": 1}},
            Hello("default", "tui-3f9a", None, Since("e", MAX_ID)),
        ),
        ({"token": ""}, Hello("default", "tui-3f9a", "")),
        ({"unknown": [1, {"x": None}], "id": 4}, Hello("default", "tui-3f9a")),
    ],
)
def test_valid_hello_edge_cases(fields: dict[str, Any], expected: Hello) -> None:
    assert ServerSession(Access()).receive(hello(**fields)) == HelloEvent(expected, False)


# -- access and tokens -------------------------------------------------------------------


@pytest.mark.parametrize("token", [MISSING, None, "", "anything", "s" * 10_000])
def test_without_a_token_configured_everyone_is_read_write(token: Any) -> None:
    event = ServerSession(Access()).receive(hello(token=token))
    assert isinstance(event, HelloEvent)
    assert event.readonly is False


@pytest.mark.parametrize(
    ("access", "token", "readonly"),
    [
        (Access("secret"), "secret", False),
        (Access("secret", "reader"), "secret", False),
        (Access("secret", "reader"), "reader", True),
        (Access("sécret ☃"), "sécret ☃", False),
    ],
)
def test_a_configured_token_decides_read_write_or_read_only(
    access: Access, token: str, readonly: bool
) -> None:
    session = ServerSession(access)
    event = session.receive(hello(token=token))
    assert isinstance(event, HelloEvent)
    assert event.readonly is readonly
    assert session.readonly is readonly


@pytest.mark.parametrize(
    ("access", "token"),
    [
        (Access("secret"), MISSING),
        (Access("secret"), None),
        (Access("secret"), ""),
        (Access("secret"), "wrong"),
        (Access("secret"), "secre"),
        (Access("secret"), "secret "),
        (Access("secret"), "SECRET"),
        (Access("secret", "reader"), "reader2"),
        (Access("secret", "reader"), MISSING),
    ],
)
def test_a_wrong_or_missing_token_is_unauthorized_and_closes(access: Access, token: Any) -> None:
    session = ServerSession(access)
    error = rejected(session, hello(token=token))
    assert (error.code, error.close_code) == ("unauthorized", CloseCode.POLICY_VIOLATION)
    assert_still_waiting(session)


def test_a_read_token_without_a_token_is_refused() -> None:
    with pytest.raises(ValueError):
        Access(read_token="reader")


def test_access_readonly_directly() -> None:
    assert Access().readonly(None) is False
    assert Access("t", "r").readonly("r") is True
    assert Access("t", "r").readonly("t") is False
    with pytest.raises(ProtocolError) as raised:
        Access("t").readonly(None)
    assert raised.value.code == "unauthorized"


# -- after hello -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        OPS,
        '  {"ops": [], "type": "ops"}\n',  # invalid content: the core judges it, not the session
        '{"type": "\\u006fps", "id": 1}',
        '{"type": "ops", "id": 1, "ops": ' + DEEP + "}",
    ],
)
def test_ops_become_an_event_with_the_text_untouched(text: str) -> None:
    event = opened().receive(text)
    assert event == OpsEvent(text)
    assert isinstance(event, OpsEvent)
    assert event.text is text


@pytest.mark.parametrize(
    ("text", "id"),
    [
        (OPS, 17),
        ('{"type": "ops", "id": 0, "ops": []}', 0),
        (f'{{"type": "ops", "id": {MAX_ID}}}', MAX_ID),
        ('{"type": "ops", "id": -1}', None),
        ('{"type": "ops", "id": 1.5}', None),
        ('{"type": "ops", "id": "17"}', None),
        ('{"type": "ops", "id": true}', None),
        (f'{{"type": "ops", "id": {MAX_ID + 1}}}', None),
        ('{"type": "ops"}', None),
        ('{"type": "ops", "id": ' + HUGE_INT + "}", None),
        ('{"type": "ops", "id": 5, "ops": ' + DEEP + "}", None),
    ],
)
def test_ops_on_a_read_only_connection_are_forbidden_with_the_id_echoed(
    text: str, id: int | None
) -> None:
    session = opened(Access("secret", "reader"), token="reader")
    error = rejected(session, text)
    assert (error.code, error.id, error.close_code) == ("forbidden", id, None)
    assert session.hello is not None


@pytest.mark.parametrize(
    ("text", "id"),
    [
        ('{"type": "ping", "id": 3}', 3),
        ('{"type": "ping"}', None),
        ('{"type": "ping", "id": 0}', 0),
        (f'{{"type": "ping", "id": {MAX_ID}}}', MAX_ID),
        ('{"type": "ping", "id": 3, "extra": [1]}', 3),
    ],
)
def test_ping_becomes_an_event_with_its_id(text: str, id: int | None) -> None:
    assert opened().receive(text) == PingEvent(id)
    assert opened(Access("s", "r"), token="r").receive(text) == PingEvent(id)


@pytest.mark.parametrize(
    "value", ["-1", "1.5", "1.0", '"3"', "true", "null", "[3]", str(MAX_ID + 1), HUGE_INT, DEEP]
)
def test_ping_with_an_invalid_id_is_bad_message_and_stays_open(value: str) -> None:
    session = opened()
    error = rejected(session, '{"type": "ping", "id": ' + value + "}")
    assert (error.code, error.close_code, error.id) == ("bad_message", None, None)
    assert session.receive('{"type": "ping"}') == PingEvent(None)


def test_a_second_hello_is_bad_message_and_keeps_the_first() -> None:
    session = opened(doc="first")
    error = rejected(session, hello(doc="second", node="other"))
    assert (error.code, error.close_code) == ("bad_message", None)
    assert session.hello == Hello("first", "tui-3f9a")
    assert session.receive(OPS) == OpsEvent(OPS)


@pytest.mark.parametrize(
    ("text", "id"),
    [
        ('{"type": "subscribe", "id": 9}', 9),
        ('{"type": "OPS", "id": 9, "ops": []}', 9),
        ('{"type": "ack", "id": 0}', 0),
        ('{"type": "welcome"}', None),
        ('{"type": "x", "id": -9}', None),
        ('{"type": "x", "id": "9"}', None),
        ('{"type": "x", "id": ' + HUGE_INT + "}", None),
        ('{"type": "x", "id": 9, "deep": ' + DEEP + "}", None),
    ],
)
def test_an_unknown_type_is_bad_message_with_the_id_echoed(text: str, id: int | None) -> None:
    session = opened()
    error = rejected(session, text)
    assert (error.code, error.id, error.close_code) == ("bad_message", id, None)


@pytest.mark.parametrize(
    ("text", "id"),
    [
        ('{"id": 3, "ops": []}', 3),
        ('{"type": 5, "id": 4}', 4),
        ('{"type": null}', None),
        ("[1, 2]", None),
        ("42", None),
    ],
)
def test_after_hello_a_frame_without_a_type_is_bad_message_and_stays_open(
    text: str, id: int | None
) -> None:
    error = rejected(opened(), text)
    assert (error.code, error.id, error.close_code) == ("bad_message", id, None)


@pytest.mark.parametrize("text", ["", "not json", "{", '{"type": "ops", "id": 1, "ops": [}'])
def test_after_hello_text_that_is_not_json_is_bad_json_and_stays_open(text: str) -> None:
    session = opened()
    error = rejected(session, text)
    assert (error.code, error.close_code, error.id) == ("bad_json", None, None)
    assert session.receive(OPS) == OpsEvent(OPS)


def test_a_binary_frame_is_bad_message_closing_only_before_hello() -> None:
    session = ServerSession(Access())
    before = rejected(session, b"\x00")
    assert (before.code, before.close_code) == ("bad_message", CloseCode.POLICY_VIOLATION)
    session.receive(hello())
    after = rejected(session, b"\x00")
    assert (after.code, after.close_code) == ("bad_message", None)


# -- error frames --------------------------------------------------------------------------


ERROR_CASES: Final = [
    (None, "x"),
    (None, OPS),
    (None, hello(v=2)),
    (None, hello(doc=".x")),
    (Access("t"), hello(token="wrong")),
    ("open", "x"),
    ("open", '{"type": "x", "id": 12}'),
    ("open", '{"type": "ping", "id": -1}'),
    ("open", hello()),
    ("read-only", OPS),
]


@pytest.mark.parametrize(("state", "text"), ERROR_CASES)
def test_error_frames_are_json_with_type_code_message_and_id(state: Any, text: str) -> None:
    if state == "open":
        session = opened()
    elif state == "read-only":
        session = opened(Access("t", "r"), token="r")
    else:
        session = ServerSession(state or Access())
    error = rejected(session, text)
    frame = json.loads(error.frame())
    expected: dict[str, Any] = {"type": "error", "code": error.code, "message": error.message}
    if error.id is not None:
        expected["id"] = error.id
    assert frame == expected
    assert error.code in ERROR_CODES
    assert isinstance(frame["message"], str) and frame["message"]


def test_a_core_error_keeps_its_code_and_id_and_does_not_close() -> None:
    with pytest.raises(CrdtError) as raised:
        Document(max_ops=1).apply_frame(
            '{"type": "ops", "id": 41, "ops": ['
            '{"key": "a", "ts": "1764028800123-00000-n", "value": 1},'
            '{"key": "b", "ts": "1764028800123-00000-n", "value": 2}]}'
        )
    error = ProtocolError.from_crdt(raised.value)
    assert (error.code, error.id, error.close_code) == ("too_large", 41, None)
    assert json.loads(error.frame()) == {
        "type": "error",
        "code": "too_large",
        "message": str(raised.value),
        "id": 41,
    }


@pytest.mark.parametrize(
    ("text", "id"),
    [
        ('{"id": 5}', 5),
        ('{"id": 5.0}', None),
        ('{"id": true}', None),
        ("[5]", None),
        ("not json", None),
        ('{"id": ' + HUGE_INT + "}", None),
        ('{"id": 1, "x": ' + DEEP + "}", None),
    ],
)
def test_message_id_never_raises(text: str, id: int | None) -> None:
    assert message_id(text) == id


# -- frame builders against the contract's examples ------------------------------------------


def test_welcome_frame_matches_the_contract_example() -> None:
    contract = (
        '{"type": "welcome", "v": 1, "doc": "default", "node": "srv-1", "epoch": "e-91c2",\n'
        ' "seq": 1300, "time": "1764028800999-00000-srv-1", "full": false,\n'
        ' "readonly": false, "peers": ["web-77c1"]}'
    )
    frame = as_text(
        welcome_pieces(
            doc="default",
            node="srv-1",
            epoch="e-91c2",
            seq=1300,
            time="1764028800999-00000-srv-1",
            full=False,
            readonly=False,
            peers=["web-77c1"],
        )
    )
    assert json.loads(frame) == json.loads(contract)
    snapshot = as_text(
        welcome_pieces(
            doc="d", node="s", epoch="e", seq=0, time="t", full=True, readonly=True, peers=[]
        )
    )
    assert json.loads(snapshot) == {
        "type": "welcome",
        "v": 1,
        "doc": "d",
        "node": "s",
        "epoch": "e",
        "seq": 0,
        "time": "t",
        "full": True,
        "readonly": True,
        "peers": [],
    }


def test_entries_frame_matches_the_contract_example() -> None:
    live = '{"key": "title", "ts": "1764028800123-00000-tui-3f9a", "value": "hello"}'
    dead = '{"key": "title", "ts": "1764028800456-00002-web-77c1", "deleted": true}'
    frame = json.loads(entries_frame(f"{live},{dead}"))
    assert frame == {"type": "entries", "entries": [json.loads(live), json.loads(dead)]}
    assert json.loads(entries_frame("")) == {"type": "entries", "entries": []}


def test_entries_frame_wraps_the_core_wire_form() -> None:
    doc = Document()
    result = doc.apply_frame(OPS)
    assert json.loads(entries_frame(result.ops_json)) == {
        "type": "entries",
        "entries": [{"key": "title", "ts": "1764028800123-00000-tui-3f9a", "value": "hello"}],
    }


def test_synced_frame_matches_the_contract_example() -> None:
    assert json.loads(synced_frame(1300)) == {"type": "synced", "seq": 1300}
    assert json.loads(synced_frame(0)) == {"type": "synced", "seq": 0}


def test_pong_frame_matches_the_contract_example() -> None:
    time = "1764028800999-00000-srv-1"
    assert json.loads(pong_frame(3, time)) == {"type": "pong", "id": 3, "time": time}
    assert json.loads(pong_frame(0, time)) == {"type": "pong", "id": 0, "time": time}
    assert json.loads(pong_frame(None, time)) == {"type": "pong", "time": time}


def test_presence_frame_matches_the_contract_example() -> None:
    assert json.loads(presence_frame(joined=["node"])) == {"type": "presence", "joined": ["node"]}
    assert json.loads(presence_frame(left=["node"])) == {"type": "presence", "left": ["node"]}


def test_error_frame_matches_the_contract_example() -> None:
    assert json.loads(error_frame("bad_message", "human-readable", 17)) == {
        "type": "error",
        "code": "bad_message",
        "message": "human-readable",
        "id": 17,
    }
    assert json.loads(error_frame("bad_message", 'ünïcode ☃ "quoted"\n')) == {
        "type": "error",
        "code": "bad_message",
        "message": 'ünïcode ☃ "quoted"\n',
    }
    assert "id" not in json.loads(error_frame("internal", "x", None))
    assert json.loads(error_frame("internal", "x", 0))["id"] == 0


# -- document names ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["default", "a", "0", "-", "_", "a.", "a..b", "x-y_z.9", "A" * 128, "-leading", "_x.json"],
)
def test_valid_doc_names(name: str) -> None:
    assert valid_doc_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "",
        ".",
        "..",
        ".a",
        "a" * 129,
        "a/b",
        "/a",
        "a\\b",
        "a b",
        "a\n",
        "\na",
        "a\x00",
        "é",
        "ａ",  # fullwidth a
        "٣",  # an Arabic-Indic digit
        "a:b",
        "a*",
        "[a]",
    ],
)
def test_invalid_doc_names(name: str) -> None:
    assert not valid_doc_name(name)
    with pytest.raises(ValueError) as raised:
        check_doc_name(name)
    assert str(raised.value) == f"invalid document name {name!r}: {DOC_NAME_RULE}"


def test_a_hello_with_an_invalid_doc_is_refused_with_the_rule() -> None:
    error = rejected(ServerSession(Access()), hello(doc=".hidden"))
    assert (error.code, error.message) == (
        "bad_message",
        f"invalid document name '.hidden': {DOC_NAME_RULE}",
    )


# -- properties --------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(st.characters(codec=None, exclude_categories=()), max_size=8)
)
"""JSON scalars; strings may hold unpaired surrogates (``json.dumps`` escapes them)."""

json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=10,
)

frame_fields = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["hello", "ops", "ping", "ack", "welcome", ""]) | json_values,
        "v": st.sampled_from([1, 2, "1", True]) | json_values,
        "doc": st.sampled_from(["default", "", ".x", "d" * 129]) | json_values,
        "node": st.sampled_from(["n1", "", "a b"]) | json_values,
        "token": st.sampled_from(["secret", "reader", "wrong"]) | json_values,
        "since": st.fixed_dictionaries(
            {}, optional={"epoch": json_values, "seq": st.integers(-2, 2**54) | json_values}
        )
        | json_values,
        "id": st.integers(-2, 2**54) | json_values,
        "ops": json_values,
    },
)
"""Frames made of the protocol's own fields, valid and not."""

any_text = (
    st.text(max_size=200) | st.builds(json.dumps, json_values) | st.builds(json.dumps, frame_fields)
)


@settings(max_examples=300, deadline=None)
@given(
    texts=st.lists(any_text, min_size=1, max_size=5),
    state=st.sampled_from(["new", "open", "read-only"]),
)
def test_receive_raises_nothing_but_protocol_errors(texts: list[str], state: str) -> None:
    access = Access("secret", "reader")
    session = ServerSession(access)
    if state != "new":
        session.receive(hello(token="secret" if state == "open" else "reader"))
    for text in texts:
        waiting = session.hello is None
        try:
            event = session.receive(text)
        except ProtocolError as error:
            assert error.code in ERROR_CODES
            assert error.close_code == (CloseCode.POLICY_VIOLATION if waiting else None)
            json.loads(error.frame())
            if waiting:
                assert session.hello is None
            continue
        if waiting:
            assert isinstance(event, HelloEvent)
            assert session.hello == event.hello
        else:
            assert isinstance(event, OpsEvent | PingEvent)


doc_names = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,127}", fullmatch=True)
node_ids = st.from_regex(r"[A-Za-z0-9_-]{1,64}", fullmatch=True)
tokens = st.text(max_size=40)
sinces = st.builds(Since, st.text(max_size=20), st.integers(0, MAX_ID))


@settings(max_examples=200, deadline=None)
@given(
    doc=doc_names | st.just(None),
    node=node_ids,
    token=tokens | st.just(None),
    since=sinces | st.just(None),
    ensure_ascii=st.booleans(),
    extra=st.dictionaries(st.sampled_from(["x", "id", "ops", "origin"]), json_values, max_size=2),
)
def test_valid_hellos_round_trip_their_fields(
    doc: str | None,
    node: str,
    token: str | None,
    since: Since | None,
    ensure_ascii: bool,
    extra: dict[str, Any],
) -> None:
    frame: dict[str, Any] = {"type": "hello", "v": 1, "node": node, **extra}
    if doc is not None:
        frame["doc"] = doc
    if token is not None:
        frame["token"] = token
    if since is not None:
        frame["since"] = {"epoch": since.epoch, "seq": since.seq}
    text = json.dumps(frame, ensure_ascii=ensure_ascii)
    expected = Hello(doc if doc is not None else DEFAULT_DOC, node, token, since)

    event = ServerSession(Access()).receive(text)
    assert event == HelloEvent(expected, readonly=False)
    if token is not None:
        assert ServerSession(Access(token)).receive(text) == HelloEvent(expected, readonly=False)
        read_only = ServerSession(Access(token + "!", token)).receive(text)
        assert read_only == HelloEvent(expected, readonly=True)


def test_an_error_about_an_entry_names_its_index_and_the_message_id() -> None:
    doc = Document()
    frame = json.dumps(
        {
            "type": "ops",
            "id": 9,
            "ops": [
                {"key": "ok", "ts": "1764028800123-00000-a", "value": 1},
                {"key": "bad", "ts": "yesterday", "value": 2},
            ],
        }
    )
    with pytest.raises(CrdtError) as caught:
        doc.apply_frame(frame)
    answer = json.loads(ProtocolError.from_crdt(caught.value).frame())
    assert answer == {
        "type": "error",
        "code": "bad_message",
        "message": answer["message"],
        "id": 9,
        "entry": 1,
    }
    assert answer["message"].startswith("ops[1]:")


def test_messages_over_the_rate_limit_are_rate_limited_echoing_their_id() -> None:
    now = [0.0]
    session = ServerSession(Access(), TokenBucket(rate=1, burst=2, clock=lambda: now[0]))
    session.receive(hello())
    assert session.receive(OPS) == OpsEvent(OPS)
    error = rejected(session, OPS)
    assert (error.code, error.close_code, error.id) == ("rate_limited", None, message_id(OPS))
    now[0] += 1.0  # a token again
    assert session.receive(OPS) == OpsEvent(OPS)


# -- the handshake decision ------------------------------------------------------------------

HEAD: Final = DocumentHead(
    doc="notes", server_node="srv", epoch="e-1", seq=50, horizon=10, cluster=None
)


@pytest.mark.parametrize(
    ("since", "resume"),
    [
        (None, None),
        (Since("e-1", 10), 10),
        (Since("e-1", 30), 30),
        (Since("e-1", 50), 50),
        (Since("e-1", 9), None),  # below the horizon: tombstones may be gone
        (Since("e-1", 51), None),  # above the head: another lineage in disguise
        (Since("e-2", 30), None),  # another lineage
    ],
)
def test_a_delta_only_within_the_lineage_between_horizon_and_head(
    since: Since | None, resume: int | None
) -> None:
    answer = handshake(
        Hello(doc="notes", node="tui-1", since=since), HEAD, readonly=False, peers=[], time="t"
    )
    assert answer.resume == resume
    assert json.loads(b"".join(answer.welcome))["full"] is (resume is None)
    assert json.loads(answer.synced) == {"type": "synced", "seq": 50}


def test_the_welcome_names_the_document_the_node_the_peers_and_the_cluster() -> None:
    head = DocumentHead(doc="notes", server_node="srv", epoch="e-1", seq=5, horizon=0, cluster="c")
    hello_ = Hello(doc="notes", node="tui-1")
    welcome = json.loads(
        b"".join(
            handshake(
                hello_, head, readonly=True, peers=["web-2"], time="0000000000001-00000-srv"
            ).welcome
        )
    )
    assert welcome == {
        "type": "welcome",
        "v": 1,
        "doc": "notes",
        "node": "srv",
        "epoch": "e-1",
        "seq": 5,
        "time": "0000000000001-00000-srv",
        "full": True,
        "readonly": True,
        "peers": ["web-2"],
        "cluster": "c",
    }
    single = handshake(hello_, HEAD, readonly=False, peers=[], time="t").welcome
    assert "cluster" not in json.loads(b"".join(single))
