"""A DataTable that stays fast with 100,000 rows (the table of :mod:`syncd.tui.document_table`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from textual.geometry import Size
from textual.widgets import DataTable
from textual.widgets.data_table import Row, RowKey

__all__ = ["KeyTable"]


class KeyTable(DataTable[Any]):
    """A :class:`~textual.widgets.DataTable` of fixed-width columns and one-line rows,
    made to stay fast with 100,000 rows (for Textual 8.2, whose internals it uses).

    DataTable measures every cell of every new row, and after *any* change
    (even one cell) rebuilds its row order and line offsets, O(rows) each: a
    quarter of a second per frame at 100,000 rows. Here the sizes follow from the row count,
    the line of a row is its index, and the row order is rebuilt only when rows
    are removed or reordered (appended rows extend it).
    """

    _ordered: tuple[object, int, list[Row]] | None = None
    """The row order, with the ``_row_locations`` and row count it was made from."""

    def _update_dimensions(self, new_rows: Iterable[RowKey]) -> None:
        width = sum(column.get_render_width(self) for column in self.columns.values())
        header = self.header_height if self.show_header else 0
        self.virtual_size = Size(width, self.row_count + header)

    @property
    def _total_row_height(self) -> int:
        return self.row_count

    def _get_offsets(self, y: int) -> tuple[RowKey, int]:
        if self.show_header:
            if y < self.header_height:
                return self._header_row_key, y
            y -= self.header_height
        key = self._row_locations.get_key(y)
        if key is None:
            raise LookupError(f"no row at line {y}")
        return key, 0

    @property
    def ordered_rows(self) -> list[Row]:
        """The rows in the order shown (kept between changes of cells)."""
        # Removing and sorting rows replace ``_row_locations``; adding a row appends.
        locations, count = self._row_locations, self.row_count
        cached = self._ordered
        if cached is not None and cached[0] is locations and cached[1] <= count:
            rows = cached[2]
        else:
            rows = []
        for index in range(len(rows), count):
            key = locations.get_key(index)
            assert key is not None  # the indexes of the rows are 0 to count - 1
            rows.append(self.rows[key])
        self._ordered = (locations, count, rows)
        return rows
