"""A study.yaml with genomic and proteomic layers, aliquot barcodes mapped through sample_map, built end to end.

Protein figures come from awk on the real MaxQuant / DIA-NN files (see tests/transforms/test_parse_proteomics.py
for the derivations); the small CNA and mutation matrices are written here, so their expected rows are
hand-counted.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.warehouse.catalog_sql import sql as _sql
from warehouse.cli import main

pytestmark = pytest.mark.slow

STUDY = """\
study_id: multi
name: multi-omics fixture
organism: human
reference_genome: GRCh38
samples: samples.tsv
sample_map: sample_map.tsv
assays:
  - {name: proteome, kind: protein_abundance, format: maxquant, path: proteinGroups.txt, quantity: lfq}
  - {name: dia, kind: protein_abundance, format: diann, path: report.pg_matrix.tsv}
  - {name: cna, kind: copy_number, format: gistic, path: cna.tsv}
  - {name: mut, kind: mutation_status, format: matrix, path: mutations.tsv}
  - {name: calls, kind: variants, format: vcf, path: calls.vcf}
"""

CNA = "Hugo_Symbol\tTCGA-OR-A5J1-01A-11D-A29H-01\tTCGA-OR-A5J2-01A-11D-A29H-01\nTP53\t-1\t0\nMYC\t2\t1\nERBB2\tNA\t2\n"
MUTATIONS = "gene\tT1\tT2\nTP53\t1\t0\nKRAS\t0\t\nSEPT9\tNA\t1\n"


@pytest.fixture(scope="module")
def built(tmp_path_factory, shared_data, study_folder) -> Path:
    tmp = tmp_path_factory.mktemp("multi")
    study = study_folder(tmp / "landing", STUDY, {"cna.tsv": CNA, "mutations.tsv": MUTATIONS}, name="multi")
    shutil.copy(shared_data / "proteomics_maxquant_lfqanalyst" / "proteinGroups.txt", study)
    shutil.copy(shared_data / "proteomics_diann_pg_matrix" / "DIA-NN_example_domlfq_report.pg_matrix.tsv",
                study / "report.pg_matrix.tsv")
    shutil.copy(shared_data / "variants_annotated_vcf" / "cyvcf2_test-haploidX_VEP81_CSQ_3samples.vcf",
                study / "calls.vcf")
    header = (study / "report.pg_matrix.tsv").read_text().splitlines()[0].split("\t")
    runs = [h.replace("\\", "/").rsplit("/", 1)[-1].rsplit(".", 1)[0] for h in header[4:]]
    samples = ["H1", "H2", "H3", "H4", "H5", "L1", "L2", "L3", "L4", "L5", "N1", "N2", "N3", "N4", "N5",
               "TCGA-OR-A5J1-01", "TCGA-OR-A5J2-01", "T1", "T2", "37150", "37165", "38008"]
    rows = [f"{s}\t{s.rsplit('-', 1)[0] if s.startswith('TCGA') else s}" for s in samples]
    rows += [f"run{i:02d}\trun{i:02d}" for i in range(len(runs))]
    (study / "samples.tsv").write_text("sample_id\tsubject_id\n" + "\n".join(rows) + "\n")
    mapping = [f"dia\t{run}\trun{i:02d}" for i, run in enumerate(runs)]
    (study / "sample_map.tsv").write_text("assay\tcolumn\tsample_id\n" + "\n".join(mapping) + "\n")
    wh = tmp / "warehouse"
    assert main(["build", "--landing", str(tmp / "landing"), "--warehouse", str(wh)]) == 0
    return wh


def test_maxquant_groups_kept_and_values(built):
    # awk (see test_parse_proteomics): 266 groups in the tests/data subset minus reverse / contaminant /
    # only-by-site rows = 198 kept; 15 LFQ samples
    assert _sql(built, "SELECT count(DISTINCT feature_id), count(DISTINCT sample_id) FROM protein_abundance "
                       "WHERE assay = 'proteome'") == [(198, 15)]
    # awk: A0AVT1 LFQ intensity H1 = 3331300 (line 2)
    assert _sql(built, "SELECT DISTINCT abundance FROM protein_abundance WHERE assay = 'proteome' "
                       "AND feature_id = 'A0AVT1' AND sample_id = 'H1'") == [(3331300.0,)]
    # normalized is log2 median-centred per sample: the median over each sample's groups is 0
    medians = _sql(built, "SELECT sample_id, median(normalized) FROM (SELECT DISTINCT sample_id, feature_id, "
                          "normalized FROM protein_abundance WHERE assay = 'proteome' AND normalized IS NOT NULL) "
                          "GROUP BY ALL")
    assert all(abs(m) < 1e-9 for _, m in medians)


def test_diann_runs_mapped_through_sample_map(built):
    # 18 run columns (SOURCE.md), each mapped to run00..run17 by sample_map; 299 groups
    assert _sql(built, "SELECT count(DISTINCT sample_id), count(DISTINCT feature_id) FROM protein_abundance "
                       "WHERE assay = 'dia'") == [(18, 299)]


def test_copy_number_aliquots_resolve_to_samples(built):
    rows = _sql(built, "SELECT sample_id, feature_id, call FROM copy_number ORDER BY 1, 2")
    assert rows == [("TCGA-OR-A5J1-01", "ERBB2", None), ("TCGA-OR-A5J1-01", "MYC", 2),
                    ("TCGA-OR-A5J1-01", "TP53", -1), ("TCGA-OR-A5J2-01", "ERBB2", 2),
                    ("TCGA-OR-A5J2-01", "MYC", 1), ("TCGA-OR-A5J2-01", "TP53", 0)]


def test_mutation_matrix_keeps_not_profiled_as_null(built):
    rows = _sql(built, "SELECT sample_id, feature_id, gene_id, mutated FROM gene_mutation_status "
                       "WHERE assay = 'mut' ORDER BY 1, 2")
    assert rows == [("T1", "KRAS", 3845, False), ("T1", "SEPT9", 10801, None), ("T1", "TP53", 7157, True),
                    ("T2", "KRAS", 3845, None), ("T2", "SEPT9", 10801, True), ("T2", "TP53", 7157, False)]
    # SEPT9 is a previous symbol of SEPTIN9 (gene 10801): mapped through the alias rule
    assert _sql(built, "SELECT status, rule FROM gene_id_map WHERE assay = 'mut' AND feature_id = 'SEPT9'") == [
        ("mapped", "alias")]


def test_sample_omics_coverage_per_layer(built):
    rows = dict(_sql(built, "SELECT sample_id, layers FROM sample_omics_coverage WHERE n_layers > 0"))
    assert rows["H1"] == ["protein_abundance"]
    assert rows["TCGA-OR-A5J1-01"] == ["copy_number"]
    assert rows["T1"] == ["mutation_status"]
    assert "variants" in rows["37150"]


def test_missing_protein_values_are_counted_per_sample(built):
    # awk on proteinGroups.txt: 96 kept groups have LFQ intensity 0 (missing) in H1
    (message,) = _sql(built, "SELECT message FROM ingest_issues WHERE code = 'missing_values' "
                             "AND file = 'proteinGroups.txt'")[0]
    assert "H1 96/198" in message
