"""The modal screens: the value editor, the delete confirmation, help and the document picker."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar, Final, NoReturn

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Markdown, OptionList, Static, TextArea
from textual.widgets.option_list import Option

from syncd.crdt import CrdtError, JSONValue, check_key, check_value
from syncd.errors import InvalidInput
from syncd.protocol import check_doc_name
from syncd.tui._format import pretty

__all__ = ["ConfirmScreen", "DocPickerScreen", "Edit", "EditorScreen", "HelpScreen"]


@dataclass(frozen=True)
class Edit:
    """What the editor returns: the key and its new value."""

    key: str
    value: JSONValue


def _no_constant(name: str) -> NoReturn:
    raise InvalidInput(f"Invalid JSON: {name} is not a JSON value")


def parse_value(text: str, plain: bool, max_bytes: int) -> JSONValue:
    """The value the editor holds: ``text`` as a string, or parsed as JSON.

    Raises :class:`InvalidInput` with a reason a user can act on.
    """
    if plain:
        value: JSONValue = text
    else:
        try:
            value = json.loads(text, parse_constant=_no_constant)
        except json.JSONDecodeError as error:
            raise InvalidInput(
                f"Invalid JSON: {error.msg} at line {error.lineno}, column {error.colno} "
                "(tick 'Plain string' to store the text as it is)"
            ) from None
    try:
        check_value(value, max_value_bytes=max_bytes)
    except CrdtError as error:
        raise InvalidInput(f"Invalid value: {error}") from None
    return value


def parse_key(key: str) -> str:
    """``key`` if a document may hold it, else :class:`InvalidInput`."""
    try:
        check_key(key)
    except CrdtError as error:
        raise InvalidInput(f"Invalid key: {error}") from None
    return key


class EditorScreen(ModalScreen[Edit | None]):
    """Edit one value (or add a key): JSON, checked as you save, or a plain string."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save", priority=True),
    ]

    def __init__(self, key: str | None, value: JSONValue, *, max_bytes: int) -> None:
        """``key`` None: add a new key; else edit ``key``, whose value is ``value``."""
        super().__init__()
        self.key = key
        self.value = value
        self.max_bytes = max_bytes

    def compose(self) -> ComposeResult:
        plain = self.key is not None and isinstance(self.value, str)
        text = self.value if isinstance(self.value, str) else pretty(self.value)
        with Vertical(id="editor", classes="dialog"):
            yield Label("Add a key" if self.key is None else "Edit a value", classes="title")
            yield Input(
                self.key or "",
                placeholder="key",
                id="key",
                disabled=self.key is not None,
            )
            yield TextArea(
                text if self.key is not None else "",
                language=None if plain else "json",
                id="value",
                soft_wrap=True,
                show_line_numbers=False,
            )
            yield Checkbox("Plain string (store the text as it is)", plain, id="plain")
            yield Static("", id="error")
            with Horizontal(classes="buttons"):
                yield Button("Save  ctrl+s", variant="primary", id="save")
                yield Button("Cancel  esc", id="cancel")

    def on_mount(self) -> None:
        self.query_one("#value" if self.key is not None else "#key").focus()

    @on(Checkbox.Changed, "#plain")
    def _plain_changed(self, event: Checkbox.Changed) -> None:
        self.query_one("#value", TextArea).language = None if event.value else "json"
        self.query_one("#error", Static).update("")

    @on(Button.Pressed, "#save")
    def action_save(self) -> None:
        """Check the key and value; close with them, or show why they cannot be saved."""
        error = self.query_one("#error", Static)
        try:
            key = parse_key(self.query_one("#key", Input).value)
            value = parse_value(
                self.query_one("#value", TextArea).text,
                self.query_one("#plain", Checkbox).value,
                self.max_bytes,
            )
        except InvalidInput as problem:
            error.update(str(problem))
            return
        self.dismiss(Edit(key, value))

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        """Close without writing."""
        self.dismiss(None)


class ConfirmScreen(ModalScreen[bool]):
    """Asks before a key is deleted: y deletes, n or escape keeps it."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("y", "answer(True)", "Yes"),
        Binding("n,escape", "answer(False)", "No"),
    ]

    def __init__(self, question: str) -> None:
        super().__init__()
        self.question = question

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm", classes="dialog"):
            yield Label(self.question, classes="title")
            with Horizontal(classes="buttons"):
                yield Button("Delete  y", variant="error", id="yes")
                yield Button("Keep  n", id="no")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        """Close with the answer."""
        self.dismiss(yes)


HELP: Final = """\
# syncd tui

Every edit is applied here at once and sent to the server; other clients see it
as soon as the server has it. When two clients write the same key, the write with
the **newer timestamp wins** (last-writer-wins). If one of your writes loses that
way, a notification shows both values, and `x` opens that conflict. The server
keeps every version and every overridden write (unless it runs with
`--history-retention 0`).

| Key | Action |
|-----|--------|
| `a` | add a key |
| `enter`, `e` | edit the selected value (JSON, or a plain string) |
| `d` | delete the selected key (asks first) |
| `u` | undo your last change (written as a new change) |
| `c` | copy the selected value to the clipboard |
| `h` | the selected key's history (`r` restores a version, `esc` closes) |
| `x` | overridden writes, yours marked ★ (`enter` goes to the key, `r` restores) |
| `/` | filter keys and values as you type (`esc` clears) |
| `s` | sort by key or by most recent change |
| `o` | open or create another document |
| `ctrl+p` | command palette |
| `?` | this help |
| `q` | quit |

A **●** marks a change not acknowledged by the server yet. Offline, changes wait
(also across restarts of the TUI) and are sent when the connection is back.
"""


class HelpScreen(ModalScreen[None]):
    """The bindings and how syncing works."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape,q,question_mark", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help", classes="dialog"):
            yield Markdown(HELP)

    def action_close(self) -> None:
        """Close the help."""
        self.dismiss(None)


class DocPickerScreen(ModalScreen[str | None]):
    """Pick a document this TUI has opened before, or type a name to open or create one."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, known: list[str], current: str) -> None:
        super().__init__()
        self.known = known
        self.current = current

    def compose(self) -> ComposeResult:
        with Vertical(id="picker", classes="dialog"):
            yield Label("Open a document", classes="title")
            yield Input(placeholder="document name (new or existing), enter", id="name")
            yield OptionList(
                *[
                    Option(f"{doc}  (open)" if doc == self.current else doc, id=doc)
                    for doc in self.known
                ],
                id="known",
            )
            yield Static("", id="error")

    @on(Input.Submitted, "#name")
    def _typed(self, event: Input.Submitted) -> None:
        try:
            name = check_doc_name(event.value.strip())
        except ValueError as error:
            self.query_one("#error", Static).update(str(error))
            return
        self.dismiss(name)

    @on(OptionList.OptionSelected, "#known")
    def _chosen(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        """Close without switching."""
        self.dismiss(None)
