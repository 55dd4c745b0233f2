"""The omicsdw command as a user meets it: bad folders, typos that would wipe a study, removal, read-only SQL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import warehouse
from tests.warehouse.catalog_sql import sql
from warehouse.cli import main

OMICSDW = str(Path(sys.executable).with_name("omicsdw"))
pytestmark = pytest.mark.slow


def test_build_reports_a_bad_folder_and_still_loads_and_rebuilds_the_others(tmp_path: Path, capsys,
                                                                             example_landing, study_folder) -> None:
    landing, wh = example_landing(tmp_path, "airway"), tmp_path / "wh"
    study_folder(landing, "study_id: [x\n", name="a=b")  # broken YAML: the folder name would be the id
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 1
    assert "a=b/study.yaml" in capsys.readouterr().err
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 1  # the catalog still rebuilds
    assert sql(wh, "SELECT DISTINCT study_id FROM studies") == [("airway",)]
    assert sql(wh, "SELECT count(*) FROM ingest_issues WHERE study_id = 'a=b'") == [(0,)]


def test_build_of_a_landing_whose_every_study_has_a_problem_does_not_say_it_holds_no_study(
        tmp_path: Path, capsys, example_landing) -> None:
    """Two folders declaring one id: neither loads, and 'no study folders (study.yaml or meta_study.txt)' sent the
    user looking for missing manifests in a landing that has two."""
    landing = example_landing(tmp_path, "airway", "pasilla")
    manifest = landing / "pasilla" / "study.yaml"
    manifest.write_text(manifest.read_text().replace("study_id: pasilla", "study_id: airway"))
    assert main(["build", "--landing", str(landing), "--warehouse", str(tmp_path / "wh")]) == 2
    err = capsys.readouterr().err
    assert err.count("[duplicate_study_id]") == 2
    assert "no study folders" not in err
    assert err.splitlines()[-1] == f"no study of {landing} can be built: every study folder has a problem above"


def test_build_into_a_read_only_warehouse_says_so_before_any_step(tmp_path: Path, capsys, example_landing,
                                                                  monkeypatch) -> None:
    """On a read-only mount every step failed on its lock file, and the build said 'the gene reference did not
    load' and sent the user to doctor for damage there is none of."""
    landing, wh = example_landing(tmp_path, "airway"), tmp_path / "wh"
    (wh / "lake").mkdir(parents=True)
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: mode != os.W_OK and access(path, mode, **kw))
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"omicsdw build: the warehouse cannot be written ({wh} is read-only"), err
    assert "gene reference" not in err
    assert list((wh / "lake").iterdir()) == []


def test_build_into_a_read_only_lake_given_by_lake_says_so_before_any_step(tmp_path: Path, capsys, example_landing,
                                                                           monkeypatch) -> None:
    """A local --lake outside the warehouse folder on a read-only mount: only the warehouse and WAREHOUSE/lake
    were looked at, so every step failed on the lake and the build blamed the gene reference."""
    landing, wh, lake = example_landing(tmp_path, "airway"), tmp_path / "wh", tmp_path / "mnt" / "lake"
    lake.mkdir(parents=True)
    monkeypatch.delenv("OMICSDW_LAKE", raising=False)
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: access(path, mode, **kw) and not (
        mode == os.W_OK and Path(path).resolve().is_relative_to(lake.resolve())))
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh), "--lake", str(lake)]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"omicsdw build: the warehouse cannot be written ({lake} is read-only"), err
    assert "gene reference" not in err
    assert list(lake.iterdir()) == []


def test_a_second_build_of_a_study_waits_for_the_first_then_finds_it_unchanged(tmp_path: Path, capsys,
                                                                              example_landing) -> None:
    """Two builds of one study ran in lockstep (the study's lock is per step): each ran every step. Now a build
    holds the study for its whole run; the other says whom it waits for, then finds the study unchanged."""
    import socket
    import threading

    from warehouse.storage import open_lake

    landing, wh = example_landing(tmp_path, "airway"), tmp_path / "wh"
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots"]) == 0
    capsys.readouterr()
    held, release = threading.Event(), threading.Event()

    def first_build() -> None:  # stands for another `omicsdw build` of airway, in its run
        with open_lake(wh).study_build("airway"):
            held.set()
            release.wait(30)

    holder = threading.Thread(target=first_build)
    holder.start()
    assert held.wait(10)
    threading.Timer(2.0, release.set).start()
    start = time.monotonic()
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots"]) == 0
    holder.join(10)
    out = capsys.readouterr().out
    assert time.monotonic() - start >= 2.0
    line = next(t for t in out.splitlines() if t.startswith("[1/1] airway"))
    assert line.startswith(f"[1/1] airway ... waiting for another build of it (process {os.getpid()} on "
                           f"{socket.gethostname()}) to finish ... unchanged ("), line


