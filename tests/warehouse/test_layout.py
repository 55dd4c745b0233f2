"""The long RNA tables partitioned by ``study_id`` and ``assay`` (``warehouse.lake.PARTITIONS``): every reader sees
the rows and types it saw with ``study_id`` alone, a warehouse built with the old layout keeps working, and an
assay dropped from a study disappears from every table in one commit per table.

The study is written here: two count assays and one TPM assay of the same 6 samples x 200 genes (seeded
negative-binomial draws); the expected rows are taken from those arrays, not from the code.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from unittest import mock

import daft
import duckdb
import numpy as np
import polars as pl
import pytest
from deltalake import DeltaTable
from polars.testing import assert_frame_equal

import warehouse
from schemas.tables import polars_schema
from warehouse import lake as lake_module
from warehouse.catalog import table_view_sql
from warehouse.cli import main
from warehouse.commit import commit_frames
from warehouse.lake import ColumnStatistics, Lake
from warehouse.maintenance import doctor

pytestmark = pytest.mark.slow

LONG = ["rna_counts", "rna_abundance", "rna_normalized", "rna_vst"]
SAMPLES = [f"S{j}" for j in range(1, 7)]
GENES = [f"G{i:03d}" for i in range(1, 201)]
ASSAYS = {"counts_a": 1, "counts_b": 2, "tpm": 3}  # assay -> seed of its matrix
STUDY_YAML = """\
study_id: two
name: two count assays and a TPM assay
organism: human
assays:
  - {name: counts_a, kind: rna_counts, format: matrix, path: counts_a.tsv, gene_id_type: auto}
  - {name: counts_b, kind: rna_counts, format: matrix, path: counts_b.tsv, gene_id_type: auto}
  - {name: tpm, kind: rna_abundance, format: matrix, path: tpm.tsv, measure: tpm, gene_id_type: auto}
