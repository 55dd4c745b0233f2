from pathlib import Path

import polars as pl
import pytest

from transforms.ingest.parse.diann import parse_diann
from transforms.ingest.parse.fragpipe import parse_fragpipe
from transforms.ingest.parse.maxquant import parse_maxquant
from transforms.ingest.parse.protein_matrix import parse_protein_matrix
from transforms.ingest.parse.protein_table import parse_protein_ids, run_label
from transforms.ingest.parse.proteomics import parse_protein_file
from transforms.issues import InputError, IssueLog

MAXQUANT = "proteomics_maxquant_lfqanalyst/proteinGroups.txt"
DIANN = "proteomics_diann_pg_matrix/DIA-NN_example_domlfq_report.pg_matrix.tsv"


@pytest.fixture(scope="module")
def maxquant(shared_data):
    issues = IssueLog("lfq")
    return parse_maxquant(shared_data / MAXQUANT, issues=issues), issues


@pytest.fixture(scope="module")
def diann(shared_data):
    issues = IssueLog("hela")
    return parse_diann(shared_data / DIANN, issues=issues), issues


def _write(path: Path, rows: list[list[str]]) -> Path:
    path.write_text("".join("\t".join(row) + "\n" for row in rows))
    return path


# -- MaxQuant (real file) ---------------------------------------------------------------------------------------
def test_parse_maxquant_drops_flagged_groups_with_counted_issues(maxquant):
    assay, issues = maxquant
    # tests/data keeps 266 of the 1,459 groups (proteomics_maxquant_lfqanalyst/SOURCE.md)
    # awk -F'\t' 'NR>1 && $143!="+" && $144!="+" && $145!="+"' proteinGroups.txt | wc -l  (of 266 groups)
    assert assay.features.height == 198
    counts = {i.code: i.message.split()[0] for i in issues.issues if i.severity == "info"}
    # awk -F'\t' 'NR>1 && $144=="+"' | wc -l -> 17; $145 (contaminant) -> 46; $143 (only by site) -> 8
    assert counts == {"reverse_dropped": "17", "contaminant_dropped": "46", "only_by_site_dropped": "8"}
    assert len(assay.metadata["dropped"]["reverse"]) == 17
    assert assay.metadata["n_dropped"] == 266 - 198
    assert not assay.features["is_contaminant"].any()
    assert not assay.features["is_decoy"].any()


def test_parse_maxquant_lfq_labels_and_values(maxquant):
    assay, _ = maxquant
    # head -1 proteinGroups.txt | tr '\t' '\n' | grep '^LFQ intensity' -> H1..H5, L1..L5, N1..N5
    assert assay.columns == [f"{g}{i}" for g in "HLN" for i in range(1, 6)]
    records = assay.records.collect()
    assert records.height == 198 * 15
    # awk -F'\t' '$1=="A0AVT1"{print $112}' proteinGroups.txt (LFQ intensity H1) -> 3331300; line 2
    row = records.filter(pl.col("feature_id") == "A0AVT1", pl.col("column") == "H1").row(0, named=True)
    assert row["abundance"] == 3331300.0
    assert row["line"] == 2
    # awk -F'\t' 'NR>1 && $143!="+" && $144!="+" && $145!="+" && $112==0' proteinGroups.txt | wc -l
    assert records.filter(pl.col("column") == "H1")["abundance"].null_count() == 96
    assert records["problem"].null_count() == records.height


def test_parse_maxquant_gene_names_of_kept_groups(maxquant):
    assay, _ = maxquant
    features = assay.features
    # awk -F'\t' 'NR>1 && $143!="+" && $144!="+" && $145!="+" && $7 ~ /;/' proteinGroups.txt | wc -l
    assert features.filter(pl.col("gene_names").list.len() > 1).height == 12
    # ... && $7==""  -> 11 iRT peptides and P01621
    assert features.filter(pl.col("gene_names").list.len() == 0).height == 12
    group = features.filter(pl.col("feature_id") == "P62834;P61224;A6NIZ1").row(0, named=True)
    assert group["gene_names"] == ["RAP1A", "RAP1B"]
    assert group["accessions"] == ["P62834", "P61224", "A6NIZ1"]
    assert group["platform"] == "ms"


