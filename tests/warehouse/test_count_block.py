"""load_study(keep_counts=True) builds the dense block of the rna_counts rows it writes while it writes them: it
must be what ``dense_block`` of the committed rows returns, bit for bit (values, dtype, layout, row and column ids
and order, gene ids, lengths), for every layout a count study can have; no block when the study is not committed,
has no counts, or its block would be too large to keep."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import warehouse.load
from transforms.expression.study import DenseBlock, dense_block
from transforms.ingest.genes import GeneReference
from transforms.ingest.study import read_study
from warehouse.lake import Lake
from warehouse.load import StudyLoad, load_study

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

EDGE = """study_id: edge
name: edge cases of the count block
organism: human
samples: samples.tsv
assays:
  - {{name: {first}, kind: rna_counts, format: matrix, path: a.tsv, gene_id_type: symbol}}
  - {{name: {second}, kind: rna_counts, format: matrix, path: b.tsv}}
  - {{name: tpm, kind: rna_abundance, format: matrix, path: tpm.tsv, gene_id_type: symbol, measure: tpm}}
"""
SAMPLES = "sample_id\tgroup\nS1\ta\nS2\ta\nS3\tb\nS4\tb\n"
# columns out of sample order; TP53 twice (the second row is left out with a warning); two unmapped features
A_TSV = ("gene\tS3\tS1\tS2\tS4\nTP53\t10\t5\t7\t1\nNOTAGENE1\t3\t8\t4\t2\nMYC\t5\t9\t6\t7\nTP53\t1\t2\t3\t4\n"
         "GAPDH\t100\t200\t150\t300\nAAA_UNMAPPED\t0\t0\t0\t0\n")
# cBioPortal's gene columns (composite ids, an empty symbol, an empty Entrez id); S3 has no counts in this assay
B_TSV = ("Hugo_Symbol\tEntrez_Gene_Id\tS1\tS2\tS4\nTP53\t7157\t1\t2\t3\nMYC\t4609\t4\t5\t6\n\t7157\t7\t8\t9\n"
         "NOPE\t\t1\t1\t1\n")
TPM_TSV = "gene\tS1\tS2\tS3\tS4\nTP53\t1.5\t2.5\t3.5\t4.5\nMYC\t1\t2\t3\t4\n"


def _load(folder: Path, tmp_path: Path, reference: GeneReference, *, keep: bool = True) -> tuple[Lake, StudyLoad]:
    lake = Lake(tmp_path / "wh" / "lake")
    return lake, load_study(lake, read_study(folder, reference=reference), keep_counts=keep)


def _assert_block_of_the_written_rows(lake: Lake, load: StudyLoad) -> DenseBlock:
    """The load's block against dense_block of the committed rows of its assay: every bit, layout and id."""
    assert load.ok
    assert load.counts_block is not None
    assay, found = load.counts_block
    expected = dense_block(lake.scan_study("rna_counts", load.study_id).filter(pl.col("assay") == assay),
                           value="count")
    assert found.values.dtype == expected.values.dtype == np.float64
    assert found.values.shape == expected.values.shape
    assert found.values.flags.f_contiguous
    assert expected.values.flags.f_contiguous
    np.testing.assert_array_equal(found.values.view(np.int64), expected.values.view(np.int64))  # NaN bits too
    for ids in ("feature_ids", "gene_ids", "sample_ids"):
        assert getattr(found, ids).dtype == getattr(expected, ids).dtype, ids
        assert getattr(found, ids).equals(getattr(expected, ids), check_names=True), ids
    assert (found.lengths is None) == (expected.lengths is None)
    if found.lengths is not None and expected.lengths is not None:
        assert found.lengths.flags.f_contiguous
        np.testing.assert_array_equal(found.lengths.view(np.int64), expected.lengths.view(np.int64))
    return found


@pytest.mark.parametrize("example", ["pasilla", "airway"])
def test_the_count_block_of_an_example_study_is_the_block_of_its_written_rows(tmp_path, reference, example):
    # pasilla: a matrix of unmapped fly genes; airway: featureCounts (lengths), Ensembl ids, a sample map
    lake, load = _load(EXAMPLES / example, tmp_path, reference)
    block = _assert_block_of_the_written_rows(lake, load)
    wide = {"pasilla": (14599, 7), "airway": (20, 8)}[example]  # the files' gene rows x sample columns
    assert block.values.shape == wide
    assert (block.lengths is not None) == (example == "airway")


def test_the_count_block_of_rsem_files_with_a_missing_gene_is_the_block_of_its_written_rows(
        tmp_path, reference, shared_data, study_folder):
    # one file per sample, fractional expected counts and lengths per sample; ERR188088 lacks two genes
    folder = study_folder(tmp_path / "landing", "study_id: r\nname: r\nassays:\n  - {name: rsem, kind: rna_counts, "
                          "format: rsem, path: 'rsem/*.genes.results*'}\n", name="r")
    (folder / "rsem").mkdir()
    for sample in ("ERR188021", "ERR188297"):
        shutil.copy(shared_data / "rnaseq_geuvadis_rsem" / f"{sample}.genes.results.gz", folder / "rsem")
    lines = gzip.decompress((shared_data / "rnaseq_geuvadis_rsem" / "ERR188088.genes.results.gz").read_bytes()
                            ).decode().splitlines(keepends=True)
    (folder / "rsem" / "ERR188088.genes.results").write_text("".join(lines[:1] + lines[1:101] + lines[103:]))
    lake, load = _load(folder, tmp_path, reference)
    block = _assert_block_of_the_written_rows(lake, load)
    assert block.values.shape == (len(lines) - 1, 3)
    missing = np.isnan(block.values)
    assert missing.sum() == 2
    assert missing[:, block.sample_ids.to_list().index("ERR188088")].sum() == 2
    assert block.lengths is not None


