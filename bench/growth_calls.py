"""Per-call CPU of lake parts whose cost may grow with the studies in a warehouse, in this process, on its code.

Run it from a checkout (the code measured is the one imported from the current directory) on a copy of a
many-study warehouse, alternating two checkouts in fresh processes (bench/README.md, "Session 9: growth with the
warehouse"):

    python bench/growth_calls.py WAREHOUSE_COPY
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, os.getcwd())

from schemas.tables import TABLES
from warehouse.catalog import visible_files
from warehouse.lake import Lake
from warehouse.report import write_report_index


def per_call_ms(function: Callable[[], Any], n: int) -> float:
    """Mean CPU ms of ``function`` over ``n`` calls after one warm-up call."""
    function()
    start = time.process_time()
    for _ in range(n):
        function()
    return (time.process_time() - start) / n * 1000


def main() -> None:
    warehouse = Path(sys.argv[1])
    lake = Lake(warehouse / "lake")
    tables = [t for t in TABLES if lake.exists(t)]
    for table in tables:  # held open, as a build holds them
        lake.delta(table)
    figures = {"exists_all_tables_ms": per_call_ms(lambda: [lake.exists(t) for t in tables], 20),
               "n_tables": len(tables),
               "write_report_index_ms": per_call_ms(lambda: write_report_index(lake, warehouse), 10),
               "visible_files_all_ms": per_call_ms(lambda: visible_files(lake), 10),
               "untouched_since_ms": per_call_ms(
                   lambda: [lake._untouched_since(t, 1, "synth_0001") for t in tables], 20)}
    print(json.dumps({"code": os.getcwd(), **{k: round(v, 3) for k, v in figures.items()}}))


if __name__ == "__main__":
    main()