def test_parse_maxquant_keep_flagged_marks_instead_of_dropping(shared_data):
    assay = parse_maxquant(shared_data / MAXQUANT, issues=IssueLog("lfq"), keep_flagged=True)
    features = assay.features
    assert features.height == 266
    # flag counts from awk as above; CON__ prefixes are removed from the accessions
    assert (features["is_decoy"].sum(), features["is_contaminant"].sum(), features["only_by_site"].sum()) == (
        17, 46, 8)
    con = features.filter(pl.col("feature_id") == "CON__Q3ZBS7;P04004").row(0, named=True)
    assert con["accessions"] == ["Q3ZBS7", "P04004"]
    assert con["gene_names"] == []


def test_parse_maxquant_quantity_absent_names_columns_present(shared_data):
    with pytest.raises(InputError) as caught:
        parse_maxquant(shared_data / MAXQUANT, issues=IssueLog("lfq"), quantity="ibaq")
    assert caught.value.issue.code == "quantity_missing"
    assert "'LFQ intensity H1'" in caught.value.issue.message
    assert "'Intensity H1'" in caught.value.issue.message


def test_parse_maxquant_ibaq_columns_and_fasta_ids(tmp_path):
    path = _write(tmp_path / "proteinGroups.txt", [
        ["Protein IDs", "Gene names", "Fasta headers", "Intensity", "Intensity S1", "Intensity S2", "iBAQ",
         "iBAQ peptides", "iBAQ S1", "iBAQ S2", "LFQ intensity S1", "LFQ intensity S2", "Reverse",
         "Potential contaminant", "Only identified by site"],
        ["sp|P04637|P53_HUMAN;sp|P04637-2|P53_HUMAN", "", ">sp|P04637|P53_HUMAN Cellular tumor antigen p53 OS=Homo "
         "sapiens GN=TP53 PE=1", "30", "10", "20", "7", "12", "3", "4", "11", "21", "", "", ""],
        ["Q9Y2S6", "TMA7", "", "5", "0", "5", "2", "3", "0", "2.5", "0", "6", "", "", ""],
        ["REV__Q9Y2S6", "", "", "1", "1", "0", "1", "1", "1", "0", "1", "0", "+", "", ""],
    ])
    issues = IssueLog("t")
    assay = parse_maxquant(path, issues=issues, quantity="ibaq")
    assert assay.columns == ["S1", "S2"]
    records = assay.records.collect().sort("line", "column")
    # iBAQ S1/S2 of the two kept rows; the iBAQ 0 is missing; `iBAQ` and `iBAQ peptides` are not samples
    assert records["abundance"].to_list() == [3.0, 4.0, None, 2.5]
    p53 = assay.features.row(0, named=True)
    assert p53["accessions"] == ["P04637", "P04637-2"]
    assert p53["entry_names"] == ["P53_HUMAN"]
    assert p53["gene_names"] == ["TP53"]  # from GN= of the Fasta header, since Gene names is empty
    assert [i.code for i in issues.issues] == ["reverse_dropped"]


def test_parse_maxquant_header_variants(tmp_path):
    # R-mangled and lower-case headers, older MaxQuant's `Contaminant`
    path = _write(tmp_path / "pg.csv", [
        ["protein.ids", "Gene.names", "LFQ.intensity.S_1", "lfq intensity S 2", "Contaminant"],
        ["P04637", "TP53", "5", "6", ""],
        ["P00761", "", "7", "8", "+"],
    ])
    issues = IssueLog("t")
    assay = parse_maxquant(path, issues=issues)
    assert assay.columns == ["S_1", "S 2"]
    assert assay.features["feature_id"].to_list() == ["P04637"]
    assert [(i.code, i.column) for i in issues.issues] == [("contaminant_dropped", "Contaminant")]


# -- MaxQuant-like bad input ------------------------------------------------------------------------------------
def test_parse_maxquant_bad_cells_duplicates_and_missing_columns(tmp_path):
    path = _write(tmp_path / "pg.txt", [
        ["Protein IDs", "Gene names", "LFQ intensity A", "LFQ intensity B"],
        ["P1", "G1", "abc", "-5"],
        ["P2", "G2", "inf", "NaN"],
        ["P1", "G1", "1", "2"],
        ["", "G3", "1", "2"],
    ])
    issues = IssueLog("t")
    assay = parse_maxquant(path, issues=issues)
    records = assay.records.collect().sort("line", "column")
    assert records["problem"].to_list() == ["non-numeric value 'abc'", "negative intensity '-5'",
                                            "non-finite value 'inf'", None]
    assert records["raw"].to_list() == ["abc", "-5", "inf", None]
    assert records["line"].to_list() == [2, 2, 3, 3]
    assert records["abundance"].null_count() == 4
    assert [(i.code, i.line) for i in issues.issues] == [("empty_identifier", 5), ("duplicate_feature", 4)]

    _write(tmp_path / "wrong.txt", [["Accession", "LFQ intensity A"], ["P1", "1"]])
    with pytest.raises(InputError) as caught:
        parse_maxquant(tmp_path / "wrong.txt", issues=IssueLog("t"))
    assert caught.value.issue.code == "missing_column"

    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(InputError) as caught:
        parse_maxquant(tmp_path / "empty.txt", issues=IssueLog("t"))
    assert caught.value.issue.code == "empty_file"


