"""Which file and line a row of a split came from, to name it in an error message.

Files are re-read only when a row is reported, so valid data pays nothing for this.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_SHOWN_ROWS = 3  # rows named in one message; a count says how many more there are


def csv_record_lines(path: Path, delimiter: str, encoding: str) -> Iterator[int]:
    """First line of every data record of a CSV file (the header is skipped, blank lines too, as pandas)."""
    with path.open(encoding=encoding, newline="") as f:
        reader = csv.reader(f, delimiter=delimiter)
        previous, header = 0, True
        for record in reader:
            start, previous = previous + 1, reader.line_num
            if not record:
                continue
            if header:
                header = False
                continue
            yield start


class _NoLines(Exception):
    """The file's rows have no line of their own (a JSON array, a pretty-printed document)."""


def _json_lines(path: Path, encoding: str) -> Iterator[int]:
    """Line of every record of a JSON Lines file; a line that is not one JSON object ends the search."""
    with path.open(encoding=encoding) as f:
        for lineno, line in enumerate(f, start=1):
            stripped = line.lstrip("\ufeff").strip()
            if not stripped:
                continue
            try:
                record = json.loads(stripped)
            except ValueError:
                raise _NoLines from None
            if not isinstance(record, dict):
                raise _NoLines
            yield lineno


def _conllu_lines(path: Path) -> Iterator[int]:
    """First line of every sentence (block with at least one word line) of a CoNLL-U file."""
    start, words = 0, False
    with path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                if words:
                    yield start
                start, words = 0, False
                continue
            start = start or lineno
            words = words or not line.startswith("#")
    if words:
        yield start


@dataclass(frozen=True)
class RowLocator:
    """Names a row of a split by the file and line it came from.

    Args:
        files: split -> its local files, in the order ``datasets`` reads them (empty for hub datasets).
        kind: the builder (``csv``, ``json``, ``conllu``); other kinds give row numbers only.
        delimiter: the CSV delimiter.
        encoding: the files' encoding.
    """

    files: Mapping[str, Sequence[str]] = field(default_factory=dict)
    kind: str = ""
    delimiter: str = ","
    encoding: str = "utf-8-sig"

    @classmethod
    def for_source(
        cls,
        path: str,
        data_files: Any,
        split_map: Mapping[str, str] | None = None,
        load_kwargs: Mapping[str, Any] | None = None,
    ) -> RowLocator:
        """The locator of what :func:`~zoo.data.sources.load_splits` reads from these arguments."""
        from zoo.data.sources import split_files

        kwargs = dict(load_kwargs or {})
        if kwargs.get("field"):
            path = ""  # records nested under a key of one JSON document have no line of their own
        delimiter = kwargs.get("delimiter") or kwargs.get("sep") or ","
        encoding = kwargs.get("encoding") or "utf-8-sig"
        return cls(split_files(data_files, split_map), path, str(delimiter), str(encoding))

    def _lines(self, file: Path) -> Iterator[int]:
        if self.kind == "csv":
            return csv_record_lines(file, self.delimiter, self.encoding)
        if self.kind == "json":
            return _json_lines(file, self.encoding)
        if self.kind == "conllu":
            return _conllu_lines(file)
        return iter(())

    def line_of(self, split: str, row: int) -> str | None:
        """``"file line N"`` for the 0-based ``row`` of ``split``, or ``None`` when it cannot be known."""
        remaining = row
        for name in self.files.get(split, ()):
            file = Path(name)
            if not file.is_file():
                return None
            try:
                count = 0
                for count, line in enumerate(self._lines(file), start=1):
                    if count == remaining + 1:
                        return f"{name} line {line}"
            except (OSError, UnicodeDecodeError, csv.Error, _NoLines):
                return None
            if count == 0:
                return None  # a format without lines (a JSON array): do not guess
            remaining -= count
        return None

    def where(self, split: str, rows: Sequence[int]) -> str:
        """``"row 4 (train.csv line 5)"``, or several rows with a count of the rest; rows are 0-based."""
        shown = []
        for row in rows[:_SHOWN_ROWS]:
            line = self.line_of(split, row)
            shown.append(f"{row + 1}" + (f" ({line})" if line else ""))
        more = f" and {len(rows) - _SHOWN_ROWS} more" if len(rows) > _SHOWN_ROWS else ""
        return ("rows " if len(rows) > 1 else "row ") + ", ".join(shown) + more
