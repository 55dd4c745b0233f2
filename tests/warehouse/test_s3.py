"""The lake on an S3-compatible store: moto's S3 server (started here, on a free local port) holds every Delta
table; the warehouse folder keeps the catalog, locks and journals; analysts query it like a local lake.

The airway example is built once into the store and once into a local lake: SQL and ``warehouse.table`` answer the
same rows from both, and the counts match ``examples/airway/featurecounts.txt`` read here by hand.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import polars as pl
import pytest
from polars.testing import assert_frame_equal

import warehouse
from schemas.tables import TABLES
from tests.warehouse.catalog_sql import sql
from warehouse.cli import main
from warehouse.lake import Lake, StagedFiles
from warehouse.storage import AWS_VARIABLES, open_lake, remember_lake

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BUCKET = "omics-lake"
LAKE = f"s3://{BUCKET}/prod/lake"
GENE, COLUMN = "ENSG00000175262", "SRR1039508_subset.bam"
"""A gene of the airway example and the featureCounts column of one of its samples, changed by the rebuild."""
COMPARED = {"samples": "sample_id", "rna_counts": "sample_id, feature_id", "rna_normalized": "sample_id, feature_id",
            "differential_expression": "contrast, feature_id", "signature_scores": "sample_id, gene_set, method"}
"""Tables compared between the S3 and the local build (ORDER BY keys)."""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """A moto S3 server on a free port with an empty bucket; the AWS variables point every client at it.

    It runs in its own process: in a thread of this one it would wait for the GIL that delta-rs holds while it
    waits for the server.
    """
    import boto3

    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    saved = {name: os.environ.get(name) for name in (*AWS_VARIABLES, "OMICSDW_LAKE")}
    os.environ.pop("OMICSDW_LAKE", None)
    os.environ.update(AWS_ENDPOINT_URL=f"http://127.0.0.1:{port}", AWS_ACCESS_KEY_ID="moto",
                      AWS_SECRET_ACCESS_KEY="moto", AWS_REGION="us-east-1", AWS_ALLOW_HTTP="true")
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise
                time.sleep(0.1)
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield LAKE
    finally:
        server.terminate()
        server.wait(timeout=10)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@pytest.fixture(scope="module")
def builds(s3_server: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """The airway example built into the S3 lake and into a local one: (landing, S3 warehouse, local warehouse)."""
    root = tmp_path_factory.mktemp("s3")
    landing = root / "landing"
    shutil.copytree(EXAMPLES / "airway", landing / "airway")
    s3_wh, local_wh = root / "wh_s3", root / "wh_local"
    assert main(["build", "--landing", str(landing), "--warehouse", str(s3_wh), "--lake", s3_server]) == 0
    assert main(["build", "--landing", str(landing), "--warehouse", str(local_wh)]) == 0
    return landing, s3_wh, local_wh


def _frame(wh: Path, query: str) -> pl.DataFrame:
    con = warehouse.connect(wh)
    try:
        return con.sql(query).pl()
    finally:
        con.close()


def _file_count(landing: Path) -> float:
    """The count of GENE in COLUMN, read from the featureCounts file by hand."""
    table = pl.read_csv(landing / "airway" / "featurecounts.txt", separator="\t", skip_rows=1)
    return float(table.filter(pl.col("Geneid") == GENE)[COLUMN].item())


def test_s3_lake_holds_every_table_and_sql_answers_like_a_local_lake(builds: tuple[Path, Path, Path],
                                                                    capsys) -> None:
    landing, s3_wh, local_wh = builds
    assert not (s3_wh / "lake").exists()  # nothing written locally but the catalog, locks and journals
    assert (s3_wh / "_omicsdw" / "studies" / "airway" / "lock").is_file()
    fs = open_lake(s3_wh).fs  # the catalog remembers the lake: no --lake needed to find it again
    assert (s3_wh / "_omicsdw" / "lake").read_text().strip() == open_lake(s3_wh).root  # noted with the catalog
    assert fs.isfile(f"{LAKE}/rna_counts/_delta_log/00000000000000000000.json")
    assert sql(s3_wh, "SELECT count(*) FROM rna_counts") == [(160,)]  # 20 genes x 8 samples in the file
    assert main(["sql", "SELECT count(*) AS n FROM samples", "--warehouse", str(s3_wh), "--format", "csv"]) == 0
    assert capsys.readouterr().out.endswith("n\n8\n")
    assert sql(s3_wh, f"SELECT count FROM rna_counts WHERE feature_id = '{GENE}' AND sample_id = "
                      f"'{COLUMN.removesuffix('_subset.bam')}'") == [(_file_count(landing),)]
    for table, keys in COMPARED.items():  # floats of two builds may differ in the last bit (summation order)
        remote, local = (_frame(wh, f"SELECT * FROM {table} ORDER BY {keys}") for wh in (s3_wh, local_wh))
        assert remote.height > 0, table
        assert_frame_equal(remote, local, rel_tol=1e-12)
        remote, local = (warehouse.table(table, warehouse=wh).sort(keys.split(", ")).collect()
                         for wh in (s3_wh, local_wh))
        assert_frame_equal(remote, local, rel_tol=1e-12)


def _sorted(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows in one order, without what differs between two builds of one input: load / publication times and the
    Parquet file names ``study_versions`` lists."""
    frame = frame.drop([c for c, t in frame.schema.items() if isinstance(t, pl.Datetime) or c == "files"])
    return frame.sort([c for c, t in frame.schema.items() if not isinstance(t, pl.List)], nulls_last=True)


