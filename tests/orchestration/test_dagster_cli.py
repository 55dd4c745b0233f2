"""The documented command line materialises one study partition through Dagster, in a fresh DAGSTER_HOME."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import dagster as dg
import polars as pl
import pytest

from tests.warehouse.catalog_sql import sql
from warehouse.lake import Lake

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.slow


def _materialize(tmp_path: Path, groups: str, *, executor: str | None = None) -> tuple[Path, list]:
    """``dagster asset materialize`` of airway's assets in ``groups`` in a fresh DAGSTER_HOME; the warehouse folder
    and the run's event log entries."""
    landing, wh, home = tmp_path / "landing", tmp_path / "wh", tmp_path / "dagster_home"
    shutil.copytree(REPO / "examples" / "airway", landing / "airway")
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {**os.environ, "DAGSTER_HOME": str(home), "OMICSDW_LANDING": str(landing), "OMICSDW_WAREHOUSE": str(wh)}
    env.pop("OMICSDW_EXECUTOR", None)
    if executor is not None:
        env["OMICSDW_EXECUTOR"] = executor
    saved = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)
    try:
        with dg.DagsterInstance.get() as instance:
            instance.add_dynamic_partitions("studies", ["airway"])
        subprocess.run([str(Path(sys.executable).with_name("dagster")), "asset", "materialize", "-m",
                        "orchestration.definitions", "--select", groups, "--partition", "airway"],
                       check=True, env=env, cwd=REPO, capture_output=True, timeout=600)
        with dg.DagsterInstance.get() as instance:
            (run,) = instance.get_runs()
            events = [r.event_log_entry for r in instance.get_records_for_run(run.run_id, limit=100_000).records]
    finally:
        if saved is None:
            del os.environ["DAGSTER_HOME"]
        else:
            os.environ["DAGSTER_HOME"] = saved
    return wh, events


def _times(events: list, kind: dg.DagsterEventType) -> list[float]:
    return [e.timestamp for e in events if e.dagster_event and e.dagster_event.event_type == kind]


def test_asset_materialize_ends_within_seconds_of_its_last_step_with_genes_filled(tmp_path: Path) -> None:
    groups = ("group:ingest or group:normalise or group:signatures or group:cross_omics or group:qc or "
              "group:publish or group:report")
    wh, events = _materialize(tmp_path, groups)  # the default executor: every step in the run's process
    steps, (end,) = _times(events, dg.DagsterEventType.STEP_SUCCESS), _times(events, dg.DagsterEventType.RUN_SUCCESS)
    assert len(steps) == 10  # ingest, sample QC, normalise, DE, signature scores, enrichment, cross-omics, QC
    # structure (PCA, clusters), publish, report
    assert end - max(steps) < 10
    assert len({e.dagster_event.pid for e in events if e.dagster_event and e.dagster_event.is_step_event}) == 1
    assert sql(wh, "SELECT count(*) FROM genes") == [(77614,)]  # transforms/ingest/reference/release.json: 77,614 genes
    assert sql(wh, "SELECT count(*) FROM rna_expression WHERE symbol IS NOT NULL")[0][0] > 0


def test_asset_materialize_on_the_multiprocess_executor_ends_within_seconds_of_its_last_step(tmp_path: Path
                                                                                          ) -> None:
    wh, events = _materialize(tmp_path, "group:ingest or group:normalise", executor="multiprocess")
    steps, (end,) = _times(events, dg.DagsterEventType.STEP_SUCCESS), _times(events, dg.DagsterEventType.RUN_SUCCESS)
    assert len(steps) == 3  # ingest, normalise, DE: each in its own process
    assert len({e.dagster_event.pid for e in events if e.dagster_event and e.dagster_event.is_step_event}) == 3
    assert end - max(steps) < 10  # a lingering worker pool kept the DE step's process alive for 300 s
    de = Lake(wh / "lake").scan("differential_expression", study_id="airway")  # committed; published by publish
    assert de.select(pl.len()).collect().item() > 0
