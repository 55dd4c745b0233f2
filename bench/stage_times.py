"""CPU seconds of the stages after normalise, called in-process on a warehouse that already holds the study.

Runs ``qc_study`` (``sample_qc``), ``structure_study`` (``sample_embeddings`` / ``sample_clusters``, with consensus
clustering timed on its own), and the report's reads (``read_study_report``) and page (``study_report_html``) of
one study, without Dagster or writes, and prints their process CPU seconds as JSON. The code measured is the one on
``PYTHONPATH`` (or this checkout), so two code versions can run alternately on the same warehouse:

    PYTHONPATH=DIR python bench/stage_times.py WAREHOUSE STUDY_ID
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not any(Path(p, "transforms").is_dir() for p in sys.path[1:] if p):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import polars as pl

import transforms.qc.study as stage
from transforms.qc.study import qc_study, structure_study
from transforms.report.html import study_report_html
from warehouse.report import read_study_report, study_session
from warehouse.storage import open_lake
from warehouse.study import StudyInputs

SPENT: dict[str, float] = {}


def timed(name: str, function: Callable[[], Any]) -> Any:
    start = time.process_time()
    result = function()
    SPENT[name] = round(time.process_time() - start, 3)
    return result


def main() -> None:
    warehouse, study_id = Path(sys.argv[1]), sys.argv[2]
    lake = open_lake(str(warehouse), None)
    consensus = stage.qc.consensus_clusters
    stage.qc.consensus_clusters = lambda *a, **k: timed("consensus_clusters", lambda: consensus(*a, **k))

    def qc() -> list[Any]:
        inputs = StudyInputs.of(lake, study_id, after_qc=False)
        mito = lake.scan("genes").filter(pl.col("chromosome") == "MT").select("gene_id").collect()["gene_id"]
        with tempfile.TemporaryDirectory() as workdir:
            return list(qc_study(inputs.scan("rna_counts"), mito, settings=inputs.manifest.qc,
                                 workdir=workdir).frames)

    def structure() -> list[Any]:
        inputs = StudyInputs.of(lake, study_id)
        with tempfile.TemporaryDirectory() as workdir:
            return list(structure_study(inputs.scan("rna_vst"), inputs.scan("rna_normalized"),
                                        settings=inputs.manifest.qc, workdir=workdir).frames)

    def report() -> None:
        con = study_session(lake, study_id)
        try:
            data = timed("report queries", lambda: read_study_report(con, study_id,
                                                                     folder=warehouse / "reports" / study_id))
        finally:
            con.close()
        timed("report page", lambda: study_report_html(data))

    timed("qc_study", qc)
    timed("structure_study", structure)
    timed("report", report)
    print(json.dumps(SPENT))


if __name__ == "__main__":
    main()