def test_s3_every_table_answers_in_sql_as_from_a_local_lake(builds: tuple[Path, Path, Path]) -> None:
    _, s3_wh, local_wh = builds
    filled = 0
    for table in TABLES:
        remote, local = (_sorted(_frame(wh, f'SELECT * FROM "{table}"')) for wh in (s3_wh, local_wh))
        try:
            assert_frame_equal(remote, local, rel_tol=1e-12)
        except AssertionError as exc:
            raise AssertionError(f"{table}: {exc}") from None
        filled += remote.height > 0
    assert filled >= 20  # airway fills RNA, DE, signatures, QC, structure, genes, gene sets, the ledger


def test_s3_sql_session_reads_the_lake_prefix_only_and_loads_no_extension(builds: tuple[Path, Path, Path]) -> None:
    _, s3_wh, _ = builds
    con = warehouse.connect(s3_wh)
    try:
        for query in (f"SELECT * FROM read_parquet('s3://{BUCKET}/elsewhere/x.parquet')",
                      "SELECT * FROM read_csv('/etc/passwd')", "INSTALL httpfs"):
            with pytest.raises(duckdb.Error, match=r"disabled by configuration|Permission|locked"):
                con.sql(query).fetchall()
    finally:
        con.close()
    plain = duckdb.connect()
    try:
        present = {name for (name,) in plain.sql("SELECT extension_name FROM duckdb_extensions() "
                                                "WHERE loaded OR installed").fetchall()}
    finally:
        plain.close()
    assert "httpfs" not in present  # never installed (downloaded) nor loaded


def _stage_and_die(lake: Lake, staged: list[StagedFiles]) -> None:
    """A run of study 'ghost' that stages a file and dies before its commit (its journal stays behind)."""
    with lake.study_session("ghost"):
        staged.append(lake.stage("studies", lake.scan("studies", study_id="airway"), study_id="ghost"))
        raise RuntimeError("killed before the commit")


def test_s3_staged_files_of_a_killed_run_are_deleted_by_the_next_session(builds: tuple[Path, Path, Path]) -> None:
    _, s3_wh, _ = builds
    lake = open_lake(s3_wh)
    staged: list[StagedFiles] = []
    with pytest.raises(RuntimeError, match="killed"):
        _stage_and_die(lake, staged)
    (relative,) = staged[0].relative_paths
    assert lake.fs.isfile(f"{LAKE}/studies/{relative}")
    with open_lake(s3_wh).study_session("ghost"):
        pass
    assert not lake.fs.exists(f"{LAKE}/studies/{relative}")


def test_s3_rebuild_publishes_the_new_version_and_time_travel_reads_the_old(builds: tuple[Path, Path, Path]
                                                                             ) -> None:
    landing, s3_wh, _ = builds
    before = _file_count(landing)
    (old,) = sql(s3_wh, "SELECT delta_version FROM catalog_versions WHERE table_name = 'rna_counts'")[0]
    path = landing / "airway" / "featurecounts.txt"
    lines = path.read_text().splitlines(keepends=True)
    header = lines[1].rstrip("\n").split("\t")
    for i, line in enumerate(lines):
        fields = line.rstrip("\n").split("\t")
        if fields[0] == GENE:
            fields[header.index(COLUMN)] = str(int(before) + 1000)
            lines[i] = "\t".join(fields) + "\n"
    path.write_text("".join(lines))
    assert main(["build", "--landing", str(landing), "--warehouse", str(s3_wh), "--lake", LAKE]) == 0
    sample = COLUMN.removesuffix("_subset.bam")
    where = f"feature_id = '{GENE}' AND sample_id = '{sample}'"
    assert sql(s3_wh, f"SELECT count FROM rna_counts WHERE {where}") == [(before + 1000,)]
    (new,) = sql(s3_wh, "SELECT delta_version FROM catalog_versions WHERE table_name = 'rna_counts'")[0]
    assert new > old
    travelled = warehouse.table("rna_counts", version=old, warehouse=s3_wh)
    assert travelled.filter(pl.col("feature_id") == GENE, pl.col("sample_id") == sample).collect()["count"].to_list(
        ) == [before]


