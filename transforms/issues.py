"""The one issue collector: every problem found in an input file becomes a row of ``ingest_issues``.

Parsers and harmonisers never print or silently skip; they record an :class:`Issue` naming the file, the
1-based line, the column and a stable ``code``. ``error`` issues fail the study (its previous good version stays
readable), ``warning`` issues are reported and the affected records are kept or quarantined, ``info`` issues
say what was skipped by design (an unknown cBioPortal datatype, a decoy protein group).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import polars as pl

Severity = Literal["error", "warning", "info"]



def __getattr__(name: str) -> pl.Schema:
    """``ISSUE_SCHEMA``: the columns of ``ingest_issues`` from its one contract in :mod:`schemas.tables`, imported
    on first use so that parsers (which only record issues) do not load pandera and pandas.
    """
    if name == "ISSUE_SCHEMA":
        from schemas.tables import polars_schema

        return polars_schema("ingest_issues")
    raise AttributeError(name)


MAX_RECORD_CHARS = 2000
"""``record`` (and ``column``, ``message``) of an issue are cut to this many characters (marked ``...``): an
input line or cell of megabytes is reported, never stored whole in ``ingest_issues``."""


def clip(text: str | None, limit: int = MAX_RECORD_CHARS) -> str | None:
    """``text`` cut to ``limit`` characters, marked with `` ...`` when cut."""
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + " ..."


@dataclass(frozen=True)
class Issue:
    """One problem in one place of one input file; ``record`` holds the offending raw row when there is one."""

    file: str
    code: str
    severity: Severity
    message: str
    line: int | None = None
    column: str | None = None
    record: str | None = None

    def __post_init__(self) -> None:
        for name in ("message", "column", "record"):
            value = getattr(self, name)
            if isinstance(value, str) and len(value) > MAX_RECORD_CHARS:
                object.__setattr__(self, name, clip(value))

    def __str__(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
        if self.column is not None:
            where += f" column {self.column!r}"
        return f"{self.severity.upper()} [{self.code}] {where}: {self.message}"


class InputError(Exception):
    """A file cannot be read at all; carries the issue so the caller can log it and go on with the next file."""

    def __init__(self, issue: Issue):
        super().__init__(str(issue))
        self.issue = issue


@dataclass
class IssueLog:
    """Collects issues for one study; ``to_frame`` gives the rows of ``ingest_issues``."""

    study_id: str
    issues: list[Issue] = field(default_factory=list)

    def add(self, issue: Issue) -> None:
        self.issues.append(issue)

    def error(self, code: str, message: str, *, file: str, line: int | None = None,
              column: str | None = None, record: str | None = None) -> None:
        self.add(Issue(file, code, "error", message, line, column, record))

    def warning(self, code: str, message: str, *, file: str, line: int | None = None,
                column: str | None = None, record: str | None = None) -> None:
        self.add(Issue(file, code, "warning", message, line, column, record))

    def info(self, code: str, message: str, *, file: str, line: int | None = None,
             column: str | None = None, record: str | None = None) -> None:
        self.add(Issue(file, code, "info", message, line, column, record))

    def extend_from_frame(self, frame: pl.DataFrame, *, file: str, code: str, severity: Severity,
                          message: str) -> None:
        """Record one issue per row of ``frame`` (columns ``line``, optional ``column``, ``record``, ``reason``)."""
        for row in frame.iter_rows(named=True):
            self.add(Issue(file, code, severity, row.get("reason") or message, row.get("line"),
                           row.get("column"), row.get("record")))

    @property
    def errors(self) -> list[Issue]:
        return [i for i in self.issues if i.severity == "error"]

    @property
    def has_errors(self) -> bool:
        return any(i.severity == "error" for i in self.issues)

    def to_frame(self) -> pl.DataFrame:
        """One row per issue: the grain of the ``ingest_issues`` table.

        An issue found twice (two assays reading one file, as RSEM counts and TPM do) is one row, not two.
        """
        return pl.DataFrame(
            [
                {"study_id": self.study_id, "file": i.file, "line": i.line, "column": i.column,
                 "code": i.code, "severity": i.severity, "message": i.message, "record": i.record}
                for i in dict.fromkeys(self.issues)
            ],
            schema=__getattr__("ISSUE_SCHEMA"),
        )
