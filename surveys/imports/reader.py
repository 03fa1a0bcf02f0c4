"""The one CSV reader both imports use: a binary file's text a line at a time, the header line checked,
the rows in chunks, and where the file stops being readable."""

import codecs
import csv
import re
from collections.abc import Iterator


class ImportFileError(Exception):
    """The file as a whole cannot be read (no header, wrong columns, not UTF-8)."""


# Bytes that are not UTF-8 are decoded as lone surrogates, so that the reader,
# which reads ahead, does not fail on a line it has not reached: the row that
# holds them is reported with its own line number.
NOT_UTF8 = re.compile("[\udc80-\udcff]")
_LINE_BREAK = re.compile(r"(\r\n|\r|\n)")


class TextLines:
    """A binary CSV file's text a line at a time, where only CR LF, LF or CR ends a line.

    (Python's text readers also end a line at U+2028, U+0085, form feeds and
    the file separators, which cut a row in two inside an unquoted name.)
    UTF-8 with or without a byte order mark; bytes that are not UTF-8 come out
    as lone surrogates (see NOT_UTF8). Read in small chunks, so an import
    writes its first rows before it has read much of a large file.
    """

    _CHUNK = 4096

    def __init__(self, binary):
        self._binary = binary
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")(errors="surrogateescape")
        self._lines: list[str] = []
        self._next = 0
        self._rest = ""
        self._done = False

    def _fill(self) -> None:
        while self._next >= len(self._lines) and not self._done:
            data = self._binary.read(self._CHUNK)
            text = self._rest + self._decoder.decode(data, final=not data)
            self._done = not data
            # A CR at the end of a chunk may be the first half of a CR LF: it waits for the next one.
            held = "\r" if text.endswith("\r") and not self._done else ""
            pieces = _LINE_BREAK.split(text[: len(text) - len(held)])
            self._lines = [pieces[i] + pieces[i + 1] for i in range(0, len(pieces) - 1, 2)]
            self._next, self._rest = 0, pieces[-1] + held
            if self._done and self._rest:
                self._lines.append(self._rest)
                self._rest = ""

    def readline(self) -> str:
        self._fill()
        if self._next >= len(self._lines):
            return ""
        self._next += 1
        return self._lines[self._next - 1]

    def __iter__(self):
        return self

    def __next__(self) -> str:
        line = self.readline()
        if not line:
            raise StopIteration
        return line


def open_text(binary) -> TextLines:
    return TextLines(binary)


def header_cells(text: TextLines, *, example: str) -> tuple[list[str], str]:
    """The header line's cells and the delimiter (comma or semicolon), or ImportFileError saying what is wrong."""
    header_line = text.readline()
    if NOT_UTF8.search(header_line):
        raise ImportFileError("line 1: the file is not UTF-8 text (save it as UTF-8 and import again)")
    if "\x00" in header_line:
        # UTF-16 without a byte order mark decodes as UTF-8, with a NUL after every letter.
        raise ImportFileError("line 1: the header contains a NUL character")
    if not header_line.strip():
        raise ImportFileError(f"line 1: the file is empty; the first line must be a header such as {example}")
    delimiter = ";" if header_line.count(";") > header_line.count(",") else ","
    return next(csv.reader([header_line], delimiter=delimiter)), delimiter


class UnreadableLine(Exception):
    """The file cannot be read from `line` on: broken CSV (`cause` a csv.Error) or text that does not decode."""

    def __init__(self, line: int, cause: Exception):
        super().__init__(line, cause)
        self.line = line
        self.cause = cause


def rows_in_chunks(reader, *, size: int) -> Iterator[list[tuple[int, list[str]]]]:
    """The rows after the header in lists of up to `size` (line, values), each with the line it starts on.

    Where the file stops being readable, the rows before that line are yielded
    first, then UnreadableLine is raised: the caller reports it after them, in line order.
    """
    rows = iter(reader)
    while True:
        chunk, unreadable = [], None
        try:
            for _ in range(size):
                # Where the row starts: a quoted field may carry it over several lines.
                line = reader.line_num + 2  # the header, read apart, is line 1
                chunk.append((line, next(rows)))
        except StopIteration:
            pass
        except csv.Error as exc:
            unreadable = UnreadableLine(reader.line_num + 1, exc)  # the csv module had read the line at fault
        except UnicodeDecodeError as exc:
            unreadable = UnreadableLine(reader.line_num + 2, exc)  # the line at fault never reached the csv module
        if chunk:
            yield chunk
        if unreadable is not None:
            raise unreadable from unreadable.cause
        if len(chunk) < size:
            return  # the end of the file