def test_build_into_a_writable_lake_given_by_lake_is_not_refused_for_a_read_only_lake_it_does_not_use(
        tmp_path: Path, capsys, example_landing, monkeypatch) -> None:
    """--lake names a new writable lake; a stale $OMICSDW_LAKE names a read-only one: the up-front check looked at
    both (and the recorded lake) and refused the build, though --lake is the one it writes."""
    landing, wh = example_landing(tmp_path, "airway"), tmp_path / "wh"
    lake, stale = tmp_path / "new" / "lake", tmp_path / "mnt" / "lake"
    stale.mkdir(parents=True)
    monkeypatch.setenv("OMICSDW_LAKE", str(stale))
    access = os.access
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: access(path, mode, **kw) and not (
        mode == os.W_OK and Path(path).resolve().is_relative_to(stale.resolve())))
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh), "--lake", str(lake),
                 "--no-plots"]) == 0, capsys.readouterr().err
    assert sql(wh, "SELECT count(*) FROM rna_counts") == [(160,)]
    assert (lake / "rna_counts").is_dir()
    assert list(stale.iterdir()) == []


def test_build_refuses_a_typo_that_would_empty_a_study_until_it_is_removed(tmp_path: Path, capsys,
                                                                            example_landing) -> None:
    landing, wh = example_landing(tmp_path, "airway"), tmp_path / "wh"
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0
    (n,) = sql(wh, "SELECT count(*) FROM rna_counts")[0]
    assert n == 160  # 20 genes x 8 samples (awk 'NR>2' featurecounts.txt | wc -l = 20)
    manifest = landing / "airway" / "study.yaml"
    manifest.write_text(manifest.read_text().replace("assays:", "assay:"))
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 1
    out = capsys.readouterr().out
    assert "did you mean 'assays'" in out + str(sql(wh, "SELECT message FROM ingest_issues"))
    assert "failed with 1 error(s); previous data kept:" in out  # it was published before (a new one: not)
    assert sql(wh, "SELECT count(*) FROM rna_counts") == [(160,)]  # previous data kept
    assert sql(wh, "SELECT code FROM ingest_issues WHERE severity = 'error'") == [("study_would_be_emptied",)]
    assert (wh / "reports" / "airway" / "index.html").is_file()
    assert 'href="airway/index.html"' in (wh / "reports" / "index.html").read_text()
    assert main(["remove", "airway", "--warehouse", str(wh)]) == 0
    assert sql(wh, "SELECT count(*) FROM rna_counts") == [(0,)]
    assert sql(wh, "SELECT count(*) FROM studies") == [(0,)]
    assert not (wh / "reports" / "airway").exists()  # the report goes with the study, and the index drops it
    assert "airway" not in (wh / "reports" / "index.html").read_text()
    assert sql(wh, "SELECT count(*) FROM study_reports") == [(0,)]


def test_validate_reports_what_build_rejects_with_file_line_and_column(tmp_path: Path, capsys,
                                                                      study_folder) -> None:
    landing = tmp_path / "landing"
    study_folder(landing, "study_id: cn\nname: cn\nassays:\n  - {name: gistic, kind: copy_number, "
                 "format: gistic, path: cn.tsv, gene_id_type: symbol}\n",
                 {"cn.tsv": "Hugo_Symbol\ts1\ts2\nTP53\t-1\t0\nMYC\t2\t5\n"}, name="cn")  # 5 is no GISTIC call
    assert main(["validate", str(landing), "--format", "json"]) == 1
    report = json.loads(capsys.readouterr().out)
    (issue,) = [i for s in report["studies"] for i in s["issues"] if i["severity"] == "error"]
    located = (issue["file"], issue["line"], issue["column"], issue["code"])
    assert located == ("cn.tsv", 3, "s2", "invalid_value")
    assert main(["build", "--landing", str(landing), "--warehouse", str(tmp_path / "wh")]) == 1
    rows = sql(tmp_path / "wh", "SELECT file, line, \"column\", code FROM ingest_issues WHERE severity = 'error'")
    assert rows == [located]