@pytest.mark.parametrize(("first", "second"), [("rna_a", "rna_b"), ("z_a", "b_cbio")])
def test_the_count_block_of_the_first_count_assay_by_name_is_the_block_of_its_written_rows(
        tmp_path, reference, study_folder, first, second):
    # two count assays and an abundance one; the block is of the assay sample QC reads first (by name)
    folder = study_folder(tmp_path / "landing", EDGE.format(first=first, second=second),
                          {"samples.tsv": SAMPLES, "a.tsv": A_TSV, "b.tsv": B_TSV, "tpm.tsv": TPM_TSV}, name="edge")
    lake, load = _load(folder, tmp_path, reference)
    assert "duplicate_feature" in load.issues["code"].to_list()
    block = _assert_block_of_the_written_rows(lake, load)
    assert load.counts_block is not None
    assert load.counts_block[0] == min(first, second)
    if first == "rna_a":  # written out by hand from a.tsv: mapped features by gene id, then unmapped by name
        assert block.feature_ids.to_list() == ["GAPDH", "MYC", "TP53", "AAA_UNMAPPED", "NOTAGENE1"]
        assert block.gene_ids.to_list() == [2597, 4609, 7157, None, None]
        assert block.sample_ids.to_list() == ["S1", "S2", "S3", "S4"]
        np.testing.assert_array_equal(block.values, [[200, 150, 100, 300], [9, 6, 5, 7], [5, 7, 10, 1],
                                                     [0, 0, 0, 0], [8, 4, 3, 2]])
    else:  # b.tsv: S3 has no counts in this assay, so it is no column of the block
        assert block.sample_ids.to_list() == ["S1", "S2", "S4"]
        assert block.values.shape == (4, 3)


def test_no_count_block_without_a_committed_count_assay_or_when_not_asked(tmp_path, reference, study_folder):
    # a count the readers quarantine fails the study: nothing committed, no block
    bad = study_folder(tmp_path / "landing", EDGE.format(first="rna_a", second="rna_b"),
                       {"samples.tsv": SAMPLES, "a.tsv": A_TSV.replace("\t9\t", "\tnine\t"), "b.tsv": B_TSV,
                        "tpm.tsv": TPM_TSV}, name="edge")
    _, load = _load(bad, tmp_path / "bad", reference)
    assert not load.ok
    assert load.counts_block is None
    # a cBioPortal study (abundance, no counts) and a count study loaded without asking
    _, load = _load(EXAMPLES / "study_es_0", tmp_path / "cbio", reference)
    assert load.ok
    assert load.counts_block is None
    _, load = _load(EXAMPLES / "pasilla", tmp_path / "plain", reference, keep=False)
    assert load.ok
    assert load.counts_block is None


def test_a_count_block_too_large_to_keep_is_abandoned_and_the_study_still_loads(tmp_path, reference, monkeypatch):
    built: list[int] = []
    builder = warehouse.load.DenseBlockBuilder.__init__

    def spy(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        built.append(kwargs["cells"])
        builder(self, *args, **kwargs)

    monkeypatch.setattr(warehouse.load.DenseBlockBuilder, "__init__", spy)
    # airway: 20 x 8 counts and as many lengths; one byte short of both (the values alone would fit): the file says
    # how many cells it has, so no block is started (one was built whole, at twice the bound, then dropped)
    monkeypatch.setattr(warehouse.load, "SHARED_BLOCK_BYTES", 2 * 8 * 20 * 8 - 1)
    lake, load = _load(EXAMPLES / "airway", tmp_path / "small", reference)
    assert load.ok
    assert load.counts_block is None
    assert built == []
    assert lake.scan("rna_counts", study_id="airway").collect().height == 160
    monkeypatch.setattr(warehouse.load, "SHARED_BLOCK_BYTES", 2 * 8 * 20 * 8)
    lake, load = _load(EXAMPLES / "airway", tmp_path / "fits", reference)
    _assert_block_of_the_written_rows(lake, load)
    # not even the values, and the file says so (160 cells): no block is started, no cell touched
    built.clear()
    monkeypatch.setattr(warehouse.load, "SHARED_BLOCK_BYTES", 8 * 20 * 8 - 1)
    _, load = _load(EXAMPLES / "airway", tmp_path / "tiny", reference)
    assert load.ok
    assert load.counts_block is None
    assert built == []
    # a file that does not say how many cells it has: given up while the rows stream by
    ingest = read_study(EXAMPLES / "airway", reference=reference)
    ingest.expected_rows["rna_counts"] = None
    load = load_study(Lake(tmp_path / "unknown" / "lake"), ingest, keep_counts=True)
    assert load.ok
    assert load.counts_block is None
    assert built == [0]
