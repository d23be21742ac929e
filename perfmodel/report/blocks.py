"""The report's content as data: sections made of figures and tables.

Sections build these; :mod:`perfmodel.report.html` renders them.  A table
keeps the raw numbers (``Table.rows``), so the HTML view, the CSV download
and the tests all read the same values.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Table:
    """Rows of raw values under ``columns`` (units in the column names)."""

    key: str
    caption: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]

    @classmethod
    def from_dicts(cls, key: str, caption: str, dicts: Sequence[dict], columns: Sequence[str] | None = None):
        cols = list(columns) if columns is not None else list(dicts[0]) if dicts else []
        return cls(key, caption, cols, [[d.get(c) for c in cols] for d in dicts])


@dataclass(frozen=True)
class Figure:
    """One plot (``image`` is a ``data:`` URI) and the tables that hold its numbers."""

    key: str
    title: str
    image: str
    alt: str
    tables: Sequence[Table] = ()


@dataclass(frozen=True)
class Note:
    """A paragraph of plain text (escaped on output); ``answer`` highlights it."""

    text: str
    answer: bool = False


@dataclass(frozen=True)
class Heading:
    """A sub-heading inside a section."""

    text: str


@dataclass(frozen=True)
class Facts:
    """A definition list: (label, value) pairs shown as text."""

    key: str
    items: Sequence[tuple[str, str]]


Block = Figure | Table | Note | Heading | Facts


@dataclass
class Section:
    key: str
    title: str
    blocks: list[Block] = field(default_factory=list)

    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]

    def tables(self) -> list[Table]:
        out = []
        for b in self.blocks:
            out += [b] if isinstance(b, Table) else list(b.tables) if isinstance(b, Figure) else []
        return out