def test_parse_maxquant_ragged_row_names_line(tmp_path):
    path = tmp_path / "pg.txt"
    path.write_text("Protein IDs\tLFQ intensity A\tLFQ intensity B\nP1\t1\t2\nP2\t1\t2\t3\t4\n")
    issues = IssueLog("t")
    parsed = parse_maxquant(path, issues=issues)  # reported once, left out, P1 still read
    assert [(i.code, i.line) for i in issues.errors] == [("ragged_row", 3)]
    assert parsed.records.collect()["line"].unique().to_list() == [2]


# -- DIA-NN (real file) -----------------------------------------------------------------------------------------
def test_parse_diann_runs_from_windows_paths(diann):
    assay, _ = diann
    # head -1 | tr '\t' '\n' | tail -n +5 | wc -l -> 18 runs; the first is D:\Hackathon_DOMS\..._Map2_3K.mzML
    assert len(assay.columns) == 18
    assert assay.columns[0] == "20210131_EXPL4_ViAl_SA_HeLa_Evosep_21min_DIA_120k_15k_1-5_Map2_3K"
    assert assay.features.height == 299
    records = assay.records.collect()
    assert records.height == 299 * 18
    # awk -F'\t' 'NR>1{for(i=5;i<=NF;i++) if($i=="") n++} END{print n}' -> 1249
    assert records["abundance"].null_count() == 1249
    # line 2: A0A024R1R8;Q9Y2S6 ... first run 9.50622e+06
    first = records.filter(pl.col("feature_id") == "A0A024R1R8;Q9Y2S6",
                           pl.col("column") == assay.columns[0]).row(0, named=True)
    assert first["abundance"] == 9.50622e06
    assert first["line"] == 2


def test_parse_diann_features_and_contaminants(diann):
    assay, issues = diann
    group = assay.features.filter(pl.col("feature_id") == "A0A024R1R8;Q9Y2S6").row(0, named=True)
    assert group["gene_names"] == ["TMA7", "TMA7B"]
    assert group["entry_names"] == ["TMA7B_HUMAN", "TMA7_HUMAN"]
    assert group["description"] == "Translation machinery-associated protein 7B"
    # cut -f1 ... | grep -c '^Cont_' -> 45 contaminant groups, kept and flagged
    assert assay.features["is_contaminant"].sum() == 45
    assert [(i.code, i.message.split()[0]) for i in issues.issues] == [("contaminant_flagged", "45")]
    trypsin = assay.features.filter(pl.col("feature_id") == "Cont_P00761").row(0, named=True)
    assert (trypsin["accessions"], trypsin["entry_names"], trypsin["gene_names"]) == (
        ["P00761"], ["TRYP_PIG"], [])


def test_parse_diann_19_layout_and_duplicate_run_stems(tmp_path):
    path = _write(tmp_path / "report.pg_matrix.tsv", [
        ["Protein.Group", "Protein.Ids", "Protein.Names", "Genes", "First.Protein.Description", "N.Sequences",
         "N.Proteotypic.Sequences", "Organism", "/data/runs/A.raw", "/data/runs/B.d", "C.dia"],
        ["P04637", "P04637;P04637-2", "P53_HUMAN", "TP53", "p53", "4", "3", "Homo sapiens", "100", "", "300"],
    ])
    issues = IssueLog("t")
    assay = parse_diann(path, issues=issues)
    assert assay.columns == ["A", "B", "C"]
    assert [(i.code, i.column) for i in issues.issues] == [("not_a_run", "Organism")]
    assert assay.features["accessions"].to_list() == [["P04637"]]
    assert assay.records.collect().sort("column")["abundance"].to_list() == [100.0, None, 300.0]

    _write(tmp_path / "dup.tsv", [["Protein.Group", "Genes", "D:\\x\\run.mzML", "D:\\y\\run.mzML"],
                                  ["P04637", "TP53", "1", "2"]])
    with pytest.raises(InputError) as caught:
        parse_diann(tmp_path / "dup.tsv", issues=IssueLog("t"))
    assert caught.value.issue.code == "duplicate_sample"


