from pathlib import Path

import pytest

from transforms.ingest.cbioportal import is_cbioportal_study, read_cbioportal_study
from transforms.issues import InputError, IssueLog


@pytest.fixture(scope="module")
def es_0(shared_data: Path) -> Path:
    return shared_data / "cbioportal_study_es_0"


def _study(tmp_path: Path, meta_files: dict[str, str], data_files: tuple[str, ...] = ()) -> Path:
    """A minimal cBioPortal folder: study and sample meta files plus the given meta files and data files."""
    (tmp_path / "meta_study.txt").write_text(
        "type_of_cancer: brca\ncancer_study_identifier: tiny\nname: Tiny\ndescription: d\n")
    (tmp_path / "meta_clinical_sample.txt").write_text(
        "cancer_study_identifier: tiny\ngenetic_alteration_type: CLINICAL\ndatatype: SAMPLE_ATTRIBUTES\n"
        "data_filename: data_clinical_sample.txt\n")
    (tmp_path / "data_clinical_sample.txt").write_text("PATIENT_ID\tSAMPLE_ID\nP1\tS1\n")
    for name, text in meta_files.items():
        (tmp_path / name).write_text(text)
    for name in data_files:
        (tmp_path / name).write_text("Hugo_Symbol\tS1\n")
    return tmp_path


def _meta(alteration: str, datatype: str, stable_id: str, data: str, extra: str = "") -> str:
    return (f"cancer_study_identifier: tiny\ngenetic_alteration_type: {alteration}\ndatatype: {datatype}\n"
            f"stable_id: {stable_id}\ndata_filename: {data}\n{extra}")


def test_is_cbioportal_study_needs_meta_study(es_0: Path, tmp_path: Path):
    assert is_cbioportal_study(es_0)
    assert not is_cbioportal_study(tmp_path)


def test_read_cbioportal_study_es0_study_fields(es_0: Path):
    manifest = read_cbioportal_study(es_0, issues=IssueLog("study_es_0"))
    # cat meta_study.txt meta_clinical_samples.txt meta_clinical_patients.txt
    assert manifest.study_id == "study_es_0"
    assert manifest.name == "Test study es_0"
    assert manifest.reference_genome == "hg19"
    assert manifest.organism == "human"
    assert manifest.samples == "data_clinical_samples.txt"
    assert manifest.subjects == "data_clinical_patients.txt"
    assert manifest.source_layout == "cbioportal"


def test_read_cbioportal_study_es0_assays(es_0: Path):
    manifest = read_cbioportal_study(es_0, issues=IssueLog("study_es_0"))
    got = {a.name: (a.kind, a.format, a.path, a.measure) for a in manifest.assays}
    # grep -H 'genetic_alteration_type\|datatype\|stable_id\|data_filename' meta_*.txt, translated by hand
    assert got == {
        "cna_discrete": ("copy_number", "gistic_long", "data_cna_discrete.txt", None),
        "cna_hg19_seg": ("copy_number", "seg", "data_cna_hg19.seg", None),
        "cna_log2": ("copy_number", "log2", "data_cna_log2.txt", "log2"),
        "expression_median": ("rna_abundance", "cbioportal", "data_expression_median.txt", "microarray"),
        "expression_median_Zscores": ("rna_abundance", "cbioportal", "data_expression_median_Zscores.txt",
                                      "zscore"),
        "mutations_extended": ("variants", "maf", "data_mutations_extended.maf", None),
        "protein_quantification": ("protein_abundance", "matrix", "data_protein_quantification.txt", "log2"),
        "rppa": ("protein_abundance", "matrix", "data_rppa.txt", "log2"),
    }
    assays = {a.name: a for a in manifest.assays}
    assert assays["cna_hg19_seg"].reference_genome == "hg19"  # meta_cna_hg19_seg.txt: reference_genome_id
    assert assays["rppa"].platform == "rppa"  # stable_id: rppa
    assert assays["protein_quantification"].platform == "ms"  # stable_id: protein_quantification (CPTAC)
    assert assays["expression_median_Zscores"].options["zscore_of"] == "mrna"  # source_stable_id: mrna
    assert assays["cna_discrete"].options == {"genetic_alteration_type": "COPY_NUMBER_ALTERATION",
                                              "datatype": "DISCRETE_LONG", "stable_id": "gistic"}
    # meta_gene_panel_matrix.txt: data_filename
    assert assays["mutations_extended"].options["gene_panel_matrix"] == "data_gene_panel_matrix.txt"


def test_read_cbioportal_study_es0_reports_skipped_datatypes(es_0: Path):
    issues = IssueLog("study_es_0")
    read_cbioportal_study(es_0, issues=issues)
    skipped = sorted(i.file for i in issues.issues if i.code == "skipped_datatype")
    # ls meta_*.txt minus study, clinical x2, gene panel matrix and the 8 assays above
    assert skipped == [
        "meta_cancer_type.txt", "meta_generic_assay_patient_test.txt", "meta_gistic_genes_amp.txt",
        "meta_gsva_pvalues.txt", "meta_gsva_scores.txt", "meta_methylation_hm27.txt",
        "meta_mutational_signature.txt", "meta_protein_quantification_Zscores.txt",
        "meta_resource_definition.txt", "meta_resource_patient.txt", "meta_resource_sample.txt",
        "meta_resource_study.txt",
        "meta_rppa_Zscores.txt", "meta_structural_variants.txt", "meta_treatment_ec50.txt",
        "meta_treatment_ic50.txt",
    ]
    assert {i.severity for i in issues.issues} == {"info"}
    methylation = next(i for i in issues.issues if i.file == "meta_methylation_hm27.txt")
    assert methylation.line == 3
    assert "METHYLATION CONTINUOUS" in methylation.message