def test_s3_doctor_names_an_orphan_and_vacuum_removes_it(builds: tuple[Path, Path, Path], capsys) -> None:
    _, s3_wh, _ = builds
    fs = open_lake(s3_wh).fs
    orphan = f"{LAKE}/rna_counts/study_id=airway/part-orphan.zstd.parquet"
    assert main(["doctor", "--warehouse", str(s3_wh)]) == 0
    fs.pipe_file(orphan, b"not a parquet file")
    assert main(["doctor", "--warehouse", str(s3_wh)]) == 1
    assert "rna_counts: 1 file(s) in the lake no Delta version references" in capsys.readouterr().out
    assert main(["vacuum", "--warehouse", str(s3_wh), "--retention-hours", "0"]) == 0
    assert not fs.exists(orphan)
    assert sql(s3_wh, "SELECT count(*) FROM rna_counts") == [(160,)]  # published files survive the vacuum


def test_s3_commit_from_a_stale_snapshot_is_refused_not_written_over(s3_server: str, tmp_path: Path) -> None:
    """Writers without a shared lock (two machines): the store's conditional put keeps every Delta commit whole."""
    from deltalake import DeltaTable, write_deltalake
    from deltalake.exceptions import CommitFailedError

    options = open_lake(tmp_path, s3_server).storage_options
    uri = f"s3://{BUCKET}/scratch/race"
    write_deltalake(uri, pl.DataFrame({"x": [0]}).to_arrow(), storage_options=options)
    machine_a, machine_b = (DeltaTable(uri, storage_options=options) for _ in range(2))
    write_deltalake(machine_a, pl.DataFrame({"x": [1]}).to_arrow(), mode="overwrite")
    with pytest.raises(CommitFailedError, match="concurrent transaction"):
        write_deltalake(machine_b, pl.DataFrame({"x": [2]}).to_arrow(), mode="overwrite")
    assert pl.read_delta(uri, storage_options=options)["x"].to_list() == [1]  # version 1 is A's, not overwritten


@pytest.mark.parametrize("verb", [["build", "--landing", str(EXAMPLES), "--no-plots"], ["doctor"], ["vacuum"],
                                  ["remove", "airway"]])
def test_s3_lake_that_does_not_answer_is_named_in_one_sentence(s3_server: str, tmp_path: Path, verb: list[str],
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    """A bucket the store does not have: each verb names the lake and the settings to check, exit 1, no
    traceback (delta-rs's bare "OSError: Operation not supported" before).
    """
    lake = "s3://no-such-bucket/lake"
    assert main([*verb, "--warehouse", str(tmp_path / "wh"), "--lake", lake]) == 1
    err = capsys.readouterr().err
    assert f"omicsdw: cannot reach the lake {lake} (" in err
    assert "AWS_ENDPOINT_URL" in err
    assert "Traceback" not in err


def test_open_lake_finds_an_object_store_lake_by_its_note_once_the_catalog_is_lost(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The catalog was the only record of the lake's URI: without it every verb fell back to <warehouse>/lake
    (doctor: 'build the warehouse first'; a build without --lake: a new local lake beside the store's)."""
    monkeypatch.delenv("OMICSDW_LAKE", raising=False)
    wh = tmp_path / "wh"
    assert open_lake(wh, "s3://bucket/omicsdw").root == "s3://bucket/omicsdw"  # as a build with --lake opens it
    assert not wh.exists()  # opening writes nothing: a mistyped --warehouse created folders, read-only verbs wrote
    remember_lake(wh, "s3://bucket/omicsdw")  # the build's catalog refresh notes its lake
    assert open_lake(wh).root == "s3://bucket/omicsdw"  # no catalog, no local lake: the note says where
    assert open_lake(wh, "s3://other/x").root == "s3://other/x"  # --lake still wins
    assert open_lake(wh).root == "s3://bucket/omicsdw"  # and a one-off --lake leaves the catalog's lake noted
    (wh / "lake").mkdir()  # a local lake of the folder's own: never overridden by a note
    assert open_lake(wh).root == str((wh / "lake").resolve())


def test_sessions_in_progress_of_an_object_store_lake_are_read_in_the_warehouse_folder(tmp_path: Path) -> None:
    """Its locks are in <warehouse>/_omicsdw, not under the lake's URI: vacuum and doctor saw no run in progress
    and took a running build's staged files for orphans."""
    import fcntl

    lake = open_lake(tmp_path / "wh", "s3://bucket/omicsdw")
    lock = tmp_path / "wh" / "_omicsdw" / "studies" / "airway" / "lock"
    lock.parent.mkdir(parents=True)
    with open(lock, "a+") as held:  # a build of airway holds it (another open file: flock treats it as another)
        fcntl.flock(held, fcntl.LOCK_EX)
        assert lake.sessions_in_progress() == ["airway"]
    assert lake.sessions_in_progress() == []
