"""Do two warehouses built from the same folders hold the same rows? Every Delta table and every catalog view.

Compares each Delta table at its newest version and each view of the catalog (what readers see), sorted, value
for value, without what differs between two builds of the same input: load and publication times (datetime
columns) and the Parquet file names ``study_versions`` lists. Prints one line per table or view; exit 1 on any
difference. Used to check that a speed change leaves every row as it was (``bench/README.md``).

Every column but the floating-point ones must be equal; float columns are equal within ``--rtol`` (relative to the
larger magnitude; default 0: bit for bit). Two builds of the same code in two processes already differ in the last
bits of some statistics (summation order), so a change is judged against that floor: compare two builds of the old
code, then the old against the new, with the same ``--rtol``; the largest relative difference per table is printed.

Builds by two code versions also differ in the hashes that include the code's fingerprint (a code change
reprocesses every study): leave them out with ``--ignore`` (``studies.content_hash``, ``study_versions.fingerprint``,
``signature_matches.target_version``).

    python bench/compare_warehouses.py WAREHOUSE_A WAREHOUSE_B [--rtol 1e-6] [--ignore TABLE.COLUMN ...]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import polars as pl

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from warehouse.catalog import connect
from warehouse.lake import Lake

IGNORED: set[tuple[str, str]] = set()
"""(table or view, column) pairs left out of the comparison (``--ignore``)."""


def _comparable(frame: pl.DataFrame, name: str) -> pl.DataFrame:
    drop = [c for c, t in frame.schema.items()
            if isinstance(t, pl.Datetime) or c == "files" or (name, c) in IGNORED]
    frame = frame.drop(drop)
    return frame.sort([c for c, t in frame.schema.items() if not isinstance(t, pl.List | pl.Array | pl.Struct)],
                      nulls_last=True)


def delta_tables(warehouse: Path) -> dict[str, pl.DataFrame]:
    """Every Delta table of the lake at its newest version."""
    lake = Lake(warehouse / "lake")
    return {folder.name: _comparable(lake.scan(folder.name).collect(), folder.name)
            for folder in sorted((warehouse / "lake").iterdir()) if (folder / "_delta_log").is_dir()}


def catalog_views(warehouse: Path) -> dict[str, pl.DataFrame]:
    """Every table and view of the catalog, as a reader's session returns it."""
    con = connect(warehouse)
    try:
        names = [n for (n,) in con.execute("SELECT table_name FROM information_schema.tables ORDER BY 1").fetchall()]
        return {n: _comparable(pl.from_arrow(con.sql(f'SELECT * FROM "{n}"').to_arrow_table()), n)  # type: ignore[arg-type]
                for n in names}
    finally:
        con.close()


def difference(a: pl.DataFrame, b: pl.DataFrame) -> tuple[bool, float]:
    """Whether every non-float column is equal, and the largest relative difference of the float columns."""
    if a.schema != b.schema or a.height != b.height:
        return False, float("inf")
    floats = [c for c, t in a.schema.items() if t.is_float()]
    if not a.drop(floats).equals(b.drop(floats)):
        return False, float("inf")
    largest = 0.0
    for c in floats:
        pair = pl.DataFrame({"x": a[c], "y": b[c]})
        if not pair.select((pl.col("x").is_null() == pl.col("y").is_null()).all()
                           & (pl.col("x").is_nan() == pl.col("y").is_nan()).all()).item():
            return False, float("inf")
        scale = pl.max_horizontal(pl.col("x").abs(), pl.col("y").abs())
        rel = pair.select(((pl.col("x") - pl.col("y")).abs() / scale)
                          .filter((pl.col("x") != pl.col("y")) & scale.is_finite()).max()).item()
        largest = max(largest, float(rel or 0.0))
    return True, largest


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path)
    parser.add_argument("second", type=Path)
    parser.add_argument("--rtol", type=float, default=0.0, help="relative tolerance of float columns")
    parser.add_argument("--ignore", action="append", default=[], metavar="TABLE.COLUMN",
                        help="a column left out, in the table and the view of that name (repeatable)")
    args = parser.parse_args()
    IGNORED.update(tuple(i.split(".", 1)) for i in args.ignore)  # type: ignore[misc]
    differ = 0
    for kind, read in (("table", delta_tables), ("view", catalog_views)):
        a, b = read(args.first), read(args.second)
        for name in sorted(a.keys() | b.keys()):
            if name not in a or name not in b:
                print(f"{kind} {name}: only in {args.first if name in a else args.second}")
                differ += 1
                continue
            exact, rel = difference(a[name], b[name])
            same = exact and rel <= args.rtol
            differ += not same
            print(f"{kind} {name}: {a[name].height} rows, {'same' if same else 'DIFFERENT'}"
                  + (f", floats within {rel:.1e} relative" if exact and rel else "")
                  + ("" if exact else f" (other columns or {b[name].height} rows in {args.second})"))
    print(f"{differ} difference(s) beyond a relative {args.rtol:g} in float columns")
    return 1 if differ else 0


if __name__ == "__main__":
    raise SystemExit(main())