def test_read_cbioportal_study_missing_data_file_is_error(tmp_path: Path):
    meta = _meta("COPY_NUMBER_ALTERATION", "DISCRETE", "gistic", "data_cna.txt")
    study = _study(tmp_path, {"meta_cna.txt": meta})
    issues = IssueLog("tiny")
    manifest = read_cbioportal_study(study, issues=issues)
    assert manifest.assays == []
    (error,) = issues.errors
    assert (error.code, error.file, error.line, error.column) == ("file_missing", "meta_cna.txt", 5,
                                                                  "data_filename")


def test_read_cbioportal_study_data_file_outside_folder_is_error(tmp_path: Path):
    (tmp_path / "study").mkdir()
    (tmp_path / "data_cna.txt").write_text("Hugo_Symbol\tS1\n")
    study = _study(tmp_path / "study", {"meta_cna.txt": _meta("COPY_NUMBER_ALTERATION", "DISCRETE", "gistic",
                                                              "../data_cna.txt")})
    issues = IssueLog("tiny")
    read_cbioportal_study(study, issues=issues)
    assert [(i.code, i.line) for i in issues.errors] == [("path_outside_study", 5)]


def test_read_cbioportal_study_bad_meta_line_is_warning(tmp_path: Path):
    text = _meta("MUTATION_EXTENDED", "MAF", "mutations", "data_mut.maf", "this line has no colon\n")
    study = _study(tmp_path, {"meta_mut.txt": text}, ("data_mut.maf",))
    issues = IssueLog("tiny")
    manifest = read_cbioportal_study(study, issues=issues)
    assert [a.name for a in manifest.assays] == ["mut"]
    assert [(i.code, i.severity, i.file, i.line) for i in issues.issues] == [
        ("bad_meta_line", "warning", "meta_mut.txt", 6)]


def test_read_cbioportal_study_translates_measures(tmp_path: Path):
    metas = {
        "meta_rsem.txt": _meta("MRNA_EXPRESSION", "CONTINUOUS", "rna_seq_v2_mrna", "data_rsem.txt"),
        "meta_rsem_z.txt": _meta("MRNA_EXPRESSION", "Z-SCORE", "rna_seq_v2_mrna_median_all_sample_Zscores",
                                 "data_rsem_z.txt"),
        "meta_tpm.txt": _meta("MRNA_EXPRESSION", "CONTINUOUS", "mrna_seq_tpm", "data_tpm.txt"),
        "meta_linear.txt": _meta("COPY_NUMBER_ALTERATION", "CONTINUOUS", "linear_CNA", "data_linear.txt"),
        "meta_wide.txt": _meta("COPY_NUMBER_ALTERATION", "DISCRETE", "gistic", "data_wide.txt"),
        "meta_odd.txt": _meta("MRNA_EXPRESSION", "CONTINUOUS", "my_profile", "data_odd.txt"),
    }
    data = tuple(m.replace("meta_", "data_") for m in metas)
    issues = IssueLog("tiny")
    manifest = read_cbioportal_study(_study(tmp_path, metas, data), issues=issues)
    got = {a.name: (a.kind, a.format, a.measure, a.options.get("zscore_of")) for a in manifest.assays}
    assert got == {
        "linear": ("copy_number", "log2", "linear", None),
        "odd": ("rna_abundance", "cbioportal", None, None),
        "rsem": ("rna_abundance", "cbioportal", "rsem_normalized", None),
        "rsem_z": ("rna_abundance", "cbioportal", "zscore", "rna_seq_v2_mrna"),
        "tpm": ("rna_abundance", "cbioportal", "tpm", None),
        "wide": ("copy_number", "gistic", None, None),
    }
    assert manifest.reference_genome == "hg19"  # meta_study.txt without reference_genome: cBioPortal default
    assert [(i.code, i.file, i.line) for i in issues.issues] == [("unknown_measure", "meta_odd.txt", 4)]


def test_read_cbioportal_study_other_study_id_is_error(tmp_path: Path):
    text = _meta("MUTATION_EXTENDED", "MAF", "mutations", "data_mut.maf").replace("tiny", "other")
    issues = IssueLog("tiny")
    read_cbioportal_study(_study(tmp_path, {"meta_mut.txt": text}, ("data_mut.maf",)), issues=issues)
    assert [(i.code, i.line) for i in issues.errors] == [("study_id_mismatch", 1)]


def test_read_cbioportal_study_without_identifier_raises(tmp_path: Path):
    (tmp_path / "meta_study.txt").write_text("type_of_cancer: brca\nname: x\n")
    with pytest.raises(InputError) as caught:
        read_cbioportal_study(tmp_path, issues=IssueLog("x"))
    assert caught.value.issue.code == "missing_meta_field"


def test_read_cbioportal_study_without_sample_file_is_warning(tmp_path: Path):
    (tmp_path / "meta_study.txt").write_text("type_of_cancer: brca\ncancer_study_identifier: tiny\nname: T\n"
                                             "reference_genome: hg38\n")
    issues = IssueLog("tiny")
    manifest = read_cbioportal_study(tmp_path, issues=issues)
    assert (manifest.samples, manifest.reference_genome) == (None, "hg38")
    assert [(i.code, i.severity, i.file) for i in issues.issues] == [
        ("no_sample_table", "warning", "meta_study.txt")]
