"""Shared reading of delimited text files: encoding, delimiter, header and ragged-row diagnosis.

Every tabular parser opens its file through :func:`sniff_table`, so wrong encodings, empty files, a wrong
delimiter, duplicate header names and ragged rows are reported the same way for every format (file, line,
column, reason) instead of surfacing as a raw polars exception.
"""

from __future__ import annotations

import codecs
import csv
import functools
import gzip
import io
import tempfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, ParamSpec, TypeVar

import polars as pl

from schemas.manifest import not_a_file
from transforms.issues import InputError, Issue, IssueLog

_SNIFF_BYTES = 1 << 16
_MAX_HEADER_BYTES = 1 << 26

MAX_IDENTIFIER_CHARS = 512
"""Longest identifier (feature id, sample label, header name) read; a longer one is an
``identifier_too_long`` error (no gene or sample name comes near it; a megabyte "identifier" is a broken file)."""

READ_ERRORS: tuple[type[BaseException], ...] = (OSError, EOFError, zlib.error, gzip.BadGzipFile)
"""What reading a file can raise when the file is unreadable, truncated or corrupt (not a code defect)."""


def unreadable(file: str, exc: BaseException, *, line: int | None = None) -> InputError:
    """The located error for a file that cannot be read to its end: permission, directory, broken gzip."""
    if isinstance(exc, EOFError | zlib.error | gzip.BadGzipFile):
        reason = f"compressed file is truncated or corrupt ({exc or type(exc).__name__})"
        code = "corrupt_file"
    else:
        reason = f"cannot read file: {getattr(exc, 'strerror', None) or exc}"
        code = "unreadable_file"
    return InputError(Issue(file, code, "error", reason, line))


@dataclass(frozen=True)
class TableLayout:
    """What :func:`sniff_table` learned: the header is on line ``header_line`` (1-based)."""

    path: Path
    display_name: str
    separator: str
    header: list[str]
    header_line: int
    encoding: str
    compressed: bool


def open_text(path: Path) -> io.BufferedReader | gzip.GzipFile:
    """Open a plain or gzip-compressed file for binary reading (gzip detected by magic bytes)."""
    with open(path, "rb") as raw:
        magic = raw.read(2)
    return gzip.open(path, "rb") if magic == b"\x1f\x8b" else open(path, "rb")


