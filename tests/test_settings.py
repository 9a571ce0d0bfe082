"""Tests of :mod:`syncd.settings`: a client's target is what it was given, else the
``SYNCD_*`` variable, else the default — the same order for every client."""

from __future__ import annotations

from syncd.settings import DEFAULT_URL, Target, resolve

ENV = {"SYNCD_URL": "ws://10.0.0.5:9000/ws", "SYNCD_DOC": "notes", "SYNCD_TOKEN": "s3cret"}


def test_defaults_without_variables() -> None:
    assert resolve(environ={}) == Target(DEFAULT_URL, "default", None)


def test_variables_fill_in_what_is_not_given() -> None:
    assert resolve(environ=ENV) == Target("ws://10.0.0.5:9000/ws", "notes", "s3cret")


def test_what_is_given_wins_over_the_variables() -> None:
    given = resolve("127.0.0.1:1", "other", "mine", environ=ENV)
    assert given == Target("127.0.0.1:1", "other", "mine")


def test_empty_values_count_as_not_given_except_an_explicit_token() -> None:
    empty = {"SYNCD_URL": "", "SYNCD_DOC": "", "SYNCD_TOKEN": ""}
    assert resolve(environ=empty) == Target(DEFAULT_URL, "default", None)
    assert resolve("", "", "", environ=ENV) == Target("ws://10.0.0.5:9000/ws", "notes", "")