def test_sql_runs_reads_only(tmp_path: Path, capsys, example_landing) -> None:
    landing, wh = example_landing(tmp_path, "airway"), tmp_path / "wh"
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0
    target = tmp_path / "out.csv"
    assert main(["sql", f"COPY (SELECT 1) TO '{target}'", "--warehouse", str(wh)]) == 1
    assert main(["sql", "SELECT * FROM read_csv('/etc/passwd')", "--warehouse", str(wh)]) == 1
    assert not target.exists()
    assert "refused: COPY" in capsys.readouterr().err
    assert main(["sql", "SELECT 1", "--warehouse", str(tmp_path / "none")]) == 1
    assert "build the warehouse first" in capsys.readouterr().err


def test_cli_starts_fast_and_says_its_version() -> None:
    start = time.monotonic()
    out = subprocess.run([OMICSDW, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("omicsdw ")
    assert time.monotonic() - start < 1.5
    help_text = subprocess.run([OMICSDW, "sql", "--help"], capture_output=True, text=True, check=True).stdout
    assert "`" not in help_text
    assert "--warehouse" in help_text
    assert "SELECT" in help_text


PER_STUDY = ("samples", "rna_counts", "rna_normalized", "rna_vst", "rna_sample_factors", "differential_expression",
             "sample_qc")
"""Tables whose rows of a study depend on that study's folder alone (not on the other studies of the landing)."""


def _study_rows(wh: Path, table: str, studies: tuple[str, ...]) -> pl.DataFrame:
    """The studies' rows of a table in one order, without load times (they differ between builds)."""
    con = warehouse.connect(wh)
    try:
        frame = con.sql(f"SELECT * FROM {table} WHERE study_id IN {tuple(studies)}").pl()
    finally:
        con.close()
    frame = frame.drop([c for c, t in frame.schema.items() if isinstance(t, pl.Datetime)])
    return frame.sort([c for c, t in frame.schema.items() if not t.is_float()], nulls_last=True)


def test_two_builds_of_two_studies_at_once_commit_each_once_and_equal_one_build(tmp_path: Path, example_landing,
                                                                                  examples_built) -> None:
    # One build takes airway then pasilla, the other pasilla then airway: each first builds its own study while
    # the other commits to the same tables (as two Dagster study runs of the pool do), then waits for the lock
    # of the study the other holds and finds its work done.
    from warehouse.lake import STUDY_KEY, Lake

    studies = ("airway", "pasilla")
    landing, wh = example_landing(tmp_path, *studies), tmp_path / "wh"
    command = [OMICSDW, "build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots"]
    runs = [subprocess.Popen([*command, "--study", first, "--study", second], stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True) for first, second in (studies, studies[::-1])]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    lake = Lake(wh / "lake")
    for table in ("studies", "rna_counts", "rna_normalized", "differential_expression", "study_versions"):
        history = [c.get(STUDY_KEY) for c in lake.delta(table).history()]
        assert [history.count(s) for s in studies] == [1, 1], table
    pasilla = pl.read_csv(landing / "pasilla" / "counts.tsv", separator="\t")  # genes x 7 samples, every cell
    cells = [("airway", 160), ("pasilla", pasilla.height * (pasilla.width - 1))]  # airway: 20 genes x 8 samples
    assert sql(wh, "SELECT study_id, count(*) FROM rna_counts GROUP BY 1 ORDER BY 1") == cells
    for table in PER_STUDY:  # as the serial build of the examples, to the last bits of float summation order
        both, serial = _study_rows(wh, table, studies), _study_rows(examples_built[1], table, studies)
        assert both.height > 0, table
        assert_frame_equal(both, serial, rel_tol=1e-12)


def test_build_rebuilds_the_catalog_after_a_changed_study_and_at_the_end_and_the_report_needs_none(
        tmp_path: Path, monkeypatch, example_landing) -> None:
    """Not after every commit readers see (the gene dimension, ingest_issues, the publication), nor for the report:
    each rebuild binds every table's files. The first changed study is shown as soon as it is done; a build that
    changed nothing rebuilds once, at the end.
    """
    import orchestration.resources
    from warehouse.catalog import refresh_catalog

    shown: list[list[tuple]] = []

    def counted(lake, folder):  # type: ignore[no-untyped-def]
        refresh_catalog(lake, folder)
        shown.append(sql(folder, "SELECT study_id FROM studies"))
    monkeypatch.setattr(orchestration.resources, "refresh_catalog", counted)
    landing, wh = example_landing(tmp_path, "pasilla"), tmp_path / "wh"
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0
    assert shown == [[("pasilla",)], [("pasilla",)]]  # after the study, and at the end
    assert (wh / "reports" / "pasilla" / "index.html").is_file()
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0  # unchanged
    assert len(shown) == 3
    assert sql(wh, "SELECT study_id, count(*) FROM samples GROUP BY study_id") == [("pasilla", 7)]


def test_build_writes_the_report_index_with_each_catalog_rebuild_not_after_every_report(
        tmp_path: Path, monkeypatch, example_landing) -> None:
    """The index lists every study: written after each study's report it was ~40-80 ms a small study. A build
    writes it after each catalog rebuild instead (after the first changed study, at the pace, and at the end), so
    it lists every study the build published; a report made by Dagster (the default resource) still writes it.
    """
    import orchestration.resources
    import warehouse.report
    from orchestration.resources import WarehouseResource
    from warehouse.catalog import refresh_catalog

    done: list[tuple[str, str]] = []
    index = warehouse.report.write_report_index

    def counted_index(lake, folder):  # type: ignore[no-untyped-def]
        index(lake, folder)
        done.append(("index", (folder / "reports" / "index.html").read_text()))

    def counted_catalog(lake, folder):  # type: ignore[no-untyped-def]
        done.append(("catalog", ""))
        return refresh_catalog(lake, folder)
    monkeypatch.setattr(warehouse.report, "write_report_index", counted_index)
    monkeypatch.setattr(orchestration.resources, "refresh_catalog", counted_catalog)
    landing, wh = example_landing(tmp_path, "airway", "pasilla"), tmp_path / "wh"
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots"]) == 0
    steps = [step for step, _ in done]
    assert len(steps) >= 4
    assert steps == ["catalog", "index"] * (len(steps) // 2)  # main: an index after every report
    first, last = done[1][1], done[-1][1]
    assert 'href="airway/index.html"' in first
    assert "pasilla" not in first
    assert all(f'href="{s}/index.html"' in last for s in ("airway", "pasilla"))
    assert (wh / "reports" / "index.html").read_text() == last
    assert not WarehouseResource(landing_dir=str(landing), warehouse_dir=str(wh)).report_index_with_catalog


def test_a_failed_catalog_rebuild_still_writes_the_report_index_and_raises_its_own_error(
        tmp_path: Path, monkeypatch) -> None:
    """The index is read from the lake, not the catalog: when a rebuild fails (a damaged table elsewhere), the
    reports this build made are still listed, and the error reported is the catalog's (review18)."""
    import orchestration.resources
    import warehouse.report
    from orchestration.resources import WarehouseResource

    written: list[Path] = []

    def broken_catalog(lake, folder):  # type: ignore[no-untyped-def]
        raise OSError("catalog rebuild failed")

    def failing_index(lake, folder):  # type: ignore[no-untyped-def]
        written.append(folder)
        raise RuntimeError("index failed too")
    monkeypatch.setattr(orchestration.resources, "refresh_catalog", broken_catalog)
    monkeypatch.setattr(warehouse.report, "write_report_index", failing_index)
    (tmp_path / "landing").mkdir()
    resource = WarehouseResource(landing_dir=str(tmp_path / "landing"), warehouse_dir=str(tmp_path / "wh"),
                                 report_index_with_catalog=True)
    with pytest.raises(OSError, match="catalog rebuild failed"):
        resource.refresh_catalog()
    assert written == [tmp_path / "wh"]
    written.clear()
    with pytest.raises(OSError, match="catalog rebuild failed"):
        WarehouseResource(landing_dir=str(tmp_path / "landing"), warehouse_dir=str(tmp_path / "wh")).refresh_catalog()
    assert written == []  # Dagster's runs write the index after each report instead


def test_catalog_pacer_rebuilds_when_twenty_times_the_last_rebuild_has_passed_and_only_after_changes(
        monkeypatch) -> None:
    import warehouse.cli as cli

    clock = [100.0]
    monkeypatch.setattr(cli.time, "monotonic", lambda: clock[0])

    class Resource:
        def __init__(self) -> None:
            self.rebuilds: list[float] = []

        def refresh_catalog(self) -> None:
            self.rebuilds.append(clock[0])
            clock[0] += 2.0  # each rebuild takes 2 s: the next one may come 40 s after it ends

    resource = Resource()
    pacer = cli._CatalogPacer(resource)
    pacer.after_study(changed=False)  # nothing readers see changed
    assert resource.rebuilds == []
    pacer.after_study(changed=True)  # the first change: at once
    assert resource.rebuilds == [100.0]
    for _ in range(39):  # studies of 1 s each, up to 141
        clock[0] += 1.0
        pacer.after_study(changed=True)
    assert resource.rebuilds == [100.0]
    clock[0] += 1.0  # 142 - 102 = 40 s = 20 x the last rebuild
    pacer.after_study(changed=True)
    assert resource.rebuilds == [100.0, 142.0]
    clock[0] += 100.0
    pacer.after_study(changed=False)
    assert resource.rebuilds == [100.0, 142.0]
    pacer.refresh()  # the build's end: always
    assert resource.rebuilds == [100.0, 142.0, 244.0]


def test_a_failing_final_catalog_rebuild_is_printed_and_does_not_replace_the_interrupt(capsys) -> None:
    import warehouse.cli as cli

    class Broken:
        warehouse_dir = "wh"

        def refresh_catalog(self) -> None:
            raise OSError("rna_counts/part-0.parquet: torn file")

    with pytest.raises(KeyboardInterrupt), cli._catalog_refreshed(Broken()):
        raise KeyboardInterrupt  # SIGTERM during a study: main() turns it into exit 130
    assert "could not be rebuilt (rna_counts/part-0.parquet: torn file)" in capsys.readouterr().err
    with pytest.raises(cli.CatalogNotRebuilt), cli._catalog_refreshed(Broken()):
        pass  # a build that ended normally: the rebuild's failure is the error (exit 1)


def test_build_refuses_a_prerank_library_no_library_file_defines(tmp_path: Path, capsys, example_landing,
                                                                monkeypatch) -> None:
    # known: the three shipped files, airway's chr1_window.gmt and signatures.yaml, the team folder's team.gmt
    landing, wh = example_landing(tmp_path, "airway"), tmp_path / "wh"
    team = tmp_path / "team_sets"
    team.mkdir()
    (team / "team.gmt").write_text("MY_SET\tna\tTP53\tMYC\n")
    monkeypatch.setenv("OMICSDW_GENE_SETS", str(team))
    known = "chr1_window, go_biological_process, msigdb_hallmark, reactome_pathways, signatures, team"
    args = ["build", "--landing", str(landing), "--warehouse", str(wh)]
    assert main([*args, "--prerank-libraries", "chr1_window, team,msigdb_hallmrk"]) == 2
    err = capsys.readouterr().err
    assert "--prerank-libraries names unknown gene-set library msigdb_hallmrk; known: " + known in err
    assert not wh.exists()  # refused before any work
    monkeypatch.setenv("OMICSDW_PRERANK_LIBRARIES", "reactome,go")
    assert main(args) == 2
    assert "OMICSDW_PRERANK_LIBRARIES names unknown gene-set libraries reactome, go; known: " in capsys.readouterr().err
    assert not wh.exists()


def test_build_names_the_error_of_a_failed_step_not_dagsters_wrapper(tmp_path: Path, capsys, monkeypatch,
                                                                      example_landing) -> None:
    import orchestration.assets.ingest

    calls = []

    def unreachable(*args, **kwargs):  # the object store dropped the connection in the middle of the load
        calls.append(1)
        raise OSError("Generic S3 error: connection reset by peer")

    monkeypatch.setattr(orchestration.assets.ingest, "load_folder", unreachable)
    landing = example_landing(tmp_path, "airway")
    assert main(["build", "--landing", str(landing), "--warehouse", str(tmp_path / "wh")]) == 1
    # Dagster's own message was 'Error occurred while executing op "ingest_study":' and nothing else
    shown = "[1/1] airway ... FAILED\n    ingest_study: OSError: Generic S3 error: connection reset by peer\n"
    assert shown in capsys.readouterr().out
    assert len(calls) == 1  # the assets retry transient errors; a person running build is told at once instead


def test_build_says_the_gene_reference_did_not_load_and_builds_no_study(tmp_path: Path, capsys, study_folder,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestration.assets.reference as reference_asset

    def unreadable(*args, **kwargs):
        raise OSError(13, "Permission denied", "genes/_delta_log")

    monkeypatch.setattr(reference_asset, "write_gene_reference", unreadable)
    study_folder(tmp_path / "landing", TINY_STUDY.format(sid="s1"), TINY_COUNTS, name="s1")
    assert main(["build", "--landing", str(tmp_path / "landing"), "--warehouse", str(tmp_path / "wh"),
                 "--no-plots"]) == 1  # was a Dagster traceback
    captured = capsys.readouterr()
    assert "the gene reference did not load; no study was built" in captured.err
    assert "reference_tables: PermissionError: [Errno 13] Permission denied: 'genes/_delta_log'" in captured.err
    assert "[1/1]" not in captured.out


def test_build_prints_the_reason_a_step_failed_not_only_dagsters_wrapper(tmp_path: Path, capsys, study_folder,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import orchestration.assets.report as report_asset

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", "reports/s/index.html")

    monkeypatch.setattr(report_asset, "write_study_report", full_disk)
    landing = tmp_path / "landing"
    study_folder(landing, "study_id: s\nname: s\nassays:\n  - {name: rna, kind: rna_counts, format: matrix, "
                 "path: counts.tsv, gene_id_type: symbol}\n", {"counts.tsv": "gene\tS1\tS2\nTP53\t10\t20\n"})
    assert main(["build", "--landing", str(landing), "--warehouse", str(tmp_path / "wh"), "--no-plots"]) == 1
    out = capsys.readouterr().out
    assert "study_report: " in out
    assert "No space left on device: 'reports/s/index.html'" in out


def test_readers_loop_without_an_error_while_a_study_is_rebuilt_and_never_see_a_mix(tmp_path: Path,
                                                                                  example_landing) -> None:
    """New read-only sessions, a session opened before the rebuild and ``warehouse.table`` readers loop while
    ``omicsdw build`` (another process) rebuilds airway with one sample's counts doubled: no read fails, and every
    read shows all of the old load or all of the new one (counts and VST sums read together in one statement)."""
    import polars as pl

    import warehouse

    landing, wh = example_landing(tmp_path, "airway"), tmp_path / "wh"
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots"]) == 0
    both = "SELECT (SELECT sum(count) FROM rna_counts), (SELECT round(sum(vst), 6) FROM rna_vst)"
    (old_state,) = sql(wh, both)
    counts = landing / "airway" / "featurecounts.txt"
    lines = counts.read_text().splitlines(keepends=True)
    doubled = [line if line.startswith(("#", "Geneid")) else
               "\t".join([*line.rstrip("\n").split("\t")[:6], str(2 * int(line.split("\t")[6])),
                          *line.rstrip("\n").split("\t")[7:]]) + "\n" for line in lines]
    counts.write_text("".join(doubled))  # SRR1039508's counts doubled
    before = warehouse.connect(wh)  # an analyst's session opened before the rebuild keeps its snapshot
    build = subprocess.Popen([OMICSDW, "build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    errors: list[str] = []
    seen: list[tuple] = []
    reads = 0
    while build.poll() is None or reads < 5:
        try:
            con = warehouse.connect(wh)
            seen.append(con.sql(both).fetchall()[0])
            con.close()
            assert before.sql(both).fetchall()[0] == old_state
            frame = warehouse.table("rna_counts", warehouse=str(wh)).select(pl.col("count").sum()).collect()
            seen.append((frame.item(), None))
            reads += 1
        except Exception as exc:  # any failure of a reader is what this test is about
            errors.append(repr(exc))
    output = build.communicate(timeout=60)[0]
    assert build.returncode == 0, output
    assert errors == []
    (new_state,) = sql(wh, both)
    assert new_state[0] > old_state[0]  # the rebuild happened and is now what readers see
    states = {old_state, new_state, (old_state[0], None), (new_state[0], None)}
    assert [s for s in seen if s not in states] == []  # never a mix of the two loads


def test_build_runs_each_study_as_the_landing_sensors_study_job_planning_every_study_asset(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, example_landing) -> None:
    """With $DAGSTER_HOME the UI lists a build's study runs under ``study_job`` (the job the landing sensor runs),
    each planning every study asset and check for its partition, as ``dg.materialize`` of the study assets did."""
    import dagster as dg

    from orchestration.definitions import STUDY_ASSETS

    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    landing, wh = example_landing(tmp_path, "airway"), tmp_path / "wh"
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots"]) == 0
    with dg.DagsterInstance.get() as instance:
        (run,) = instance.get_runs(filters=dg.RunsFilter(tags={"dagster/partition": "airway"}))
        planned = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION_PLANNED).records
        checks = instance.get_records_for_run(
            run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION).records
    assert (run.job_name, run.status) == ("study_job", dg.DagsterRunStatus.SUCCESS)
    assert {r.asset_key for r in planned} == {key for asset in STUDY_ASSETS for key in asset.keys}
    assert {r.event_log_entry.get_dagster_event().asset_check_evaluation_data.asset_check_key for r in checks} == {
        key for asset in STUDY_ASSETS for key in asset.check_keys}


def test_output_piped_into_a_reader_that_leaves_early_ends_quietly(tmp_path: Path, study_folder) -> None:
    # `omicsdw validate ... | head`: 5,000 located issues are ~1.3 MB of JSON, far more than a pipe holds.
    landing = tmp_path / "landing"
    rows = "".join(f"G{i}\t7\n" for i in range(5000))  # 7 is no GISTIC call
    study_folder(landing, "study_id: cn\nname: cn\nassays:\n  - {name: gistic, kind: copy_number, "
                 "format: gistic, path: cn.tsv, gene_id_type: symbol}\n",
                 {"cn.tsv": "Hugo_Symbol\ts1\n" + rows}, name="cn")
    proc = subprocess.Popen([OMICSDW, "validate", str(landing), "--format", "json"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.read(20).startswith(b"{")
    proc.stdout.close()
    error = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 141  # 128 + SIGPIPE, as a shell reports a reader that left
    assert error == ""


TINY_STUDY = ("study_id: {sid}\nname: {sid}\nassays:\n  - {{name: rna, kind: rna_counts, format: matrix, "
              "path: counts.tsv, gene_id_type: symbol}}\n")
TINY_COUNTS = {"counts.tsv": "gene\tS1\tS2\tS3\nTP53\t10\t20\t30\nEGFR\t5\t0\t7\n"}


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does to a job it starts in the background


def test_sigterm_stops_a_background_build_inside_a_study_run(tmp_path: Path, study_folder) -> None:
    """``kill`` of a build started with ``&`` stops it at the study in progress, saying what it left. Dagster turns
    a signal inside a run into a failed run but loses one that lands between its steps, and after each run gives
    SIGTERM SIGINT's disposition (ignored in the background): the build went on to the next study, then ignored
    every later ``kill``. A second build finishes the job."""
    landing = tmp_path / "landing"
    for sid in ("s1", "s2"):
        study_folder(landing, TINY_STUDY.format(sid=sid), TINY_COUNTS, name=sid)
    command = [OMICSDW, "build", "--landing", str(landing), "--warehouse", str(tmp_path / "wh"), "--no-plots"]
    build = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=_ignore_sigint)
    assert build.stdout is not None
    seen = ""
    while "[1/2] s1 ..." not in seen:  # printed as the study's run starts
        char = build.stdout.read(1)
        assert char, seen
        seen += char
    time.sleep(0.5)
    build.send_signal(signal.SIGTERM)
    out, err = build.communicate(timeout=60)
    assert build.returncode == 130, seen + out + err
    assert "[2/2]" not in out
    # interrupted inside a step, or the run of s1 had passed its last step: then s1 is loaded
    assert (out.strip() == "INTERRUPTED" and "s1: readers keep seeing its previous load" in err) or (
        out.strip().startswith("ok (") and "stopped by a signal after s1: the studies after it were not built" in err)
    assert err.endswith("interrupted\n")
    assert main(command[1:]) == 0
    assert sql(tmp_path / "wh", "SELECT study_id FROM studies ORDER BY 1") == [("s1",), ("s2",)]


def test_sigterm_after_a_runs_last_step_stops_the_build_after_that_study(tmp_path: Path, study_folder, capsys,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """A SIGTERM that lands after a run's last step, as Dagster stores the run's success, is one Dagster catches
    and then forgets: the build went on to the next study. Now that study is loaded and the build stops."""
    from orchestration.ephemeral import HeldConnectionEventLog

    store = HeldConnectionEventLog.store_event
    sent = []

    def store_then_kill(self, event):  # type: ignore[no-untyped-def]
        store(self, event)
        if event.dagster_event is not None and event.dagster_event.event_type_value == "PIPELINE_SUCCESS" \
                and event.job_name == "study_job" and not sent:
            sent.append(1)
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(HeldConnectionEventLog, "store_event", store_then_kill)
    monkeypatch.delenv("DAGSTER_HOME", raising=False)  # the temporary instance, whose event log this is
    for sid in ("s1", "s2"):
        study_folder(tmp_path / "landing", TINY_STUDY.format(sid=sid), TINY_COUNTS, name=sid)
    assert main(["build", "--landing", str(tmp_path / "landing"), "--warehouse", str(tmp_path / "wh"),
                 "--no-plots"]) == 130
    captured = capsys.readouterr()
    assert sent == [1]
    assert "[1/2] s1 ... ok (" in captured.out
    assert "[2/2]" not in captured.out
    assert "stopped by a signal after s1: the studies after it were not built" in captured.err
    assert sql(tmp_path / "wh", "SELECT study_id FROM studies") == [("s1",)]


def test_a_build_in_a_process_ignoring_sigint_leaves_sigterm_as_it_found_it(tmp_path: Path, study_folder) -> None:
    """After a build in a process whose SIGINT is ignored (a background job, a test runner started with ``&``),
    SIGTERM still terminates it and the processes it starts: Dagster had left SIGTERM ignored, and a later
    ``terminate()`` of a child process did nothing."""
    study_folder(tmp_path / "landing", TINY_STUDY.format(sid="s1"), TINY_COUNTS, name="s1")
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    term = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["build", "--landing", str(tmp_path / "landing"), "--warehouse", str(tmp_path / "wh"),
                     "--no-plots"]) == 0
        assert signal.getsignal(signal.SIGTERM) is term
        assert term is not signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_failure_text_shows_a_failed_steps_contract_failures_not_only_its_description() -> None:
    # 'failed: signature_matches' was all a build printed when the cross-study step broke its contract; then only
    # "signature_matches breaks its contract; nothing was committed", without the rows and check that broke it
    from types import SimpleNamespace

    import dagster as dg
    from dagster._core.execution.plan.objects import StepFailureData, UserFailureData
    from dagster._utils.error import SerializableErrorInfo

    from warehouse.cli import _failure_text

    error = SerializableErrorInfo("dagster._core.definitions.events.Failure: signature_matches breaks its contract; "
                                  "nothing was committed\n", [], "Failure")
    broken = "signature_matches.score: less_than_or_equal_to(1) failed for '1.0000000000000004'"
    data = StepFailureData(error=error, user_failure_data=UserFailureData(
        label="intentional-failure", description=None,
        metadata={"signature_matches": dg.MetadataValue.text(f"{broken}\n{broken}")}))
    result = SimpleNamespace(get_step_failure_events=lambda: [SimpleNamespace(step_key="signature_matches",
                                                                              step_failure_data=data)])
    assert _failure_text(result) == (
        "    signature_matches: signature_matches breaks its contract; nothing was committed\n"
        f"      signature_matches: {broken}\n"
        f"                         {broken}")


def test_a_permission_error_is_blamed_on_a_read_only_warehouse_only_when_it_is_about_its_files(tmp_path: Path,
                                                                                              monkeypatch) -> None:
    """Review: every EACCES / EPERM / EROFS of a verb was reported as 'the warehouse cannot be written', an
    --output file or a landing file's too, sending the user to a warehouse that was fine."""
    import argparse
    import errno

    from warehouse.cli import _under_warehouse

    monkeypatch.delenv("OMICSDW_LAKE", raising=False)
    wh, lake = tmp_path / "wh", tmp_path / "elsewhere" / "lake"
    args = argparse.Namespace(warehouse=str(wh), lake=str(lake))
    assert _under_warehouse(OSError(errno.EROFS, "Read-only file system", str(wh / "_omicsdw" / "lock")), args)
    assert _under_warehouse(OSError(errno.EACCES, "Permission denied", str(lake / "rna_counts" / "x.parquet")), args)
    assert not _under_warehouse(OSError(errno.EACCES, "Permission denied", str(tmp_path / "out.csv")), args)
    assert not _under_warehouse(OSError(errno.EACCES, "Permission denied"), args)


def test_a_build_gives_up_a_study_another_build_holds_past_the_lock_timeout_and_builds_the_next(
        tmp_path: Path, capsys, example_landing, monkeypatch) -> None:
    """A stopped build (Ctrl-Z, a stuck mount) held airway's build lock: the second build waited for ever, and
    every study after airway in its list with it. Now it waits OMICSDW_BUILD_LOCK_TIMEOUT (here 1 s), fails airway
    naming the holder, and builds pasilla."""
    import socket
    import threading

    import warehouse.lake
    from warehouse.storage import open_lake

    landing, wh = example_landing(tmp_path, "airway", "pasilla"), tmp_path / "wh"
    monkeypatch.setattr(warehouse.lake, "BUILD_LOCK_TIMEOUT_S", 1.0)
    held, release = threading.Event(), threading.Event()

    def stopped_build() -> None:
        with open_lake(wh).study_build("airway"):
            held.set()
            release.wait(60)

    holder = threading.Thread(target=stopped_build)
    holder.start()
    try:
        assert held.wait(10)
        assert main(["build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots"]) == 1
    finally:
        release.set()
        holder.join(10)
    out = capsys.readouterr().out
    who = f"process {os.getpid()} on {socket.gethostname()}"
    assert f"study 'airway' is still being built by {who} after waiting 1 s" in out
    assert next(t for t in out.splitlines() if t.startswith("[2/2] pasilla")).endswith("s)")
    assert out.rstrip().endswith("failed: airway")
    assert sql(wh, "SELECT DISTINCT study_id FROM rna_counts") == [("pasilla",)]