def iter_lines(path: Path, *, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """Yield ``(line_number, text)`` with 1-based line numbers and the line ending removed."""
    with open_text(path) as fh:
        for number, raw in enumerate(fh, start=1):
            yield number, raw.decode(encoding, errors="replace").rstrip("\r\n")


def read_lines(path: Path, *, file: str, encoding: str = "utf-8") -> Iterator[tuple[int, str]]:
    """:func:`iter_lines`, with an unreadable or corrupt file raised as a located :class:`InputError`."""
    number = 0
    try:
        for number, text in iter_lines(path, encoding=encoding):
            yield number, text
    except READ_ERRORS as exc:
        raise unreadable(file, exc, line=number + 1 if number else None) from exc


def check_readable(path: Path, *, file: str) -> None:
    """Read the whole file once (decompressing gzip to its end), so a truncated or corrupt stream is a located
    :class:`InputError` now, not an exception when a lazy scan of it is collected later.
    """
    lines = 0
    try:
        with open_text(path) as fh:  # read1: what was decompressed before a broken end is counted
            while chunk := fh.read1(1 << 16):
                lines += chunk.count(b"\n")
    except READ_ERRORS as exc:
        raise unreadable(file, exc, line=lines + 1) from exc


def is_gzipped(path: Path) -> bool:
    """Whether ``path`` starts with gzip's magic bytes (False for what cannot be opened: its reader says why)."""
    if not_a_file(path) is not None:  # a FIFO would block the open: the reader has said what it is
        return False
    try:
        with open(path, "rb") as raw:
            return raw.read(2) == b"\x1f\x8b"
    except OSError:  # missing, a folder, no permission: the reader has said so
        return False


_BGZF_EOF = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
"""The empty block that ends every BGZF file (SAM/BAM specification, section 4.1.2)."""


_PADDING_MIN = 16
"""Zero bytes at the end of a gzip file beyond what its last member may end with (an empty member: 9, its deflate
block's last byte and an all-zero CRC and size): padding after the last member, as a tape or ``dd`` copy writes."""


def check_gzip_end(path: Path, *, file: str, issues: IssueLog, padding_read: bool = False) -> None:
    """Look at the end of a gzip file for what no reader would report by itself (one seek, free beside the read).

    A BGZF file (block gzip, as bgzip / htslib / Bio.bgzf write it: a ``BC`` extra field) without its end-of-file
    block is a ``truncated_bgzf`` warning: a copy or download cut at a block boundary decompresses cleanly, only
    short. htslib warns the same ("EOF marker is absent"); very old writers left the block out, so it still loads.
    Zero padding after the last member (``_PADDING_MIN`` zero bytes or more) is a ``corrupt_file`` error naming
    it: Python's gzip skips it, polars stops at it, and the study failed as an unreadable input of no file
    (``padding_read``: the caller has a reader that skips it, as ``parse_vcf`` has oxbow).
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
            fh.seek(0, 2)
            size = fh.tell()
            fh.seek(max(size - 4096, 0))
            tail = fh.read()
    except OSError:  # missing, a folder, no permission: the reader says so
        return
    bgzf = head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"
    if bgzf and tail.endswith(_BGZF_EOF):
        return
    padding = len(tail) - len(tail.rstrip(b"\x00"))
    if padding >= _PADDING_MIN and not padding_read:
        count = str(padding) if padding < len(tail) else f"at least {padding}"
        raise InputError(Issue(file, "corrupt_file", "error", f"zero bytes follow the gzip stream (the file's last "
                               f"{count} bytes are zeros: padding, as a tape or dd copy writes), which the table "
                               "reader cannot read: recompress the file (gunzip -c FILE | gzip > NEW)"))
    if bgzf:
        issues.warning("truncated_bgzf", "BGZF file without its end-of-file block: it was probably cut short (a "
                       "copy or download that stopped), so its last records may be missing; compare it with its "
                       "source (htslib warns the same)", file=file)


@contextmanager
def stream_checked(path: Path, *, file: str, issues: IssueLog | None = None) -> Iterator[None]:
    """Any failure inside the block, on a gzip file with a cut or corrupt stream, is that stream's located error
    (:func:`check_readable`: the first line not held whole), and the issues the block logged are dropped.

    The check decompresses the whole file with Python's ``gzip`` (~3x polars' own decompression), so it runs only
    when something failed: an intact file is read by the readers alone, and they read every byte of it (polars and
    the Python pre-passes fail on every break ``gzip`` fails on), so a file read without an error is intact. What a
    broken stream makes the readers do (a polars or ``EOFError``, text cut short, rows missing) is never reported:
    the stream's error replaces it, as when the check ran before the readers, and so do the block's other issues.
    """
    before = len(issues.issues) if issues is not None else 0
    try:
        yield
    except Exception:
        if is_gzipped(path):
            try:
                check_readable(path, file=file)
            except InputError:
                if issues is not None:
                    del issues.issues[before:]
                raise
        raise


_P = ParamSpec("_P")
_R = TypeVar("_R")


def checks_stream(parse: Callable[_P, _R]) -> Callable[_P, _R]:
    """:func:`stream_checked` around a reader ``parse(path, *, issues, display_name=None, ...)``."""
    @functools.wraps(parse)
    def checked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        path = args[0] if args else kwargs["path"]
        assert isinstance(path, Path)
        issues = kwargs.get("issues")
        name = kwargs.get("display_name") or path.name
        assert isinstance(name, str)
        with stream_checked(path, file=name, issues=issues if isinstance(issues, IssueLog) else None):
            return parse(*args, **kwargs)
    return checked


_XLS = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
"""The magic bytes of an Excel 97-2003 (.xls) workbook."""


def _zip_content(sample: bytes) -> tuple[str, str]:
    """What a zip file that starts ``sample`` is, from its first member's name (in the local header at byte 30),
    and what to do: a workbook (``[Content_Types].xml`` or ``xl/...``: .xlsx; ``mimetype``: .ods) or an archive.
    """
    length = int.from_bytes(sample[26:28], "little")
    first = sample[30:30 + length].decode("utf-8", errors="replace")
    if first == "[Content_Types].xml" or first.startswith(("xl/", "_rels/", "docProps/")):
        return "an Excel .xlsx workbook", "export the sheet as tab- or comma-separated text (Save As > CSV or Text)"
    if first == "mimetype":
        return "an OpenDocument .ods workbook", "export the sheet as tab- or comma-separated text (Save As > CSV)"
    return f"a zip archive (its first member: {first!r})", "unzip it and name the table inside (or gzip it)"


def _decode(sample: bytes, *, file: str, whole: bool = False) -> tuple[str, str, int | None]:
    """The sniffed start of a file as text, its encoding and the first line that is not UTF-8 (or None)."""
    if sample.startswith(b"\xef\xbb\xbf"):
        return sample[3:].decode("utf-8", errors="replace"), "utf-8-sig", None
    if sample.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InputError(Issue(file, "bad_encoding", "error",
                               "file is UTF-16 encoded; save it as UTF-8 (or Latin-1) text", 1))
    if sample.startswith(_XLS):
        raise InputError(Issue(file, "binary_file", "error", "file is an Excel 97-2003 (.xls) workbook, not "
                               "delimited text: export the sheet as tab- or comma-separated text (Save As > CSV)", 1))
    if sample.startswith(b"PK\x03\x04"):
        what, advice = _zip_content(sample)
        raise InputError(Issue(file, "binary_file", "error", f"file is {what}, not delimited text: {advice}", 1))
    if b"\x00" in sample:
        raise InputError(Issue(file, "binary_file", "error",
                               "file contains NUL bytes: it is binary, not delimited text", 1))
    try:
        return sample.decode("utf-8"), "utf-8", None
    except UnicodeDecodeError as exc:
        if not whole and exc.start >= len(sample) - 4:  # a multi-byte character cut by the sniff window
            return sample[: exc.start].decode("utf-8"), "utf-8", None
        line = sample[: exc.start].count(b"\n") + 1
        # line by line, as the body is read (lines_as_utf8): a UTF-8 header stays UTF-8 in a file with one
        # Windows-1252 row, instead of its sample labels becoming mojibake ('ZÃ¼rich')
        return lines_as_utf8(sample).decode("utf-8"), "latin-1", line


def sniff_table(path: Path, *, issues: IssueLog, display_name: str | None = None,
                comment_prefix: str | None = "#", separators: str = "\t,") -> TableLayout:
    """Find encoding, delimiter and header of a delimited file, or raise :class:`InputError`.

    The first line that is neither blank nor a comment is the header. The delimiter is the candidate that splits
    the header into the most fields (tab wins ties). A Latin-1 file is read with a warning, not rejected.

    A gzip stream broken past the sniffed start is not looked for here: the reader of the layout runs inside
    :func:`stream_checked` (its failure is the stream's located error).
    """
    name = display_name or path.name
    if not path.exists():
        raise InputError(Issue(name, "file_missing", "error", "file does not exist"))
    if (reason := not_a_file(path)) is not None:
        raise InputError(Issue(name, "unreadable_file", "error", reason))
    try:
        with open_text(path) as fh:
            sample = fh.read(_SNIFF_BYTES)
            while not _has_whole_header(sample, comment_prefix) and len(sample) < _MAX_HEADER_BYTES:
                more = fh.read(_SNIFF_BYTES)  # a wide matrix's header (20,000 sample labels) outgrows one window
                if not more:
                    break
                sample += more
            whole = not fh.read(1)  # the sample is the whole file: its last byte cuts no character
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
    except READ_ERRORS as exc:
        if not isinstance(exc, OSError) or isinstance(exc, gzip.BadGzipFile):  # a broken stream, not a permission
            check_readable(path, file=name)  # raises again, with the first line not read whole
        raise unreadable(name, exc) from exc
    if not sample.strip():
        raise InputError(Issue(name, "empty_file", "error", "file is empty"))
    text, encoding, not_utf8 = _decode(sample, file=name, whole=whole)
    if compressed:
        check_gzip_end(path, file=name, issues=issues)
    if not_utf8 is not None:
        issues.warning("bad_encoding", NOT_UTF8, file=name, line=not_utf8)
    lines = text.splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip() or (comment_prefix and line.startswith(comment_prefix)):
            continue
        counts = {sep: line.count(sep) for sep in separators}
        separator = max(separators, key=lambda s: (counts[s], s == "\t"))
        if counts[separator] == 0:
            other = max((s for s in _SEPARATOR_NAMES if s not in separators), key=line.count)
            n = line.count(other)
            wanted = " or ".join(_SEPARATOR_NAMES[s][0] for s in separators).replace(" or ", "- or ", 1)
            found = f"; it holds {n} {_SEPARATOR_NAMES[other][n > 1]} instead: save it {wanted}-separated" if n else ""
            raise InputError(Issue(name, "wrong_delimiter", "error",
                                   f"header has a single field; expected fields separated by "
                                   f"{' or '.join(repr(s) for s in separators)}{found}", number))
        header = [h.strip().strip('"') for h in line.split(separator)]
        _check_header(header, issues=issues, file=name, line=number)
        return TableLayout(path, name, separator, header, number, encoding, compressed)
    raise InputError(Issue(name, "empty_file", "error", "file has no header line (only comments or blanks)"))


_SEPARATOR_NAMES = {"\t": ("tab", "tabs"), ",": ("comma", "commas"), ";": ("';'", "';'"), "|": ("'|'", "'|'"),
                    " ": ("space", "spaces")}
"""Separators a header may hold instead of a reader's own (tab, or tab and comma), as the ``wrong_delimiter`` error
names them (one, several)."""


def _has_whole_header(sample: bytes, comment_prefix: str | None) -> bool:
    """Whether ``sample`` holds the first non-comment, non-blank line up to its line end."""
    prefix = comment_prefix.encode() if comment_prefix else None
    return any(line.strip() and not (prefix and line.startswith(prefix)) for line in sample.split(b"\n")[:-1])


def _check_header(header: list[str], *, issues: IssueLog, file: str, line: int) -> None:
    """Names too long, empty (past the first, which R's row-name column leaves empty) or repeated are errors."""
    unnamed = [number for number, name in enumerate(header[1:], start=2) if name == ""]
    if unnamed:  # before repeats: two empty names are unnamed columns, not a column '' given twice
        trailing = unnamed == list(range(len(header) - len(unnamed) + 1, len(header) + 1))
        where = (f"the last {len(unnamed)} header field(s) have no name (separators at the end of the header, as a "
                 "spreadsheet export writes for formatted empty columns): delete those columns" if trailing
                 else f"header field(s) {', '.join(map(str, unnamed))} have no name")
        raise InputError(Issue(file, "empty_column_name", "error", where, line))
    seen: set[str] = set()
    for number, name in enumerate(header, start=1):
        if len(name) > MAX_IDENTIFIER_CHARS:
            raise InputError(Issue(file, "identifier_too_long", "error",
                                   f"header field {number} has {len(name)} characters; names longer than "
                                   f"{MAX_IDENTIFIER_CHARS} are not read", line, name[:80] + " ..."))
        if name in seen:
            raise InputError(Issue(file, "duplicate_column", "error",
                                   f"column {name!r} appears more than once in the header", line, name))
        seen.add(name)


MAX_RAGGED_REPORTED = 20
"""Ragged rows reported one by one per file; any further ones are counted in one more issue."""


def field_count(line: str, separator: str) -> int:
    """Fields of one line; quote-aware only when the line has a quote (the common case stays a count)."""
    if '"' in line:
        return len(next(csv.reader([line], delimiter=separator)))
    return line.count(separator) + 1


def find_ragged_rows(layout: TableLayout, *, limit: int | None = None, comment_prefix: str | None = "#"
                     ) -> list[tuple[int, int]]:
    """Return ``(line, n_fields)`` of the data lines (up to ``limit``) whose field count differs from the
    header's; blank and comment lines are not data.
    """
    expected = len(layout.header)
    bad: list[tuple[int, int]] = []
    for number, line in read_lines(layout.path, file=layout.display_name, encoding="latin-1"):
        if number <= layout.header_line or not line.strip() or (comment_prefix and line.startswith(comment_prefix)):
            continue
        n = field_count(line, layout.separator)
        if n != expected:
            bad.append((number, n))
            if limit is not None and len(bad) >= limit:
                break
    return bad


def report_ragged_rows(layout: TableLayout, bad: list[tuple[int, int]], *, issues: IssueLog) -> None:
    """One error per ragged row (the row is left out, the rest of the file is still read), at most
    :data:`MAX_RAGGED_REPORTED`; further ragged rows are counted in one more issue.
    """
    width = len(layout.header)
    for number, n in bad[:MAX_RAGGED_REPORTED]:
        issues.error("ragged_row", f"row has {n} fields, the header has {width}; row left out",
                     file=layout.display_name, line=number)
    if len(bad) > MAX_RAGGED_REPORTED:
        rest = bad[MAX_RAGGED_REPORTED:]
        issues.error("ragged_row", f"{len(rest)} more rows do not have {width} fields (from line {rest[0][0]}); "
                     "left out", file=layout.display_name, line=rest[0][0])


def read_table(layout: TableLayout, *, issues: IssueLog, infer_schema: bool = False,
               comment_prefix: str | None = "#") -> pl.DataFrame:
    """Read a small table eagerly (all columns as strings unless ``infer_schema``), with a ``line`` column.

    Ragged rows are reported once each and left out; the other rows are read, so the file's other problems
    are reported too. For clinical files, sample sheets and search-engine outputs; large matrices use polars
    lazily instead.
    """
    def read(source: Path | io.BytesIO) -> pl.DataFrame:
        return pl.read_csv(source, separator=layout.separator, skip_lines=layout.header_line - 1, has_header=True,
                           new_columns=layout.header, infer_schema=infer_schema, comment_prefix=comment_prefix,
                           encoding="utf8-lossy", quote_char='"', truncate_ragged_lines=True)

    try:
        if layout.encoding == "latin-1":  # as the warning says: polars' utf8-lossy made every accented byte U+FFFD
            with open_text(layout.path) as fh:
                frame = read(io.BytesIO(lines_as_utf8(fh.read())))
        else:
            frame = read(layout.path)
            if _has_replacement_char(frame):  # a Latin-1 byte past the sniffed start of the file
                with open_text(layout.path) as fh:
                    raw = fh.read()
                try:
                    raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    line = raw[: exc.start].count(b"\n") + 1
                    issues.warning("bad_encoding", NOT_UTF8, file=layout.display_name, line=line)
                    frame = read(io.BytesIO(lines_as_utf8(raw)))
    except pl.exceptions.PolarsError as exc:
        raise InputError(Issue(layout.display_name, "unreadable_table", "error",
                               f"cannot parse table: {exc}")) from exc
    except READ_ERRORS as exc:
        raise unreadable(layout.display_name, exc) from exc
    numbers, ragged = _data_lines(layout, comment_prefix=comment_prefix)
    if len(numbers) != frame.height:  # quoted multi-line fields: positional numbering, lines are not rows
        numbers = list(range(layout.header_line + 1, layout.header_line + 1 + frame.height))
        ragged = []
    frame = frame.with_columns(pl.Series("line", numbers, dtype=pl.Int64))
    if not ragged:
        return frame
    # polars pads a short row with nulls and truncates a long one (as told): neither may pass silently
    report_ragged_rows(layout, ragged, issues=issues)
    return frame.filter(~pl.col("line").is_in([number for number, _ in ragged]))


NOT_UTF8 = "line is not valid UTF-8; it and every other such line of the file are read as Windows-1252"
"""The ``bad_encoding`` warning of a text file with lines that are not UTF-8 (at the first such line)."""


def is_utf8(raw: bytes) -> bool:
    """Whether ``raw`` decodes as UTF-8."""
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def lines_as_utf8(raw: bytes) -> bytes:
    """``raw`` in UTF-8, each line that is not valid UTF-8 read as Windows-1252 (what Excel's "CSV" writes; a
    superset of Latin-1's printable characters, its five undefined bytes read as Latin-1): a UTF-8 file with one
    stray byte keeps its other accented characters, and Excel's curly quotes and euro sign are not control bytes.
    """
    out = []
    for line in raw.splitlines(keepends=True):
        out.append(line if is_utf8(line) else line.decode("cp1252", errors=_LATIN1_FALLBACK).encode("utf-8"))
    return b"".join(out)


TRANSCODE_CHUNK_BYTES = 8 * 1024 * 1024
"""Bytes of a file :func:`staged_as_utf8` holds at a time (whole lines: a chunk ends after its last newline)."""


def staged_as_utf8(path: Path, *, chunk_bytes: int | None = None) -> IO[bytes]:
    """The (plain or gzip) file at ``path`` in UTF-8 (:func:`lines_as_utf8`), transcoded ``chunk_bytes`` of whole
    lines at a time (default :data:`TRANSCODE_CHUNK_BYTES`) into an anonymous temporary file (no name: the system
    frees its space once the last handle is closed), returned open at its start. polars' scan of it takes its own
    handle, so the scans' plans keep the text for as long as they live and no longer; the file held in memory cost
    ~3x its size (bytes read, lines, joined result). A file whose lines end in a bare CR is held whole.
    """
    staged = tempfile.TemporaryFile(prefix="omicsdw-utf8-")  # noqa: SIM115 (returned open: the caller's to close)
    try:
        with open_text(path) as fh:
            # The chunks since the last newline, joined once: a bare-CR file ("CSV (Macintosh)") has none, and
            # appending to one buffer and searching all of it at each chunk was quadratic in the file's size.
            pending: list[bytes] = []
            while chunk := fh.read(chunk_bytes or TRANSCODE_CHUNK_BYTES):
                end = chunk.rfind(b"\n") + 1  # the last newline of the text read so far is in the new chunk or
                if not end:  # in none of the pending ones (each was cut after its own)
                    pending.append(chunk)
                    continue
                pending.append(chunk[:end])
                staged.write(lines_as_utf8(_joined(pending)))
                pending = [chunk[end:]]
            staged.write(lines_as_utf8(_joined(pending)))
        staged.seek(0)
    except BaseException:
        staged.close()
        raise
    return staged


def _joined(pieces: list[bytes]) -> bytes:
    """The pieces as one bytes, the list emptied: the pieces are not held beside the joined copy while it is
    transcoded (a bare-CR file is one piece per chunk of the whole file).
    """
    joined = b"".join(pieces)
    pieces.clear()
    return joined


def _latin1_for_undefined(error: UnicodeError) -> tuple[str, int]:
    assert isinstance(error, UnicodeDecodeError)
    return error.object[error.start:error.end].decode("latin-1"), error.end


_LATIN1_FALLBACK = "omicsdw-latin-1"
codecs.register_error(_LATIN1_FALLBACK, _latin1_for_undefined)


def _has_replacement_char(frame: pl.DataFrame) -> bool:
    """Whether any text cell holds U+FFFD, which polars' utf8-lossy puts in place of each invalid UTF-8 byte."""
    text = [c for c, t in frame.schema.items() if t == pl.String]
    return bool(text) and bool(frame.select(pl.any_horizontal(
        pl.col(c).str.contains("\ufffd", literal=True).any() for c in text)).item())


def _data_lines(layout: TableLayout, *, comment_prefix: str | None) -> tuple[list[int], list[tuple[int, int]]]:
    """One pass: the 1-based line of each data row (comment and blank lines skipped, as polars does) and the
    ``(line, n_fields)`` of rows whose field count is not the header's.
    """
    numbers: list[int] = []
    ragged: list[tuple[int, int]] = []
    width = len(layout.header)
    for number, line in read_lines(layout.path, file=layout.display_name, encoding="latin-1"):
        if number <= layout.header_line:
            continue
        if not line.strip() or (comment_prefix and line.startswith(comment_prefix)):
            continue
        numbers.append(number)
        n = field_count(line, layout.separator)
        if n != width:
            ragged.append((number, n))
    return numbers, ragged
