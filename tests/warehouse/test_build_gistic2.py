"""A study of GISTIC 2.0 outputs loaded through the one commit path: the peak tables and the gene tables, with the
aliquot barcodes resolved to the study's samples (patient barcodes in the LAML clinical table)."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import TEST_DATA
from transforms.ingest.genes import GeneReference
from transforms.ingest.study import read_study
from warehouse.lake import Lake
from warehouse.load import load_study

LAML = TEST_DATA / "variants_tcga_laml_maftools"
MANIFEST = """study_id: laml_gistic
name: TCGA LAML GISTIC 2.0
organism: human
reference_genome: GRCh37
samples: tcga_laml_annot.tsv
assays:
  - {name: gistic_peaks, kind: copy_number, format: gistic2_peaks, path: 'gistic/*.conf_99.txt'}
  - {name: gistic_calls, kind: copy_number, format: gistic, path: gistic/all_thresholded.by_genes.txt}
  - {name: gistic_values, kind: copy_number, format: log2, path: gistic/all_data_by_genes.txt}
"""


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory, reference: GeneReference) -> tuple[Lake, pl.DataFrame]:
    root = tmp_path_factory.mktemp("gistic2")
    folder = root / "laml_gistic"
    (folder / "gistic").mkdir(parents=True)
    (folder / "study.yaml").write_text(MANIFEST)
    shutil.copy(LAML / "tcga_laml_annot.tsv", folder)
    for name in ("all_lesions.conf_99.txt", "amp_genes.conf_99.txt", "del_genes.conf_99.txt"):
        shutil.copy(LAML / name, folder / "gistic")
    for name in ("all_thresholded.by_genes.txt", "all_data_by_genes.txt"):
        shutil.copy(TEST_DATA / "copy_number_gistic2" / name, folder / "gistic")
    (folder / "gistic" / "scores.gistic.conf_99.txt").write_text("Type\n")  # matched by the glob, not GISTIC's
    lake = Lake(root / "lake")
    load = load_study(lake, read_study(Path(folder), reference=reference))
    assert load.ok, load.errors.rows(named=True)
    return lake, load.issues


def _table(lake: Lake, table: str) -> pl.DataFrame:
    return lake.scan(table, study_id="laml_gistic").collect()


def test_build_gistic2_peaks_and_calls(loaded):
    lake, _ = loaded
    peaks = _table(lake, "copy_number_peaks")
    # awk -F'\t' 'NR>1 && $1 !~ /CN values/' all_lesions.conf_99.txt | cut -f1 | sort | uniq -c: 4 amp, 12 del
    assert peaks.group_by("direction").len().sort("direction").rows() == [("amplification", 4), ("deletion", 12)]
    # head -5 amp_genes.conf_99.txt: the 11q23.3 peak lists KMT2A alone
    assert peaks.filter(pl.col("cytoband") == "11q23.3").select("peak_name", "n_genes").row(0) == (
        "Amplification Peak 2", 1)
    calls = _table(lake, "copy_number_peak_calls")
    assert calls.height == 16 * 191  # every peak x every sample column of all_lesions
    # the aliquot TCGA-AB-2820-03A-01D-0756-21 is patient TCGA-AB-2820, the clinical table's sample id;
    # awk (column of that aliquot) on rows 'Amplification Peak 2' / '... - CN values' -> line 3: 2, line 19: 1.4366
    cell = calls.filter(pl.col("sample_id") == "TCGA-AB-2820", pl.col("peak_name") == "Amplification Peak 2")
    assert cell.select("call", "copy_change").row(0) == (2, pytest.approx(1.4366))
    assert calls["sample_id"].str.len_chars().unique().to_list() == [12]


def test_build_gistic2_peak_genes_mapped_through_the_resolver(loaded):
    lake, issues = loaded
    genes = _table(lake, "copy_number_peak_genes")
    kmt2a = genes.filter(pl.col("peak_name") == "Amplification Peak 2")
    assert kmt2a.select("feature_id", "gene_id", "in_wide_peak").rows() == [("KMT2A", 4297, True)]  # NCBI Gene 4297
    gene_map = _table(lake, "gene_id_map").filter(pl.col("assay") == "gistic_peaks")
    assert gene_map.height == genes["feature_id"].n_unique()
    assert gene_map.filter(pl.col("status") == "unmapped").height > 0  # kept and reported, never dropped
    assert genes["gene_id"].null_count() > 0
    codes = set(issues.filter(pl.col("file").str.starts_with("gistic/"))["code"].to_list())
    assert {"repeated_peak_gene", "not_gistic_peaks"} <= codes  # MIR4461 twice in del_genes; scores file


def test_build_gistic2_gene_tables_into_copy_number(loaded):
    lake, _ = loaded
    cn = _table(lake, "copy_number")
    calls = cn.filter(pl.col("assay") == "gistic_calls")
    values = cn.filter(pl.col("assay") == "gistic_values")
    assert calls.height == values.height == 5 * 3
    # all_thresholded.by_genes.txt line 3 (KMT2A, Locus ID 4297): 0 2 0; all_data_by_genes.txt: 0.011 1.437 0.02
    kmt2a = calls.filter(pl.col("feature_id") == "KMT2A|4297").sort("sample_id")
    assert kmt2a.select("sample_id", "gene_id", "call").rows() == [
        ("TCGA-AB-2803", 4297, 0), ("TCGA-AB-2820", 4297, 2), ("TCGA-AB-2822", 4297, 0)]
    assert values.filter(pl.col("feature_id") == "KMT2A|4297").sort("sample_id")["log2_ratio"].to_list() == \
        pytest.approx([0.011, 1.437, 0.02])
    # hsa-mir-200a with GISTIC's negative Locus ID: kept, its symbol decides (not an official one: unmapped)
    mir = calls.filter(pl.col("feature_id") == "hsa-mir-200a|-3")
    assert mir.height == 3


def _peaks_folder(root: Path, files: dict[str, Path]) -> Path:
    folder = root / "peaks_only"
    (folder / "gistic").mkdir(parents=True)
    (folder / "study.yaml").write_text("study_id: peaks_only\nname: peaks\nassays:\n  - {name: gistic_peaks, kind: "
                                       "copy_number, format: gistic2_peaks, path: 'gistic/*'}\n")
    for name, source in files.items():
        shutil.copy(source, folder / "gistic" / name)
    return folder


def test_read_gistic2_peaks_two_confidence_levels_is_a_located_error(tmp_path, reference):
    lesions = LAML / "all_lesions.conf_99.txt"
    folder = _peaks_folder(tmp_path, {"all_lesions.conf_99.txt": lesions, "all_lesions.conf_90.txt": lesions})
    issues = read_study(folder, reference=reference).issues
    (error,) = issues.errors
    assert (error.code, error.file, error.column) == ("gistic_peak_files", "study.yaml", "assays.gistic_peaks.path")
    assert "all_lesions.conf_90.txt" in error.message
    assert "all_lesions.conf_99.txt" in error.message


def test_read_gistic2_peaks_gene_table_in_the_glob_names_its_format(tmp_path, reference):
    folder = _peaks_folder(tmp_path, {"all_lesions.conf_99.txt": LAML / "all_lesions.conf_99.txt",
                                      "all_thresholded.by_genes.txt":
                                          TEST_DATA / "copy_number_gistic2" / "all_thresholded.by_genes.txt"})
    ingest = read_study(folder, reference=reference)
    assert not ingest.issues.has_errors
    (warning,) = [i for i in ingest.issues.issues if i.code == "gistic_gene_table"]
    assert warning.file == "gistic/all_thresholded.by_genes.txt"
    assert "format gistic" in warning.message
    assert "copy_number_peak_genes" not in ingest.tables  # no amp_genes / del_genes: no membership rows
    peaks = pl.concat(ingest.tables["copy_number_peaks"]).collect()
    assert peaks["n_genes"].null_count() == peaks.height  # unknown, not zero: no genes file was given