def test_run_label_strips_paths_and_raw_extensions():
    assert run_label(r"D:\Hackathon_DOMS\x_Map1_3K.mzML") == "x_Map1_3K"
    assert run_label("/mnt/data/sample.one.raw") == "sample.one"
    assert run_label("/mnt/data/run.d/") == "run"
    assert run_label("run.mzML.dia") == "run"


def test_parse_protein_ids_fasta_headers_and_prefixes():
    ids = parse_protein_ids(["sp|P04637|P53_HUMAN;contam_sp|P00761|TRYP_PIG;rev_tr|A0A024R1R8|X_HUMAN;iRT-pepA"])
    assert ids.accessions == ["P04637", "P00761", "A0A024R1R8"]
    assert ids.entry_names == ["P53_HUMAN", "TRYP_PIG", "X_HUMAN"]
    assert (ids.n_entries, ids.n_contaminant, ids.n_decoy) == (4, 1, 1)


# -- FragPipe (written from the documented combined_protein.tsv layout) -----------------------------------------
FRAGPIPE_HEADER = ["Protein", "Protein ID", "Entry Name", "Gene", "Protein Length", "Organism", "Protein Existence",
                   "Description", "Protein Probability", "Top Peptide Probability", "Combined Total Peptides",
                   "Combined Spectral Count", "Combined Unique Spectral Count", "Combined Total Spectral Count",
                   "ctrl_1 Spectral Count", "ctrl_1 Unique Spectral Count", "ctrl_1 Total Spectral Count",
                   "ctrl_1 Intensity", "ctrl_1 Unique Intensity", "ctrl_1 Total Intensity",
                   "ctrl_1 MaxLFQ Total Intensity", "ctrl_1 MaxLFQ Intensity", "ctrl_1 MaxLFQ Unique Intensity",
                   "trt 2 Spectral Count", "trt 2 Unique Spectral Count", "trt 2 Total Spectral Count",
                   "trt 2 Intensity", "trt 2 Unique Intensity", "trt 2 Total Intensity",
                   "trt 2 MaxLFQ Total Intensity", "trt 2 MaxLFQ Intensity", "trt 2 MaxLFQ Unique Intensity",
                   "Indistinguishable Proteins"]


def _fragpipe_row(protein, accession, entry, gene, ctrl, trt, others=""):
    ctrl_i, ctrl_lfq = ctrl
    trt_i, trt_lfq = trt
    return [protein, accession, entry, gene, "393", "Homo sapiens", "1:Experimental evidence at protein level",
            "desc", "1.000", "0.999", "12", "40", "38", "41",
            "20", "19", "21", ctrl_i, ctrl_i, ctrl_i, ctrl_lfq, ctrl_lfq, ctrl_lfq,
            "20", "19", "21", trt_i, trt_i, trt_i, trt_lfq, trt_lfq, trt_lfq, others]


def test_parse_fragpipe_combined_protein(tmp_path):
    path = _write(tmp_path / "combined_protein.tsv", [
        FRAGPIPE_HEADER,
        _fragpipe_row("sp|P04637|P53_HUMAN", "P04637", "P53_HUMAN", "TP53", ("1500.5", "1400"), ("0", "0"),
                      "sp|P04637-2|P53_HUMAN, tr|A0A087WT22|A0A087WT22_HUMAN"),
        _fragpipe_row("contam_sp|P00761|TRYP_PIG", "P00761", "TRYP_PIG", "", ("9e5", "8e5"), ("7e5", "6e5")),
        _fragpipe_row("rev_sp|Q9Y2S6|TMA7_HUMAN", "Q9Y2S6", "TMA7_HUMAN", "TMA7", ("10", "0"), ("0", "0")),
    ])
    assay = parse_fragpipe(path, issues=IssueLog("fp"))
    assert assay.columns == ["ctrl_1", "trt 2"]
    records = assay.records.collect().sort("line", "column")
    # MaxLFQ Intensity columns; zeros are missing
    assert records["abundance"].to_list() == [1400.0, None, 8e5, 6e5, None, None]
    features = assay.features
    p53 = features.row(0, named=True)
    assert p53["feature_id"] == "sp|P04637|P53_HUMAN"
    assert p53["protein_group"] == "sp|P04637|P53_HUMAN;sp|P04637-2|P53_HUMAN;tr|A0A087WT22|A0A087WT22_HUMAN"
    assert p53["accessions"] == ["P04637", "P04637-2", "A0A087WT22"]
    assert p53["gene_names"] == ["TP53"]
    assert features["is_contaminant"].to_list() == [False, True, False]
    assert features["is_decoy"].to_list() == [False, False, True]

    intensity = parse_fragpipe(path, issues=IssueLog("fp"), quantity="intensity").records.collect()
    assert intensity.sort("line", "column")["abundance"].to_list()[:2] == [1500.5, None]
    with pytest.raises(InputError) as caught:
        parse_fragpipe(path, issues=IssueLog("fp"), quantity="razor_intensity")
    assert caught.value.issue.code == "quantity_missing"
    assert "'ctrl_1 MaxLFQ Intensity'" in caught.value.issue.message


