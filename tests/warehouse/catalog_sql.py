"""Read-only SQL on a built warehouse's catalog, for the end-to-end tests."""

from pathlib import Path

import warehouse


def sql(wh: Path, query: str) -> list[tuple]:
    """All rows of ``query``; the connection is closed so later builds can swap the catalog."""
    con = warehouse.connect(wh)
    try:
        return con.sql(query).fetchall()
    finally:
        con.close()
