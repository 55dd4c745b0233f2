"""A second engine on the lake: Daft reading the Delta tables at the versions ``warehouse.delta_snapshots`` names
gives every table's rows exactly as DuckDB shows them through the catalog, also while a study has a commit that
is not published (a run killed between its ingest and its publication), which a read of the newest version shows.
"""

from __future__ import annotations

import csv
import functools
from pathlib import Path

import daft
import polars as pl
import pyarrow.parquet as pq
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

import warehouse
from schemas.tables import PUBLISHED_TABLES, TABLES, polars_schema
from warehouse.catalog import refresh_catalog
from warehouse.cli import main
from warehouse.commit import commit_frames
from warehouse.lake import Lake

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def wh(tmp_path_factory, example_landing) -> Path:  # type: ignore[no-untyped-def]
    """airway (RNA, DE) and laml (variants, segments) built; then airway's samples replaced without publication."""
    root = tmp_path_factory.mktemp("second_engine")
    folder = root / "wh"
    assert main(["build", "--landing", str(example_landing(root, "airway", "laml")), "--warehouse", str(folder)]) == 0
    lake = Lake(folder / "lake")
    samples = lake.scan_study("samples", "airway").collect()
    commit = commit_frames(lake, [("samples", samples.head(samples.height - 1))], tables=["samples"],
                           study_id="airway", fingerprint="unpublished")
    assert commit.ok, commit.failures
    refresh_catalog(lake, folder)  # the catalog knows the newest version and still shows the published files
    return folder


def _contract(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """The contract's columns and types, rows sorted: the same rows compare equal whichever engine read them."""
    schema = polars_schema(table)
    frame = frame.select([pl.col(c).cast(t) for c, t in schema.items()])
    return frame.sort([c for c, t in schema.items() if not isinstance(t, pl.List)], nulls_last=True)


def _daft(wh: Path, table: str) -> pl.DataFrame:
    uri = str(wh / "lake" / table)
    parts = []
    for version, studies in warehouse.delta_snapshots(table, warehouse=wh).items():
        part = daft.read_deltalake(uri, version=version)
        parts.append(part if studies is None else part.where(daft.col("study_id").is_in(studies)))
    if not parts:
        return pl.DataFrame(schema=polars_schema(table))
    return pl.from_arrow(functools.reduce(lambda a, b: a.concat(b), parts).to_arrow())  # type: ignore[return-value]


def _duckdb(wh: Path, table: str) -> pl.DataFrame:
    con = warehouse.connect(wh)
    try:
        return con.sql(f'SELECT * FROM "{table}"').pl()
    finally:
        con.close()


def test_second_engine_daft_reads_every_table_as_the_catalog_shows_it(wh):
    compared = {}
    for table in TABLES:
        if not (wh / "lake" / table).exists():
            continue
        got, want = _contract(_daft(wh, table), table), _contract(_duckdb(wh, table), table)
        try:
            assert_frame_equal(got, want)
        except AssertionError as exc:
            raise AssertionError(f"{table}: {exc}") from None
        compared[table] = want.height
    assert len(compared) >= 30
    assert set(PUBLISHED_TABLES) <= set(compared)
    # rows in every layer the two studies have: RNA and DE (airway), variants and segments (laml), genes
    for table in ("rna_counts", "rna_normalized", "differential_expression", "variants", "cn_segments", "genes",
                  "samples", "study_versions"):
        assert compared[table] > 0, table
    assert compared["rna_counts"] == 160  # 20 featureCounts genes x 8 airway runs (examples/airway)


def test_second_engine_reads_published_versions_not_the_newest_commit(wh):
    lake = Lake(wh / "lake")
    newest = lake.version("samples")
    published = lake.scan("study_versions").filter(pl.col("table_name") == "samples").collect()
    at = dict(zip(published["study_id"], published["delta_version"], strict=True))
    assert warehouse.delta_snapshots("samples", warehouse=wh) == {at["airway"]: ["airway"], newest: ["tcga_laml"]}
    assert at["airway"] < newest
    # the newest version holds airway's unpublished load: one sample fewer than readers see
    naive = pl.from_arrow(daft.read_deltalake(str(wh / "lake" / "samples")).to_arrow())
    shown = _duckdb(wh, "samples")
    assert naive.filter(pl.col("study_id") == "airway").height == 7  # type: ignore[union-attr]
    assert shown.filter(pl.col("study_id") == "airway").height == 8  # examples/airway/samples.tsv: 8 runs
    # tables not published per study are read whole at the catalog's version
    assert warehouse.delta_snapshots("genes", warehouse=wh) == {lake.version("genes"): None}


def _airway_source() -> pl.DataFrame:
    """examples/airway's featureCounts file read with the csv module: one row per (sample, gene) with the count,
    its column's sum (the library size) and the gene length; BAM columns renamed by the study's sample map.
    """
    folder = Path(__file__).resolve().parents[2] / "examples" / "airway"
    with open(folder / "sample_map.tsv") as fh:
        runs = {r["column"]: r["sample_id"] for r in csv.DictReader(fh, delimiter="\t")}
    with open(folder / "featurecounts.txt") as fh:
        rows = list(csv.reader(line for line in fh if not line.startswith("#")))
    header = rows[0][0].split("\t")
    cells = [line[0].split("\t") for line in rows[1:]]
    records = [(runs[header[j].removesuffix(".bam")], cell[0], float(cell[j]), float(cell[5]))
               for cell in cells for j in range(6, len(header))]
    frame = pl.DataFrame(records, schema=["sample_id", "feature_id", "count", "length"], orient="row")
    return frame.with_columns(library=pl.col("count").sum().over("sample_id"))


def test_second_engine_duckdb_deltalake_polars_and_daft_read_the_lz4_and_zstd_tables_as_the_source(wh):
    # rna_normalized / rna_vst are written with lz4, every other table with zstd level 1 (warehouse.lake): each
    # engine decodes both to the values of the source file
    lake_dir = wh / "lake"
    codecs = {t: {pq.read_metadata(p).row_group(0).column(0).compression
                  for p in (lake_dir / t / "study_id=airway").rglob("*.parquet")} for t in ("rna_counts",
                                                                                             "rna_normalized")}
    assert codecs == {"rna_counts": {"ZSTD"}, "rna_normalized": {"LZ4"}}  # polars writes LZ4_RAW; pyarrow names it LZ4
    source = _airway_source()
    key = ["sample_id", "feature_id"]
    want_counts = source.select(*key, "count").sort(key)
    # edgeR cpm: count / library size x 1e6, by hand from the file's columns
    want_cpm = source.select(*key, cpm=pl.col("count") / pl.col("library") * 1e6).sort(key)
    airway = pl.col("study_id") == "airway"
    for table, columns, want in (("rna_counts", ["count"], want_counts), ("rna_normalized", ["cpm"], want_cpm)):
        uri = str(lake_dir / table)
        reads = {
            "duckdb": _duckdb(wh, table),
            "deltalake": pl.from_arrow(DeltaTable(uri).to_pyarrow_table()),
            "polars": pl.scan_delta(uri).collect(),
            "daft": pl.from_arrow(daft.read_deltalake(uri).to_arrow()),
        }
        for engine, frame in reads.items():
            got = frame.filter(airway).select(*key, *columns).sort(key)  # type: ignore[union-attr]
            try:
                assert_frame_equal(got, want, check_exact=False, rel_tol=1e-12, abs_tol=0.0)
            except AssertionError as exc:
                raise AssertionError(f"{engine} {table}: {exc}") from None
