"""Tool QC as sample attributes: a real MultiQC general-stats file resolved through the sample-identity rules, and
RIN / DV200 columns of samples.tsv; unresolvable MultiQC rows are located warnings, never silently dropped."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.ingest.study import read_study
from warehouse.load import study_issues

MULTIQC = Path(__file__).resolve().parents[2] / "data" / "multiqc" / "multiqc_general_stats.txt"
SPECTRA = "Metaproteomics_mqc-generalstats-metaproteomics-number_of_spectra"
MATCHED = "Metaproteomics_mqc-generalstats-metaproteomics-fdr_general_num_of_matched_spectra"
RUN = "20230216_Lum1_3h_G3_{}"


def _study(tmp_path: Path, study_folder) -> Path:
    """10 samples named as MultiQC names them, 5 in lower case, 4 short ids mapped by sample_map, 1 run unknown."""
    exact = [RUN.format(f"D_Cel_{g}{i}") for g in ("Ce", "Co") for i in range(1, 6)]
    lower = [RUN.format(f"N_Cel_Ce{i}").lower() for i in range(1, 6)]
    short = [f"N_Co{i}" for i in range(1, 5)]
    rows = [f"{s}\t{7.1 + i / 10:.1f}\t{60 + i}" for i, s in enumerate(exact + lower + short)]
    files = {"samples.tsv": "sample_id\tRIN\tDV200\n" + "\n".join(rows) + "\n",
             "sample_map.tsv": "assay\tcolumn\tsample_id\n" + "".join(
                 f"multiqc\t{RUN.format(f'N_Cel_Co{i}')}\tN_Co{i}\n" for i in range(1, 5))}
    folder = study_folder(tmp_path, "study_id: s\nname: n\nsamples: samples.tsv\nsample_map: sample_map.tsv\n"
                                    "assays: []\n", files)
    (folder / "qc" / "multiqc_data").mkdir(parents=True)  # found anywhere in the study folder
    (folder / "qc" / "multiqc_data" / "multiqc_general_stats.txt").write_bytes(MULTIQC.read_bytes())
    return folder


def _attributes(folder: Path, reference) -> tuple[pl.DataFrame, pl.DataFrame]:
    ingest = read_study(folder, reference=reference)
    attributes = pl.concat(ingest.tables["sample_attributes"]).collect()
    return attributes, study_issues(ingest)


def _value(attributes: pl.DataFrame, sample: str, attribute: str) -> tuple[str, str] | None:
    found = attributes.filter(pl.col("sample_id") == sample, pl.col("attribute") == attribute)
    return found.select("value", "value_type").row(0) if found.height else None


def test_multiqc_general_stats_become_sample_attributes_by_the_sample_rules(tmp_path, study_folder, reference):
    attributes, issues = _attributes(_study(tmp_path, study_folder), reference)
    # values read off the file: line 2 (D_Cel_Ce1), line 12 (N_Cel_Ce1), line 17 (N_Cel_Co1), line 11 (D_Cel_Co5)
    assert _value(attributes, RUN.format("D_Cel_Ce1"), SPECTRA) == ("103743", "number")      # exact
    assert _value(attributes, RUN.format("N_Cel_Ce1").lower(), SPECTRA) == ("93603", "number")  # case-insensitive
    assert _value(attributes, "N_Co1", SPECTRA) == ("95918", "number")                       # sample_map (multiqc)
    assert _value(attributes, RUN.format("D_Cel_Co5"), MATCHED) == ("4475", "number")
    multiqc = attributes.filter(pl.col("attribute").str.starts_with("Metaproteomics_"))
    assert multiqc.height == 19 * 5  # 20 rows x 5 columns, one row unresolved
    assert multiqc["sample_id"].n_unique() == 19
    # the unknown run: a located warning naming it, its values not stored, the study not failed
    (issue,) = issues.filter(pl.col("code") == "unresolved_tool_qc_sample").iter_rows(named=True)
    assert (issue["severity"], issue["file"], issue["line"], issue["column"]) == (
        "warning", "qc/multiqc_data/multiqc_general_stats.txt", 21, "Sample")
    assert RUN.format("N_Cel_Co5") in issue["message"]
    assert "93340" not in attributes["value"].to_list()
    assert issues.filter(pl.col("severity") == "error").height == 0


def test_rin_and_dv200_columns_of_samples_tsv_are_numeric_sample_attributes(tmp_path, study_folder, reference):
    attributes, _ = _attributes(_study(tmp_path, study_folder), reference)
    assert _value(attributes, RUN.format("D_Cel_Ce1"), "RIN") == ("7.1", "number")
    assert _value(attributes, "N_Co4", "DV200") == ("78", "number")
    assert attributes.filter(pl.col("attribute") == "RIN").height == 19


def test_a_multiqc_column_named_like_a_samples_tsv_column_keeps_the_sample_table_value(tmp_path, study_folder,
                                                                                      reference):
    folder = study_folder(tmp_path, "study_id: s\nname: n\nsamples: samples.tsv\nassays: []\n", {
        "samples.tsv": "sample_id\tRIN\nA\t8.5\nB\t9.0\n",
        "multiqc_general_stats.txt": "Sample\tRIN\tFastQC_mqc-generalstats-fastqc-percent_gc\nA\t3.0\t41.0\nB\t\t\n"})
    attributes, issues = _attributes(folder, reference)
    assert _value(attributes, "A", "RIN") == ("8.5", "number")
    assert _value(attributes, "A", "FastQC_mqc-generalstats-fastqc-percent_gc") == ("41.0", "number")
    assert _value(attributes, "B", "FastQC_mqc-generalstats-fastqc-percent_gc") is None  # empty cell: no value
    (issue,) = issues.filter(pl.col("code") == "duplicate_attribute").iter_rows(named=True)
    assert (issue["file"], issue["line"], issue["column"]) == ("multiqc_general_stats.txt", 2, "RIN")