"""


def _matrix(assay: str) -> np.ndarray:
    """Genes x samples negative-binomial counts (log-normal means, dispersion 0.1 + 1 / mean, as DESeq2's trend
    expects), the same for every call (seeded by the assay)."""
    rng = np.random.default_rng(ASSAYS[assay])
    means = np.exp(rng.normal(4.0, 1.5, size=(len(GENES), 1)))
    dispersion = 0.1 + 1.0 / means
    return rng.negative_binomial(1.0 / dispersion, 1.0 / (1.0 + means * dispersion), size=(len(GENES), len(SAMPLES)))


def _landing(root: Path) -> Path:
    folder = root / "landing" / "two"
    folder.mkdir(parents=True)
    (folder / "study.yaml").write_text(STUDY_YAML)
    for assay in ASSAYS:
        lines = ["gene_id\t" + "\t".join(SAMPLES)]
        lines += [gene + "\t" + "\t".join(str(v) for v in row) for gene, row in zip(GENES, _matrix(assay), strict=True)]
        (folder / f"{assay}.tsv").write_text("\n".join(lines) + "\n")
    return folder.parent


def _source(assays: list[str]) -> pl.DataFrame:
    """(assay, sample_id, feature_id, value) of the files, from the arrays written."""
    return pl.DataFrame([(assay, sample, gene, float(_matrix(assay)[i, j])) for assay in assays
                         for i, gene in enumerate(GENES) for j, sample in enumerate(SAMPLES)],
                        schema=["assay", "sample_id", "feature_id", "value"], orient="row")


def _build(landing: Path, folder: Path, *extra: str) -> None:
    assert main(["build", "--landing", str(landing), "--warehouse", str(folder), *extra]) == 0


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> dict[str, Path]:  # type: ignore[no-untyped-def]
    """The study built twice: with every table partitioned by study_id alone (the layout of warehouses built
    before assay partitions), and with the default layout."""
    root = tmp_path_factory.mktemp("layout")
    landing = _landing(root)
    with mock.patch.dict(lake_module.PARTITIONS, clear=True):
        _build(landing, root / "old")
    _build(landing, root / "new")
    return {"landing": landing, "old": root / "old", "new": root / "new"}


def _copy(built: dict[str, Path], layout: str, tmp_path: Path) -> tuple[Path, Path]:
    """A writable copy of a built warehouse and of the landing."""
    shutil.copytree(built[layout], tmp_path / "wh")
    shutil.copytree(built["landing"], tmp_path / "landing")
    return tmp_path / "wh", tmp_path / "landing"


def _sorted(frame: pl.DataFrame, table: str) -> pl.DataFrame:
    """Rows in a fixed order (contract columns; the types are left as the reader gave them)."""
    return frame.sort([c for c in polars_schema(table) if c in frame.columns], nulls_last=True)


def _readers(wh: Path, table: str) -> dict[str, pl.DataFrame]:
    """The table as each reader sees it: the SQL catalog, the Python API, the Lake, and three second engines."""
    uri = str(wh / "lake" / table)
    con = warehouse.connect(wh)
    try:
        duck = con.sql(f'SELECT * FROM "{table}"').pl()
    finally:
        con.close()
    frames = {
        "duckdb": duck,
        "warehouse.table": warehouse.table(table, warehouse=wh).collect(),
        "Lake.scan": Lake(wh / "lake").scan(table).collect(),
        "deltalake": pl.DataFrame(pl.from_arrow(DeltaTable(uri).to_pyarrow_table())),
        "polars.scan_delta": pl.scan_delta(uri).collect(),
        "daft": pl.DataFrame(pl.from_arrow(daft.read_deltalake(uri).to_arrow())),
    }
    return {name: _sorted(frame, table) for name, frame in frames.items()}


def _layout(wh: Path, table: str) -> tuple[list[str], set[str]]:
    """Partition columns of the table and the folders holding its Parquet files (relative to the table)."""
    root = wh / "lake" / table
    folders = {str(p.parent.relative_to(root)) for p in root.rglob("*.parquet")}
    return list(DeltaTable(str(root)).metadata().partition_columns), folders


def test_new_tables_are_partitioned_by_study_and_assay_and_old_ones_by_study(built):
    for table in LONG:
        assert _layout(built["old"], table)[0] == ["study_id"]
        assert _layout(built["new"], table)[0] == ["study_id", "assay"]
    assert _layout(built["old"], "rna_counts")[1] == {"study_id=two"}
    assert _layout(built["new"], "rna_counts")[1] == {"study_id=two/assay=counts_a", "study_id=two/assay=counts_b"}
    assert _layout(built["new"], "rna_abundance")[1] == {"study_id=two/assay=tpm"}
    assert _layout(built["new"], "samples") == (["study_id"], {"study_id=two"})


@pytest.mark.parametrize("table", LONG)
def test_every_reader_sees_the_same_rows_and_types_in_both_layouts(built, table):
    old, new = _readers(built["old"], table), _readers(built["new"], table)
    for reader, frame in new.items():
        assert frame.height > 0, reader
        assert frame.schema == old[reader].schema, reader
        assert_frame_equal(frame, old[reader])
    # the values are the files' (rna_counts, rna_abundance) and every reader agrees on the derived tables
    value = {"rna_counts": "count", "rna_abundance": "value"}.get(table)
    for reader, frame in new.items():
        if value is not None:
            got = frame.select("assay", "sample_id", "feature_id", pl.col(value).alias("value"))
            want = _source(["tpm"] if table == "rna_abundance" else ["counts_a", "counts_b"])
            assert_frame_equal(got.sort(got.columns), want.sort(want.columns), check_dtypes=False)
        assert set(frame["study_id"]) == {"two"}, reader
        shown = frame.select([pl.col(c).cast(t) for c, t in polars_schema(table).items()])
        assert_frame_equal(shown, new["duckdb"], check_dtypes=False)
    assert new["duckdb"].schema == pl.Schema(polars_schema(table))


def _drop_assay(landing: Path, assay: str) -> None:
    yaml = landing / "two" / "study.yaml"
    yaml.write_text("".join(line + "\n" for line in yaml.read_text().splitlines() if f"name: {assay}," not in line))


def test_an_assay_dropped_from_a_study_leaves_every_table_in_one_commit_per_table(built, tmp_path):
    wh, landing = _copy(built, "new", tmp_path)
    lake = Lake(wh / "lake")
    before = {t: lake.version(t) for t in LONG}
    _drop_assay(landing, "counts_b")
    _build(landing, wh, "--accept-shrink", "two")  # an assay dropped on purpose (held without it)
    # rna_normalized also holds the TPM assay's log2 values
    kept = {"rna_counts": ["counts_a"], "rna_normalized": ["counts_a", "tpm"], "rna_vst": ["counts_a"]}
    for table, assays in kept.items():
        for reader, frame in _readers(wh, table).items():
            assert sorted(set(frame["assay"])) == assays, (table, reader)
            assert frame.height == len(assays) * len(GENES) * len(SAMPLES), (table, reader)
        assert lake.version(table) == (before[table] or 0) + 1  # the study replaced in one commit
        assert "study_id=two/assay=counts_b" in _layout(wh, table)[1]  # its files stay on disk until vacuum
        assert sorted({p.split("/")[1] for p in lake.study_files(table, "two")[1]}) == [f"assay={a}" for a in assays]
    counts = _readers(wh, "rna_counts")["duckdb"]
    want = _source(["counts_a"])
    assert_frame_equal(counts.select("assay", "sample_id", "feature_id", value="count").sort("sample_id", "feature_id"),
                       want.sort("sample_id", "feature_id"))
    assert lake.version("rna_abundance") == (before["rna_abundance"] or 0) + 1
    assert doctor(lake, wh) == []


def test_a_warehouse_built_with_study_partitions_alone_rebuilds_reads_and_removes_in_its_layout(built, tmp_path):
    wh, landing = _copy(built, "old", tmp_path)
    _drop_assay(landing, "counts_b")
    _build(landing, wh, "--accept-shrink", "two")  # with the default layout: existing tables keep theirs
    for table in LONG:
        assert _layout(wh, table) == (["study_id"], {"study_id=two"})
    for reader, frame in _readers(wh, "rna_counts").items():
        got = frame.select("assay", "sample_id", "feature_id", value="count").sort("sample_id", "feature_id")
        assert got.rows() == _source(["counts_a"]).sort("sample_id", "feature_id").rows(), reader
    for table, assays in {"rna_normalized": {"counts_a", "tpm"}, "rna_vst": {"counts_a"}}.items():
        assert set(_readers(wh, table)["duckdb"]["assay"]) == assays
    lake = Lake(wh / "lake")
    assert doctor(lake, wh) == []
    assert main(["remove", "two", "--warehouse", str(wh)]) == 0
    for table in LONG:
        for reader, frame in _readers(wh, table).items():
            assert frame.is_empty(), (table, reader)
    assert doctor(lake, wh) == []


def test_assay_names_unsafe_in_a_path_and_null_assays(wh):
    """Names with a space, a slash, '=', '%' or non-ASCII go into the path percent-encoded and read back whole; a
    null assay is staged (Hive's null folder) and fails the not-null contract."""
    lake = Lake(wh / "lake")
    names = ["a b", "x/y=z%1", "ünï", "2020"]
    frame = pl.DataFrame({"study_id": "s", "assay": [n for n in names for _ in range(2)],
                          "sample_id": ["p", "q"] * len(names), "gene_id": None, "feature_id": "f",
                          "count": [float(i) for i in range(2 * len(names))], "length": None})
    commit = commit_frames(lake, [("rna_counts", frame)], tables=["rna_counts"], study_id="s", fingerprint="1")
    assert commit.ok, commit.failures
    assert commit.writes["rna_counts"].files == len(names)
    want = frame.cast(polars_schema("rna_counts")).sort("count")  # type: ignore[arg-type]
    assert_frame_equal(lake.scan("rna_counts").collect().sort("count"), want)
    files = lake.study_files("rna_counts", "s")[1]
    assert all(Path(lake.uri("rna_counts"), f).is_file() for f in files)
    assert_frame_equal(lake.scan_files("rna_counts", files).collect().sort("count"), want)
    view = table_view_sql("rna_counts", [f"{lake.uri('rna_counts')}/{f}" for f in files], root=None)
    con = duckdb.connect()
    con.execute(view)
    assert_frame_equal(con.sql("SELECT * FROM rna_counts").pl().sort("count"), want)
    nulls = frame.with_columns(pl.when(pl.col("count") < 2).then(None).otherwise(pl.col("assay")).alias("assay"))
    failed = commit_frames(lake, [("rna_counts", nulls)], tables=["rna_counts"], study_id="s", fingerprint="2")
    messages = failed.failures["rna_counts"]
    assert messages
    assert all(m.startswith("rna_counts.assay: not_nullable failed") for m in messages), messages
    assert_frame_equal(lake.scan("rna_counts").collect().sort("count"), want)  # the previous version stays


def test_staged_statistics_of_the_assay_come_from_the_paths(lake):
    """A large staged table is checked from its footers: the assay, not in the files, from the folder names."""
    frame = pl.DataFrame({"study_id": "s", "assay": ["b", "a", None, "b"], "sample_id": ["p", "q", "r", "s"],
                          "gene_id": None, "feature_id": "f", "count": [1.0, 2.0, 3.0, 4.0], "length": None})
    staged = lake.stage_frames("rna_counts", [frame], study_id="s")
    assert sorted(p.split("/")[1] for p in staged.relative_paths) == [
        "assay=__HIVE_DEFAULT_PARTITION__", "assay=a", "assay=b"]
    statistics = lake.staged_statistics(staged)
    assert statistics["assay"] == ColumnStatistics(nulls=1, min="a", max="b")
    assert "study_id" not in statistics
    assert "count" in statistics
    assert_frame_equal(lake.scan_staged(staged).collect().sort("count"),
                       frame.cast(polars_schema("rna_counts")))  # type: ignore[arg-type]