# -- RPPA and protein matrices ------------------------------------------------------------------------------------
def test_parse_protein_matrix_cbioportal_rppa(shared_data):
    assay = parse_protein_file(shared_data / "cbioportal_study_es_0/data_rppa.txt", issues=IssueLog("es_0"),
                               format="matrix", platform="rppa")
    # wc -l data_rppa.txt -> 10 (9 antibodies); 2 sample columns
    assert assay.columns == ["TCGA-C8-A12T-01", "TCGA-A2-A0D2-01"]
    assert assay.features.height == 9
    records = assay.records.collect()
    assert records.height == 18
    # grep '^EIF4EBP1|4E-BP1\t' data_rppa.txt -> 1.1906 -0.85584
    value = records.filter(pl.col("feature_id") == "EIF4EBP1|4E-BP1", pl.col("column") == "TCGA-A2-A0D2-01")
    assert value["abundance"].to_list() == [-0.85584]
    features = assay.features
    # grep -c '_p[STY]' data_rppa.txt -> 5 phospho antibodies
    assert features["is_phospho"].sum() == 5
    akt = features.filter(pl.col("feature_id") == "AKT1 AKT2 AKT3|Akt_pS473").row(0, named=True)
    assert (akt["gene_names"], akt["antibody"], akt["is_phospho"], akt["platform"]) == (
        ["AKT1", "AKT2", "AKT3"], "Akt_pS473", True, "rppa")
    assert features.filter(pl.col("feature_id") == "AKT1 AKT2 AKT3|Akt")["is_phospho"].to_list() == [False]


def test_parse_protein_matrix_cbioportal_mass_spec_na(shared_data):
    assay = parse_protein_matrix(shared_data / "cbioportal_study_es_0/data_protein_quantification.txt",
                                 issues=IssueLog("es_0"), platform="ms")
    records = assay.records.collect()
    # tail -n +2 data_protein_quantification.txt | awk -F'\t' '{for(i=2;i<=NF;i++) if($i=="NA") n++} END{print n}' -> 40
    assert (records.height, records["abundance"].null_count()) == (62, 40)
    assert assay.features.filter(pl.col("feature_id") == "TP53|TP53")["is_phospho"].to_list() == [False]
    assert assay.features.filter(pl.col("feature_id") == "BRAF|BRAF_pS399")["gene_names"].to_list() == [["BRAF"]]


def test_parse_protein_matrix_mixomics_antibodies_as_columns(shared_data):
    assay = parse_protein_file(shared_data / "tcga_brca_mixomics/train_protein.tsv", issues=IssueLog("brca"),
                               format="rppa", transpose=True)
    # tests/data keeps the first 20 of the 150 samples (tcga_brca_mixomics/SOURCE.md):
    # awk 'END{print NR-1}' -> 20 samples; head -1 | awk -F'\t' '{print NF-1}' -> 142 antibodies; A0FJ on line 2
    assert (len(assay.columns), assay.features.height) == (20, 142)
    records = assay.records.collect()
    assert records.height == 20 * 142
    # awk -F'\t' '$1=="A0FJ"{print $2}' train_protein.tsv -> 14-3-3_epsilon 0.0491307780856859
    value = records.filter(pl.col("column") == "A0FJ", pl.col("feature_id") == "14-3-3_epsilon")
    assert value["abundance"].to_list() == [0.0491307780856859]
    assert value["line"].to_list() == [2]
    akt = assay.features.filter(pl.col("feature_id") == "Akt_pS473").row(0, named=True)
    assert (akt["antibody"], akt["gene_names"], akt["is_phospho"]) == ("Akt_pS473", [], True)
    # head -1 train_protein.tsv | tr '\t' '\n' | grep -c '_p[STY][0-9]' -> 41
    assert assay.features["is_phospho"].sum() == 41


def test_parse_protein_file_rejects_unknown_format(tmp_path):
    with pytest.raises(ValueError, match="format must be one of"):
        parse_protein_file(tmp_path / "x.tsv", issues=IssueLog("t"), format="spectronaut")
