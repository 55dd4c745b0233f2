"""Malformed-input corpus: every input format the warehouse reads, broken in every way a landing folder breaks.

One test id per case, ``<format>-<case>`` (``pytest -k corpus``). Each case writes a study folder from a small
clean seed of the format (cut from the real files in ``tests/data`` or hand-written), damages one file, loads it
in-process into a warehouse that already holds a good study (``examples/airway``, loaded once per module), and
asserts: the load returns (no exception, under a time guard), the problem is an ``ingest_issues`` row naming the
file (and the line where the format has lines) with a reason, and the good study's files are untouched.
A few cases are benign by design (UTF-8 BOM, CRLF line ends, Latin-1 text): they must load the same values as the
clean seed, which is asserted instead (with the warning a Latin-1 file gets).
"""

from __future__ import annotations

import gzip
import os
import re
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from schemas.tables import INGEST_TABLES
from tests.conftest import EXAMPLES, TEST_DATA
from tests.transforms.ingest.test_parse_proteomics import FRAGPIPE_HEADER, _fragpipe_row
from transforms.ingest.genes import GeneReference
from transforms.ingest.study import read_study
from warehouse.lake import Lake
from warehouse.load import StudyLoad, load_study

TIME_GUARD_S = 60.0
"""A case that has not returned by then hangs (a FIFO read, a YAML bomb expanded): the test fails."""

LONG_LINE_BYTES = 10 * 1024 * 1024
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


# -- seeds: one small clean study per format -------------------------------------------------------------------
def _head(path: Path, lines: int, *, keep: Callable[[str], bool] = lambda _: False) -> str:
    """The first ``lines`` lines of a (gzip or plain) real file, plus every earlier line ``keep`` accepts."""
    opener = gzip.open if path.suffix == ".gz" else open
    out, taken = [], 0
    with opener(path, "rt") as fh:
        for line in fh:
            if keep(line):
                out.append(line)
                continue
            out.append(line)
            taken += 1
            if taken >= lines:
                break
    return "".join(out)


@dataclass(frozen=True)
class Seed:
    """A clean study of one format: its manifest (``{sid}`` is the study id), files, and the file cases damage.

    ``table`` / ``value``: the table and value column the format feeds (benign cases compare them with the clean
    load). ``header``: the 1-based line of the header; ``path_key``: the manifest key naming the target file, in
    ``holder``.
    """

    manifest: str
    files: dict[str, str | bytes]
    target: str
    table: str
    value: str
    header: int = 1
    path_key: str = "path"
    holder: str = "study.yaml"
    """The file whose ``path_key`` names the target (a cBioPortal data file's meta file)."""


_MATRIX = "gene\tS1\tS2\tS3\nTP53\t10\t20\t30\nMYC\t5\t6\t7\nEGFR\t1\t2\t3\n"
_SAMPLES = "sample_id\tsubject_id\tgroup\nS1\tP1\ta\nS2\tP2\tb\nS3\tP3\tb\n"
_MATRIX4 = "gene\tS1\tS2\tS3\tS4\nTP53\t10\t20\t30\t25\nMYC\t5\t6\t7\t9\nEGFR\t1\t2\t3\t4\n"
_SAMPLES4 = "sample_id\tsubject_id\tgroup\nS1\tP1\ta\nS2\tP2\ta\nS3\tP3\tb\nS4\tP4\tb\n"
"""The contrasts seed: two samples in each compared level."""
_RNA = "  - {{name: rna, kind: rna_counts, format: {fmt}, path: '{path}'{opts}}}\n"


def _manifest(assay: str = "", extra: str = "") -> str:
    return "study_id: {sid}\nname: corpus case\n" + extra + ("assays:\n" + assay if assay else "")


def _rna(fmt: str, path: str, opts: str = "") -> str:
    return _manifest(_RNA.format(fmt=fmt, path=path, opts=opts))


CBIO = TEST_DATA / "cbioportal_study_es_0"
CBIO_SAMPLES = ("TCGA-A1-A0SB-01", "TCGA-A1-A0SD-01", "TCGA-A1-A0SE-01", "TCGA-A2-A04P-01", "TCGA-A2-A0D2-01",
                "TCGA-C8-A12T-01")
"""The real cBioPortal samples the cBioPortal seeds' data files name (their clinical rows are cut from the study)."""


GISTIC2 = TEST_DATA / "copy_number_gistic2"


def _lesions_seed() -> str:
    """The real LAML all_lesions cut to its first amplification and deletion peaks (and their CN-values rows) and
    three samples, GISTIC's trailing tab kept."""
    lines = (TEST_DATA / "variants_tcga_laml_maftools/all_lesions.conf_99.txt").read_text().splitlines()
    return "".join("\t".join(lines[i].split("\t")[:12]) + "\t\n" for i in (0, 1, 5, 17, 21))


def _pick(path: Path, header: int, ids: tuple[str, ...]) -> str:
    """The first ``header`` lines of a real table, then its rows whose first or second field is one of ``ids``."""
    lines = path.read_text().splitlines(keepends=True)
    return "".join(lines[:header] + [line for line in lines[header:] if set(line.split("\t")[:2]) & set(ids)])


def _columns(text: str, keep: int) -> str:
    """The first ``keep`` tab-separated fields of every line (a wide real matrix cut to a few samples)."""
    return "".join("\t".join(line.rstrip("\n").split("\t")[:keep]) + "\n" for line in text.splitlines())


def _named_columns(text: str, keep: int, names: tuple[str, ...]) -> str:
    """The first ``keep`` fields of every line and the columns whose header is one of ``names``."""
    rows = [line.split("\t") for line in text.splitlines()]
    picked = list(range(keep)) + [i for i, name in enumerate(rows[0]) if i >= keep and name in names]
    return "".join("\t".join(row[i] for i in picked) + "\n" for row in rows)


def _tenx_h5(data: tuple[float, ...] = (5, 3, 2, 7, 1, 4)) -> bytes:
    """A Cell Ranger v3 HDF5 feature-barcode matrix of the ``10x_mtx`` seed's counts (3 genes x 4 cells, CSC by
    cell: cell 1 has genes 1, 2; cell 2 gene 1; cell 3 gene 3; cell 4 genes 2, 3)."""
    import io

    import h5py
    import numpy as np

    buffer = io.BytesIO()
    with h5py.File(buffer, "w") as h5:
        matrix = h5.create_group("matrix")
        matrix["barcodes"] = np.array([b"AAAC-1", b"AAAG-1", b"AAAT-1", b"AACC-1"])
        matrix["data"] = np.array(data, dtype=np.int32 if all(float(v).is_integer() for v in data) else np.float32)
        matrix["indices"] = np.array([0, 1, 0, 2, 1, 2], dtype=np.int64)
        matrix["indptr"] = np.array([0, 2, 3, 4, 6], dtype=np.int64)
        matrix["shape"] = np.array([3, 4], dtype=np.int32)
        features = matrix.create_group("features")
        features["id"] = np.array([b"ENSG00000141510", b"ENSG00000136997", b"ENSG00000146648"])
        features["name"] = np.array([b"TP53", b"MYC", b"EGFR"])
        features["feature_type"] = np.array([b"Gene Expression"] * 3)
        features["genome"] = np.array([b"GRCh38"] * 3)
    return buffer.getvalue()


def _cbio_study(meta: str, data: str, text: str, *, alteration: str, datatype: str, extra: str = ""
                ) -> dict[str, str]:
    """A cBioPortal study folder: meta_study, clinical samples and patients (the real rows of CBIO_SAMPLES), and one
    profile, ``meta`` describing the data file ``data`` (``text``) with ``extra`` meta lines."""
    clinical = {name: ("cancer_study_identifier: {sid}\ngenetic_alteration_type: CLINICAL\n"
                       f"datatype: {kind}_ATTRIBUTES\ndata_filename: data_clinical_{name}.txt\n")
                for name, kind in (("samples", "SAMPLE"), ("patients", "PATIENT"))}
    patients = tuple(s.removesuffix("-01") for s in CBIO_SAMPLES)
    return {"meta_study.txt": "type_of_cancer: brca\ncancer_study_identifier: {sid}\nname: corpus\n"
                              "description: corpus\nreference_genome: hg19\n",
            "meta_clinical_samples.txt": clinical["samples"],
            "data_clinical_samples.txt": _pick(CBIO / "data_clinical_samples.txt", 5, CBIO_SAMPLES),
            "meta_clinical_patients.txt": clinical["patients"],
            "data_clinical_patients.txt": _pick(CBIO / "data_clinical_patients.txt", 5, patients),
            meta: (f"cancer_study_identifier: {{sid}}\ngenetic_alteration_type: {alteration}\n"
                   f"datatype: {datatype}\n{extra}data_filename: {data}\n"),
            data: text}


def _seeds() -> dict[str, Seed]:
    salmon = _head(TEST_DATA / "rnaseq_airway/salmon/SRR1039508/quant.sf.gz", 4)
    rsem = _head(TEST_DATA / "rnaseq_geuvadis_rsem/ERR188021.genes.results.gz", 4)
    maf = _head(TEST_DATA / "variants_tcga_laml_maftools/tcga_laml.maf.gz", 4)
    vcf = _head(TEST_DATA / "variants_annotated_vcf/cyvcf2_test-haploidX_VEP81_CSQ_3samples.vcf", 3,
                keep=lambda line: line.startswith("#"))
    seg = _head(TEST_DATA / "variants_tcga_laml_maftools/LAML_CBS_segments.tsv.gz", 4)
    featurecounts = _head(TEST_DATA / "rnaseq_airway/featurecounts/airway_subset_featureCounts.txt", 4,
                          keep=lambda line: line.startswith("#"))
    maxquant = _head(TEST_DATA / "proteomics_maxquant_lfqanalyst/proteinGroups.txt", 4)
    diann = _head(TEST_DATA / "proteomics_diann_pg_matrix/DIA-NN_example_domlfq_report.pg_matrix.tsv", 4)
    gmt = "CORPUS_SET\tna\tTP53\tMYC\tEGFR\n"
    signature = "signatures:\n  - name: CORPUS_SIG\n    up: [TP53, MYC]\n    down: [EGFR]\n"
    cbio_meta = ("cancer_study_identifier: {sid}\ngenetic_alteration_type: MRNA_EXPRESSION\ndatatype: CONTINUOUS\n"
                 "stable_id: mrna\nprofile_name: mRNA\nprofile_description: mRNA\n"
                 "show_profile_in_analysis_tab: false\ndata_filename: data_expression.txt\n")
    cbio = {"meta_study.txt": "type_of_cancer: brca\ncancer_study_identifier: {sid}\nname: corpus\n"
                              "description: corpus\nreference_genome: hg19\n",
            "meta_clinical_samples.txt": "cancer_study_identifier: {sid}\ngenetic_alteration_type: CLINICAL\n"
                                         "datatype: SAMPLE_ATTRIBUTES\ndata_filename: data_clinical_samples.txt\n",
            "data_clinical_samples.txt": "#Patient\t#Sample\n#p\t#s\n#STRING\t#STRING\n#1\t#1\nPATIENT_ID\tSAMPLE_ID\n"
                                         "P1\tS1\nP2\tS2\nP3\tS3\n",
            "meta_expression.txt": cbio_meta,
            "data_expression.txt": "Hugo_Symbol\tEntrez_Gene_Id\tS1\tS2\tS3\nTP53\t7157\t1.5\t-0.2\t0.3\n"
                                   "MYC\t4609\t0.1\t2.2\t-1\nEGFR\t1956\t0.5\t0.5\t0.5\n"}
    samples_manifest = _manifest(_RNA.format(fmt="matrix", path="counts.tsv", opts=", gene_id_type: symbol"),
                                 "samples: samples.tsv\n")
    contrasts = samples_manifest + ("contrasts:\n  - {name: b_vs_a, factor: group, test: b, reference: a}\n")
    star = ("N_unmapped\t3\t3\t3\nN_multimapping\t2\t2\t2\nN_noFeature\t9\t40\t2\nN_ambiguous\t1\t0\t0\n"
            "ENSG00000141510\t12\t1\t11\nENSG00000136997\t5\t0\t5\nENSG00000146648\t7\t2\t5\n")
    fragpipe = "\n".join("\t".join(row) for row in (
        FRAGPIPE_HEADER,
        _fragpipe_row("sp|P04637|P53_HUMAN", "P04637", "P53_HUMAN", "TP53", ("1500.5", "1400"), ("900", "800")),
        _fragpipe_row("sp|P01106|MYC_HUMAN", "P01106", "MYC_HUMAN", "MYC", ("200", "190"), ("300", "310")),
        _fragpipe_row("sp|P00533|EGFR_HUMAN", "P00533", "EGFR_HUMAN", "EGFR", ("50", "40"), ("60", "70")))) + "\n"
    sc_samples = "sample_id\tgroup\nS1\ta\nS2\tb\n"
    tenx = {"matrix/matrix.mtx": "%%MatrixMarket matrix coordinate integer general\n%metadata_json: {}\n3 4 6\n"
                                 "1 1 5\n2 1 3\n1 2 2\n3 3 7\n2 4 1\n3 4 4\n",
            "matrix/features.tsv": "ENSG00000141510\tTP53\tGene Expression\nENSG00000136997\tMYC\tGene Expression\n"
                                   "ENSG00000146648\tEGFR\tGene Expression\n",
            "matrix/barcodes.tsv": "AAAC-1\nAAAG-1\nAAAT-1\nAACC-1\n",
            "cells.tsv": "barcode\tsample\tcell_type\nAAAC-1\tS1\tB\nAAAG-1\tS1\tT\nAAAT-1\tS2\tB\nAACC-1\tS2\tT\n",
            "samples.tsv": sc_samples}
    tenx_manifest = _manifest("  - {name: sc, kind: sc_rna_counts, format: 10x_mtx, path: matrix, "
                              "gene_id_type: ensembl, sample_column: sample, cell_type_column: cell_type, "
                              "cell_annotations: cells.tsv}\n", "samples: samples.tsv\n")
    h5ad_manifest = _manifest("  - {name: sc, kind: sc_rna_counts, format: h5ad, path: cells.h5ad, "
                              "gene_id_type: symbol, sample_column: sample, cell_type_column: cell_type, "
                              "layer: counts}\n", "samples: samples.tsv\n")
    h5ad = {"cells.h5ad": (EXAMPLES / "pbmc_chr21" / "cells.h5ad").read_bytes(),
            "samples.tsv": (EXAMPLES / "pbmc_chr21" / "samples.tsv").read_text()}
    cn = "Hugo_Symbol\tS1\tS2\tS3\nTP53\t0\t1\t-1\nMYC\t2\t0\t0\nEGFR\t-2\t1\t0\n"
    log2 = "Hugo_Symbol\tS1\tS2\tS3\nTP53\t0.1\t0.8\t-1.2\nMYC\t1.9\t0\t0.05\nEGFR\t-2.1\t0.7\t0\n"
    status = "gene\tS1\tS2\tS3\nTP53\t1\t0\t1\nMYC\t0\t0\tNA\nEGFR\t1\t1\t0\n"
    mapped = _manifest(_RNA.format(fmt="matrix", path="counts.tsv", opts=", gene_id_type: symbol"),
                       "samples: samples.tsv\nsample_map: sample_map.tsv\n")
    with_subjects = _manifest(_RNA.format(fmt="matrix", path="counts.tsv", opts=", gene_id_type: symbol"),
                              "subjects: subjects.tsv\nsamples: samples.tsv\n")
    rppa = _head(CBIO / "data_rppa.txt", 4)
    ms_proteins = _pick(CBIO / "data_protein_quantification.txt", 1, ("BRAF|BRAF_pS365", "BRAF|BRAF", "TP53|TP53"))
    rppa_profile = {"alteration": "PROTEIN_LEVEL", "datatype": "LOG2-VALUE", "extra": "stable_id: rppa\n"}
    cbio_rppa = _cbio_study("meta_rppa.txt", "data_rppa.txt", rppa, **rppa_profile)
    maf_profile = {"alteration": "MUTATION_EXTENDED", "datatype": "MAF", "extra": "stable_id: mutations\n"}
    cbio_maf = _head(CBIO / "data_mutations_extended.maf", 4, keep=lambda line: line.startswith("#"))
    panels = {"meta_gene_panel_matrix.txt": "cancer_study_identifier: {sid}\ngenetic_alteration_type: "
                                            "GENE_PANEL_MATRIX\ndatatype: GENE_PANEL_MATRIX\n"
                                            "data_filename: data_gene_panel_matrix.txt\n",
              "data_gene_panel_matrix.txt": _columns(_pick(CBIO / "data_gene_panel_matrix.txt", 1, CBIO_SAMPLES), 2),
              "data_gene_panel_testpanel1.txt": (CBIO / "data_gene_panel_testpanel1.txt").read_text()}
    wide_cna = _columns(_head(CBIO / "extras/legacy_wide_cna_discrete/data_cna_discrete.txt", 4), 5)

    def profile(target: str, meta: str, text: str, table: str, value: str, *, header: int = 1,
                **kinds: str) -> Seed:
        return Seed("", _cbio_study(meta, target, text, **kinds), target, table, value, header=header,
                    path_key="data_filename", holder=meta)

    def clinical(kind: str, table: str, value: str) -> Seed:
        return Seed("", cbio_rppa, f"data_clinical_{kind}.txt", table, value, header=5, path_key="data_filename",
                    holder=f"meta_clinical_{kind}.txt")

    return {
        "star": Seed(_rna("star", "star/*.ReadsPerGene.out.tab", ", gene_id_type: ensembl, strandedness: reverse"),
                     {"star/S1.ReadsPerGene.out.tab": star, "star/S2.ReadsPerGene.out.tab": star},
                     "star/S1.ReadsPerGene.out.tab", "rna_counts", "count"),
        "fragpipe": Seed(_manifest("  - {name: fp, kind: protein_abundance, format: fragpipe, "
                                   "path: combined_protein.tsv}\n"), {"combined_protein.tsv": fragpipe},
                         "combined_protein.tsv", "protein_abundance", "abundance"),
        "gistic": Seed(_manifest("  - {name: cn, kind: copy_number, format: gistic, path: cna.tsv, "
                                 "gene_id_type: symbol}\n"), {"cna.tsv": cn}, "cna.tsv", "copy_number", "call"),
        "cn_log2": Seed(_manifest("  - {name: cn, kind: copy_number, format: log2, path: log2.tsv, "
                                  "gene_id_type: symbol}\n"), {"log2.tsv": log2}, "log2.tsv", "copy_number",
                        "log2_ratio"),
        "mutation_status": Seed(_manifest("  - {name: mut, kind: mutation_status, format: matrix, path: status.tsv, "
                                          "gene_id_type: symbol}\n"), {"status.tsv": status}, "status.tsv",
                                "gene_mutation_status", "mutated"),
        "sample_map": Seed(mapped, {"counts.tsv": _MATRIX.replace("S1\tS2\tS3", "C1\tC2\tC3"),
                                    "samples.tsv": _SAMPLES,
                                    "sample_map.tsv": "assay\tcolumn\tsample_id\nrna\tC1\tS1\nrna\tC2\tS2\n"
                                                      "rna\tC3\tS3\n"},
                           "sample_map.tsv", "rna_counts", "count", path_key="sample_map"),
        "subjects": Seed(with_subjects, {"counts.tsv": _MATRIX, "samples.tsv": _SAMPLES,
                                         "subjects.tsv": "subject_id\tsex\nP1\tF\nP2\tM\nP3\tF\n"},
                         "subjects.tsv", "subjects", "subject_id", path_key="subjects"),
        "10x_mtx": Seed(tenx_manifest, tenx, "matrix/matrix.mtx", "sc_pseudobulk", "count", header=3),
        "10x_cells": Seed(tenx_manifest, tenx, "cells.tsv", "sc_pseudobulk", "count", path_key="cell_annotations"),
        "h5ad": Seed(h5ad_manifest, h5ad, "cells.h5ad", "sc_pseudobulk", "count"),
        "matrix_tsv": Seed(_rna("matrix", "counts.tsv", ", gene_id_type: symbol"), {"counts.tsv": _MATRIX},
                           "counts.tsv", "rna_counts", "count"),
        "matrix_csv": Seed(_rna("matrix", "counts.csv", ", gene_id_type: symbol"),
                           {"counts.csv": _MATRIX.replace("\t", ",")}, "counts.csv", "rna_counts", "count"),
        "featurecounts": Seed(_rna("featurecounts", "fc.txt", ", gene_id_type: ensembl"), {"fc.txt": featurecounts},
                              "fc.txt", "rna_counts", "count", header=2),
        "salmon": Seed(_rna("salmon", "*/quant.sf"), {"S1/quant.sf": salmon, "S2/quant.sf": salmon},
                       "S1/quant.sf", "rna_counts", "count"),
        "rsem": Seed(_rna("rsem", "*.genes.results"), {"S1.genes.results": rsem, "S2.genes.results": rsem},
                     "S1.genes.results", "rna_counts", "count"),
        "samples": Seed(samples_manifest, {"counts.tsv": _MATRIX, "samples.tsv": _SAMPLES}, "samples.tsv",
                        "samples", "sample_id", path_key="samples"),
        "study_yaml": Seed(_rna("matrix", "counts.tsv", ", gene_id_type: symbol"), {"counts.tsv": _MATRIX},
                           "study.yaml", "rna_counts", "count"),
        "contrasts": Seed(contrasts, {"counts.tsv": _MATRIX4, "samples.tsv": _SAMPLES4}, "study.yaml", "rna_counts",
                          "count"),
        "maf": Seed(_manifest("  - {name: mut, kind: variants, format: maf, path: mut.maf}\n",
                              "reference_genome: GRCh37\n"), {"mut.maf": maf}, "mut.maf", "variants", "position"),
        "vcf": Seed(_manifest("  - {name: calls, kind: variants, format: vcf, path: calls.vcf}\n",
                              "reference_genome: GRCh37\n"), {"calls.vcf": vcf}, "calls.vcf", "variants",
                    "position", header=vcf.count("\n") - 3),
        "vcf_gz": Seed(_manifest("  - {name: calls, kind: variants, format: vcf, path: calls.vcf.gz}\n",
                                 "reference_genome: GRCh37\n"), {"calls.vcf.gz": vcf}, "calls.vcf.gz",
                       "variants", "position", header=vcf.count("\n") - 3),
        "seg": Seed(_manifest("  - {name: cn, kind: copy_number, format: seg, path: cn.seg}\n",
                              "reference_genome: GRCh38\n"), {"cn.seg": seg}, "cn.seg", "cn_segments",
                    "segment_mean"),
        "cbioportal_data": Seed("", cbio, "data_expression.txt", "rna_abundance", "value",
                                path_key="data_filename", holder="meta_expression.txt"),
        "cbioportal_meta": Seed("", cbio, "meta_expression.txt", "rna_abundance", "value",
                                path_key="data_filename", holder="meta_expression.txt"),
        "maxquant": Seed(_manifest("  - {name: prot, kind: protein_abundance, format: maxquant, "
                                   "path: proteinGroups.txt, quantity: lfq}\n"), {"proteinGroups.txt": maxquant},
                         "proteinGroups.txt", "protein_abundance", "abundance"),
        "diann": Seed(_manifest("  - {name: dia, kind: protein_abundance, format: diann, path: pg_matrix.tsv}\n"),
                      {"pg_matrix.tsv": diann}, "pg_matrix.tsv", "protein_abundance", "abundance"),
        "gmt": Seed(_manifest(_RNA.format(fmt="matrix", path="counts.tsv", opts=", gene_id_type: symbol"),
                              "gene_sets: [sets.gmt]\n"), {"counts.tsv": _MATRIX, "sets.gmt": gmt}, "sets.gmt",
                    "rna_counts", "count", path_key="gene_sets"),
        "signature_yaml": Seed(_manifest(_RNA.format(fmt="matrix", path="counts.tsv", opts=", gene_id_type: symbol"),
                                         "gene_sets: [sigs.yaml]\n"), {"counts.tsv": _MATRIX, "sigs.yaml": signature},
                               "sigs.yaml", "rna_counts", "count", path_key="gene_sets"),
        "protein_matrix": Seed(_manifest("  - {name: prot, kind: protein_abundance, format: matrix, "
                                         "path: proteins.tsv}\n"), {"proteins.tsv": ms_proteins}, "proteins.tsv",
                               "protein_abundance", "abundance"),
        "rppa": Seed(_manifest("  - {name: rppa, kind: protein_abundance, format: rppa, platform: rppa, "
                               "path: rppa.tsv}\n"), {"rppa.tsv": rppa}, "rppa.tsv", "protein_abundance",
                     "abundance"),
        "gistic2_genes": Seed(_manifest("  - {name: cn, kind: copy_number, format: gistic, "
                                        "path: all_thresholded.by_genes.txt}\n"),
                              {"all_thresholded.by_genes.txt": _head(GISTIC2 / "all_thresholded.by_genes.txt", 4)},
                              "all_thresholded.by_genes.txt", "copy_number", "call"),
        "gistic2_peaks": Seed(_manifest("  - {name: peaks, kind: copy_number, format: gistic2_peaks, "
                                        "path: all_lesions.conf_99.txt}\n"),
                              {"all_lesions.conf_99.txt": _lesions_seed()}, "all_lesions.conf_99.txt",
                              "copy_number_peak_calls", "call"),
        "gistic_long": Seed(_manifest("  - {name: cn, kind: copy_number, format: gistic_long, path: cna_long.tsv, "
                                      "gene_id_type: symbol}\n"),
                            {"cna_long.tsv": _head(CBIO / "data_cna_discrete.txt", 4)}, "cna_long.tsv", "copy_number",
                            "call"),
        "10x_h5": Seed(_manifest("  - {name: sc, kind: sc_rna_counts, format: 10x_h5, path: matrix.h5, "
                                 "gene_id_type: ensembl, sample_column: sample, cell_type_column: cell_type, "
                                 "cell_annotations: cells.tsv}\n", "samples: samples.tsv\n"),
                       {"matrix.h5": _tenx_h5(), "cells.tsv": tenx["cells.tsv"], "samples.tsv": sc_samples},
                       "matrix.h5", "sc_pseudobulk", "count"),
        "cbioportal_samples": clinical("samples", "samples", "sample_id"),
        "cbioportal_patients": clinical("patients", "subjects", "subject_id"),
        "cbioportal_rppa": profile("data_rppa.txt", "meta_rppa.txt", rppa, "protein_abundance", "abundance",
                                   **rppa_profile),
        "cbioportal_maf": profile("data_mutations_extended.maf", "meta_mutations_extended.txt", cbio_maf, "variants",
                                  "position", header=2, **maf_profile),
        "cbioportal_gene_panel": Seed("", {**_cbio_study("meta_mutations_extended.txt", "data_mutations_extended.maf",
                                                         cbio_maf, **maf_profile), **panels},
                                      "data_gene_panel_matrix.txt", "variants", "position",
                                      path_key="data_filename", holder="meta_gene_panel_matrix.txt"),
        "cbioportal_cna": profile("data_cna_discrete.txt", "meta_cna_discrete.txt",
                                  _head(CBIO / "data_cna_discrete.txt", 4), "copy_number", "call",
                                  alteration="COPY_NUMBER_ALTERATION", datatype="DISCRETE_LONG",
                                  extra="stable_id: gistic\n"),
        "cbioportal_cna_wide": profile("data_cna_discrete.txt", "meta_cna_discrete.txt", wide_cna, "copy_number",
                                       "call", alteration="COPY_NUMBER_ALTERATION", datatype="DISCRETE",
                                       extra="stable_id: gistic\n"),
        "cbioportal_log2": profile("data_cna_log2.txt", "meta_cna_log2.txt",
                                   _columns(_head(CBIO / "data_cna_log2.txt", 4), 5), "copy_number", "log2_ratio",
                                   alteration="COPY_NUMBER_ALTERATION", datatype="LOG2-VALUE",
                                   extra="stable_id: log2CNA\n"),
        "cbioportal_zscore": profile(  # real z-scores (es_0's microarray ones) under TCGA PanCan's file name
            "data_mrna_seq_v2_rsem_zscores_ref_all_samples.txt", "meta_mrna_seq_v2_rsem_zscores_ref_all_samples.txt",
            _named_columns(_head(CBIO / "data_expression_median_Zscores.txt", 4), 2, CBIO_SAMPLES), "rna_abundance",
            "value", alteration="MRNA_EXPRESSION", datatype="Z-SCORE",
            extra="stable_id: rna_seq_v2_mrna_median_all_sample_ref_normal_Zscores\n"),
        "cbioportal_seg": profile("data_cna_hg19.seg", "meta_cna_hg19_seg.txt", _head(CBIO / "data_cna_hg19.seg", 4),
                                  "cn_segments", "segment_mean", alteration="COPY_NUMBER_ALTERATION", datatype="SEG",
                                  extra="reference_genome_id: hg19\n"),
    }


SEEDS = _seeds()

VALUE_CELL = {"matrix_tsv": (1, 1), "matrix_csv": (1, 1), "featurecounts": (2, 6), "salmon": (1, 4), "rsem": (1, 4),
              "star": (4, 3), "10x_mtx": (3, 2)}
"""(line index, field index), 0-based, of the count cell the value cases overwrite."""


# -- writing and damaging a case's study folder ----------------------------------------------------------------
def _write(folder: Path, seed: Seed, sid: str) -> None:
    folder.mkdir(parents=True)
    if seed.manifest:
        (folder / "study.yaml").write_text(seed.manifest.replace("{sid}", sid))
    for name, text in seed.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = text if isinstance(text, bytes) else text.replace("{sid}", sid).encode()
        path.write_bytes(gzip.compress(data) if name.endswith(".gz") else data)


def _edit(path: Path, change: Callable[[bytes], bytes]) -> None:
    raw = path.read_bytes()
    compressed = raw[:2] == b"\x1f\x8b"
    data = change(gzip.decompress(raw) if compressed else raw)
    path.write_bytes(gzip.compress(data) if compressed else data)


def _lines_edit(change: Callable[[list[bytes]], list[bytes]]) -> Callable[[bytes], bytes]:
    return lambda data: b"".join(change(data.splitlines(keepends=True)))


def _set_field(lines: list[bytes], line: int, column: int, value: bytes, sep: bytes) -> list[bytes]:
    fields = lines[line].rstrip(b"\n").split(sep)
    fields[column] = value
    return [*lines[:line], sep.join(fields) + b"\n", *lines[line + 1:]]


def _sep(seed: Seed) -> bytes:
    return b"," if seed.target.endswith(".csv") else b" " if seed.target.endswith(".mtx") else b"\t"


CALL_CELL = {"gistic2_genes": 3, "gistic2_peaks": 9}
"""Field index (0-based) of the first sample's call in the GISTIC seeds, which ``non_numeric_call`` overwrites."""

DUPLICATE_KEYS = {"study_yaml": "name: the same key again\n",
                  "contrasts": "contrasts:\n  - {name: b_vs_a_again, factor: group, test: b, reference: a}\n",
                  "signature_yaml": "signatures:\n  - name: AGAIN\n    up: [TP53, MYC]\n"}
"""``duplicate_key``: a key the seed's YAML already has, appended (a second contrasts block dropped the first's
contrasts without a word); the error must be at the appended line."""

BILLION_LAUGHS = ("a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                  + "".join(f"{c}: &{c} [{', '.join(['*' + p] * 9)}]\n"
                            for p, c in zip("abcdefgh", "bcdefghi", strict=True)))


def _damage(case: str, seed: Seed, folder: Path, outside: Path) -> None:
    target = folder / seed.target
    name = seed_name(seed)
    header = seed.header - 1
    if case == "bom":
        _edit(target, lambda d: b"\xef\xbb\xbf" + d)
    elif case == "crlf":
        _edit(target, lambda d: d.replace(b"\n", b"\r\n"))
    elif case == "latin1":  # a free-text byte in Latin-1 (e with acute accent) on the last line
        _edit(target, lambda d: d.rstrip(b"\n") + (b"\xe9\n" if not d.rstrip().endswith(b"]") else b" #\xe9\n"))
    elif case in ("missing_dataset", "bad_index", "shape_mismatch"):  # an HDF5 matrix whose parts disagree
        import h5py

        sparse = "matrix" if name == "10x_h5" else "layers/counts"
        with h5py.File(target, "r+") as h5:
            if case == "missing_dataset":
                del h5[f"{sparse}/indptr"]
            elif case == "bad_index":  # a stored value's feature past the last one: scipy would read out of bounds
                h5[f"{sparse}/indices"][0] = 1_000_000
            else:  # the size says 2 features, the file lists 3
                h5[f"{sparse}/shape"][0] = 2
    elif case == "duplicate_feature_ids" and name == "10x_mtx":  # EGFR's line (3) takes TP53's id
        _edit(folder / "matrix/features.tsv", lambda d: d.replace(b"ENSG00000146648", b"ENSG00000141510"))
    elif case in H5AD_CASES:
        _damage_h5ad(case, target, folder)
    elif case in REPEATED_BARCODE_CASES:  # the second cell takes the first one's barcode (AAAC-1)
        if name == "10x_h5":
            import h5py

            with h5py.File(target, "r+") as h5:
                h5["matrix/barcodes"][1] = h5["matrix/barcodes"][0]
        else:
            _edit(folder / "matrix/barcodes.tsv", _lines_edit(lambda lines: [lines[0], lines[0], *lines[2:]]))
        if case == "repeated_barcode_unannotated":  # and the annotations leave AAAC-1 out
            _edit(folder / "cells.tsv", _lines_edit(lambda lines: [line for line in lines
                                                                   if not line.startswith(b"AAAC-1")]))
    elif case == "truncated":  # a binary file cut short (a copy that stopped)
        raw = target.read_bytes()
        target.write_bytes(raw[: len(raw) // 2])
    elif case == "truncated_gzip":
        raw = target.read_bytes()
        data = raw if raw[:2] == b"\x1f\x8b" else gzip.compress(raw * 50)
        target.write_bytes(data[: len(data) // 2])
    elif case == "long_line":
        _edit(target, _lines_edit(lambda lines: [*lines[: header + 2], b"X" * LONG_LINE_BYTES + b"\n",
                                                 *lines[header + 2:]]))
    elif case == "empty":
        target.write_bytes(b"")
    elif case == "non_numeric_call":  # the first sample's cell of the first data row
        column = CALL_CELL[name]
        _edit(target, _lines_edit(lambda lines: _set_field(lines, header + 1, column, b"amp", _sep(seed))))
    elif case == "cut_row":  # a copy that stopped inside the last row (two fields short, no line end)
        _edit(target, lambda d: b"\t".join(d.rstrip(b"\t\n").split(b"\t")[:-2]))
    elif case == "header_only":
        _edit(target, _lines_edit(lambda lines: lines[: header + 1]))
    elif case == "duplicate_header":  # the last column's name repeats the one before it
        def dup(lines: list[bytes]) -> list[bytes]:
            names = lines[header].rstrip(b"\r\n").split(_sep(seed))
            return _set_field(lines, header, len(names) - 1, names[-2], _sep(seed))
        _edit(target, _lines_edit(dup))
    elif case == "empty_column_name":  # a header field without a name (the first sample's, for a VCF)
        column = 9 if name.startswith("vcf") else 1 if name in ("subjects", "cbioportal_gene_panel") else 2
        _edit(target, _lines_edit(lambda lines: _set_field(lines, header, column, b"", _sep(seed))))
    elif case == "directory":  # a folder where the file should be
        target.unlink()
        target.mkdir()
    elif case == "case_duplicate_sample":  # s1 beside S1: legal (ids are case-sensitive), but likely a typo
        _edit(target, lambda d: d + b"s1\tP9\tb\n")
    elif case == "duplicate_sample":
        if seed.target == "samples.tsv":
            _edit(target, lambda d: d + b"S1\tP9\tb\n")
        elif seed.target.startswith("data_clinical_"):  # the last row again: its patient (and sample) id repeats
            _edit(target, lambda d: d + d.splitlines(keepends=True)[-1])
        elif seed.target == "subjects.tsv":
            _edit(target, lambda d: d + b"P1\tM\n")
        else:  # a label that is the first sample's once trimmed
            _edit(target, _lines_edit(lambda lines: _set_field(lines, header, 2, b"S1 ", _sep(seed))))
    elif case in ("nan", "inf", "negative", "fractional") and name == "10x_h5":  # the first cell's second count
        target.write_bytes(_tenx_h5((5, {"nan": float("nan"), "inf": float("inf"), "negative": -5,
                                         "fractional": 2.5}[case], 2, 7, 1, 4)))
    elif case in ("nan", "inf", "negative", "fractional"):
        value = {"nan": b"NaN", "inf": b"Inf", "negative": b"-5", "fractional": b"2.5"}[case]
        line, column = VALUE_CELL[name]
        _edit(target, _lines_edit(lambda lines: _set_field(lines, line, column, value, _sep(seed))))
    elif case == "symlink_out":
        moved = outside / target.name
        target.rename(moved)
        target.symlink_to(moved)
    elif case == "dotdot_path":
        moved = outside / target.name
        target.rename(moved)
        holder = folder / seed.holder
        text = holder.read_text()
        pattern = {"path": r"path: '?[^,}']+'?", "gene_sets": r"gene_sets: \[[^]]+\]",
                   "cell_annotations": r"cell_annotations: [^,}]+"}.get(seed.path_key, rf"{seed.path_key}: \S+")
        new = {"path": f"path: '../{outside.name}/{target.name}'",
               "gene_sets": f"gene_sets: [../{outside.name}/{target.name}]"}.get(
                   seed.path_key, f"{seed.path_key}: ../{outside.name}/{target.name}")
        holder.write_text(re.sub(pattern, new, text, count=1))
    elif case == "unreadable":
        if IS_ROOT:  # root reads a chmod 000 file: a FIFO nobody writes to is unreadable (and would hang a read)
            target.unlink()
            os.mkfifo(target)
        else:
            target.chmod(0)
    elif case == "unknown_factor":
        target.write_text(target.read_text().replace("factor: group", "factor: grup"))
    elif case == "unknown_level":
        target.write_text(target.read_text().replace("test: b,", "test: c,"))
    elif case == "same_level":  # b_vs_b: nothing to compare
        target.write_text(target.read_text().replace("reference: a}", "reference: b}"))
    elif case == "factor_as_covariate":
        target.write_text(target.read_text().replace("reference: a}", "reference: a, covariates: [group]}"))
    elif case == "duplicate_name":
        text = target.read_text()
        target.write_text(text + text[text.index("  - {name: b_vs_a"):])
    elif case == "duplicate_key":  # a top-level key given again at the end (PyYAML keeps the last, silently)
        target.write_text(target.read_text() + DUPLICATE_KEYS[name])
    elif case == "yaml_bomb":
        if seed.target == "study.yaml":
            target.write_text(target.read_text() + BILLION_LAUGHS.replace("a:", "bomb_a:", 1))
        else:
            target.write_text(BILLION_LAUGHS + target.read_text())
    else:
        assert case == "clean", case


H5AD_CASES = {  # case: the HDF5 path (or words) the error message must name
    "no_obs": "obs: missing", "no_sample_column": "obs/sample", "no_cell_type_column": "obs/cell_type",
    "no_obs_index": "obs/_index", "duplicate_cell_ids": "obs/_index", "no_var": "var: missing",
    "no_var_index": "var/_index", "no_layer": "layers/counts", "no_x": "'X'", "fractional_layer": "layers/counts",
    "nan_data": "layers/counts", "negative_data": "layers/counts", "indptr_decreasing": "layers/counts",
    "indptr_short": "layers/counts", "category_code_out_of_range": "obs/sample", "obs_wrong_length": "obs/sample",
    "string_data": "layers/counts", "dense_wrong_shape": "layers/counts", "dense_counts": "",
    "shape_more_cells": "layers/counts", "shape_fewer_features": "layers/counts", "duplicate_feature_ids": "var/_index",
    "complex_data": "layers/counts"}
"""h5ad structural damage (anndata's on-disk layout, edited with h5py); ``dense_counts`` is a valid variant, and
``duplicate_feature_ids`` loads with a warning (the first of the repeated columns kept, as a bulk matrix keeps the
first of repeated rows)."""
DUPLICATED_FEATURE = (3, 5)
"""``duplicate_feature_ids`` gives var row 5 the name of row 3 (0-based; both genes have counts in the seed)."""


def _damage_h5ad(case: str, target: Path, folder: Path) -> None:
    import h5py
    import numpy as np

    with h5py.File(target, "r+") as h5:
        counts = h5["layers/counts"]
        if case == "no_obs":
            del h5["obs"]
        elif case == "no_sample_column":  # the group gone, still listed in column-order (a half-written file)
            del h5["obs/sample"]
        elif case == "no_cell_type_column":  # gone and unlisted: a valid AnnData without the manifest's column
            del h5["obs/cell_type"]
            h5["obs"].attrs["column-order"] = np.array(["sample"], dtype=object)
        elif case == "no_obs_index":
            del h5["obs/_index"]
        elif case == "duplicate_cell_ids":
            index = h5["obs/_index"]
            index[1] = index[0]
        elif case == "duplicate_feature_ids":
            index = h5["var/_index"]
            index[DUPLICATED_FEATURE[1]] = index[DUPLICATED_FEATURE[0]]
        elif case in ("shape_more_cells", "shape_fewer_features"):  # the sparse matrix's size attribute is off by
            n_cells, n_features = (int(n) for n in counts.attrs["shape"])  # one; obs, var and indptr agree
            counts.attrs["shape"] = np.array([n_cells + 1, n_features] if case == "shape_more_cells"
                                             else [n_cells, n_features - 1])
        elif case == "no_var":
            del h5["var"]
        elif case == "no_var_index":
            del h5["var/_index"]
        elif case == "no_layer":
            del h5["layers/counts"]
        elif case == "no_x":  # no X (legal in anndata >= 0.8) and no `layer:` in the manifest: nothing to read
            del h5["X"]
            manifest = folder / "study.yaml"
            manifest.write_text(manifest.read_text().replace(", layer: counts", ""))
        elif case == "fractional_layer":  # a float layer of normalised values
            counts["data"][...] = counts["data"][...] * np.float32(0.37)
        elif case in ("nan_data", "negative_data"):
            counts["data"][0] = np.nan if case == "nan_data" else -3
        elif case == "indptr_decreasing":  # still from 0 to nnz, but the tenth cell's start moves back
            counts["indptr"][10] = counts["indptr"][9] - 1
        elif case == "indptr_short":  # ends one value before the end of data
            counts["indptr"][-1] = counts["indptr"][-1] - 1
        elif case == "category_code_out_of_range":  # 6 categories, a code of 100
            h5["obs/sample/codes"][0] = 100
        elif case == "obs_wrong_length":  # one code fewer than cells
            codes = h5["obs/sample/codes"]
            short, attrs = codes[:-1], dict(codes.attrs)
            del h5["obs/sample/codes"]
            h5["obs/sample/codes"] = short
            h5["obs/sample/codes"].attrs.update(attrs)
        elif case == "complex_data":  # numbers, but not counts (h5py stores complex as a compound type)
            values = counts["data"][...].astype(np.complex64)
            del counts["data"]
            counts["data"] = values
        elif case == "string_data":
            strings = np.array([str(v).encode() for v in counts["data"][...]])
            del counts["data"]
            counts["data"] = strings
        elif case in ("dense_counts", "dense_wrong_shape"):  # valid: the layer as a dense cells x features array
            dense = _h5ad_dense_counts(h5)[: None if case == "dense_counts" else -1]  # (or one cell short)
            del h5["layers/counts"]
            h5["layers/counts"] = dense
            h5["layers/counts"].attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
        else:
            raise AssertionError(case)


def _h5ad_dense_counts(h5: object) -> object:
    """The seed's CSR counts layer as a dense cells x features numpy array, by hand from data / indices / indptr."""
    import numpy as np

    group = h5["layers/counts"]  # type: ignore[index]
    n_cells, n_features = (int(n) for n in group.attrs["shape"])
    data, indices, indptr = group["data"][...], group["indices"][...], group["indptr"][...]
    dense = np.zeros((n_cells, n_features), dtype=data.dtype)
    for cell in range(n_cells):
        dense[cell, indices[indptr[cell]:indptr[cell + 1]]] = data[indptr[cell]:indptr[cell + 1]]
    return dense


def seed_name(seed: Seed) -> str:
    return next(name for name, s in SEEDS.items() if s is seed)


# -- the case matrix ---------------------------------------------------------------------------------------------
TEXT_CASES = ("bom", "crlf", "latin1", "truncated_gzip", "long_line", "empty", "header_only", "symlink_out",
              "dotdot_path", "unreadable", "directory")
NO_HEADER = {"study_yaml", "gmt", "signature_yaml", "cbioportal_meta", "star", "10x_mtx"}
TABULAR = {"matrix_tsv", "matrix_csv", "featurecounts", "salmon", "rsem", "samples", "maf", "vcf", "vcf_gz", "seg",
           "cbioportal_data", "maxquant", "diann", "fragpipe", "gistic", "cn_log2", "mutation_status", "sample_map",
           "subjects", "10x_cells", "protein_matrix", "rppa", "gistic_long", "cbioportal_samples",
           "cbioportal_patients", "cbioportal_rppa", "cbioportal_maf", "cbioportal_gene_panel", "cbioportal_cna",
           "cbioportal_cna_wide", "cbioportal_log2", "cbioportal_seg", "cbioportal_zscore", "gistic2_genes",
           "gistic2_peaks"}
BINARY = {"h5ad", "10x_h5"}
SPARSE_COUNTS = {"10x_mtx", "10x_h5"}
REPEATED_BARCODE_CASES = ("repeated_barcode_annotated", "repeated_barcode_unannotated")
"""A 10x matrix listing its first cell's barcode twice; the annotations name that barcode, or do not (a 10x layout
always has a cell_annotations table: the manifest requires one). Either way the cells cannot be told apart."""
"""Single-cell counts: a value that is not a whole count (a log-normalised matrix) is an error, not a warning."""


def _cases() -> list[tuple[str, str]]:
    cases = []
    for name in SEEDS:
        if name == "contrasts":
            cases += [(name, c) for c in ("clean", "unknown_factor", "unknown_level", "duplicate_name",
                                                  "same_level", "factor_as_covariate", "duplicate_key")]
            continue
        cases.append((name, "clean"))
        if name == "vcf_gz":  # the gzip twin of vcf: what the compression changes
            cases += [(name, c) for c in ("bom", "crlf", "truncated_gzip", "long_line")]
            continue
        if name in BINARY:  # HDF5: no lines or encodings; cut short, parts that disagree, the file-system cases
            cases += [(name, c) for c in ("truncated", "empty", "symlink_out", "dotdot_path", "unreadable",
                                          "directory", "missing_dataset", "bad_index")]
            if name == "10x_h5":
                cases.append((name, "shape_mismatch"))
                cases += [(name, c) for c in REPEATED_BARCODE_CASES]
            if name == "h5ad":
                cases += [(name, c) for c in H5AD_CASES]
            if name in SPARSE_COUNTS:
                cases += [(name, c) for c in ("nan", "inf", "negative", "fractional")]
            continue
        cases += [(name, c) for c in TEXT_CASES
                  if not (c == "header_only" and name in NO_HEADER)
                  and not (c == "dotdot_path" and name in ("study_yaml", "cbioportal_meta", "10x_mtx"))]
        if name in TABULAR:
            cases += [(name, "duplicate_header"), (name, "empty_column_name")]
        if name in VALUE_CELL:
            cases += [(name, c) for c in ("nan", "inf", "negative", "fractional")]
        if name in ("matrix_tsv", "matrix_csv", "samples", "subjects", "cbioportal_samples", "cbioportal_patients"):
            cases.append((name, "duplicate_sample"))
        if name == "samples":
            cases.append((name, "case_duplicate_sample"))
        if name in CALL_CELL:
            cases += [(name, "non_numeric_call"), (name, "cut_row")]
        if name in ("study_yaml", "signature_yaml"):
            cases.append((name, "yaml_bomb"))
        if name in DUPLICATE_KEYS:
            cases.append((name, "duplicate_key"))
        if name == "10x_mtx":
            cases += [(name, c) for c in (*REPEATED_BARCODE_CASES, "duplicate_feature_ids")]
    return cases


CASES = _cases()


# -- running a case: in-process, under a time guard, beside a good study -----------------------------------------
@dataclass
class Base:
    """The module's warehouse: a lake holding the good study, its files per table, and the gene reference."""

    root: Path
    lake: Lake
    reference: GeneReference
    good_files: dict[str, list[str]]
    clean: dict[str, pl.DataFrame] = field(default_factory=dict)


def _good_files(lake: Lake) -> dict[str, list[str]]:
    return {t: lake.study_files(t, "airway")[1] for t in INGEST_TABLES}


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory, reference: GeneReference) -> Base:
    root = tmp_path_factory.mktemp("corpus")
    lake = Lake(root / "lake")
    assert load_study(lake, read_study(EXAMPLES / "airway", reference=reference)).ok
    files = _good_files(lake)
    assert files["rna_counts"]
    assert files["samples"]
    return Base(root, lake, reference, files)


def _guarded(call: Callable[[], StudyLoad]) -> StudyLoad:
    """Run ``call`` in a daemon thread; fail when it raises or has not returned within TIME_GUARD_S."""
    box: dict[str, object] = {}

    def run() -> None:
        try:
            box["load"] = call()
        except BaseException as exc:
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(TIME_GUARD_S)
    assert not thread.is_alive(), f"the load did not return within {TIME_GUARD_S:.0f} s (hang)"
    assert "error" not in box, f"the load raised instead of recording an issue: {box['error']!r}"
    return box["load"]  # type: ignore[return-value]


def _load_case(base: Base, name: str, case: str) -> tuple[str, StudyLoad]:
    seed = SEEDS[name]
    sid = f"{name}-{case}"
    case_root = base.root / sid
    folder, outside = case_root / sid, case_root / "outside"
    outside.mkdir(parents=True)
    _write(folder, seed, sid)
    _damage(case, seed, folder, outside)
    load = _guarded(lambda: load_study(base.lake, read_study(folder, reference=base.reference)))
    return sid, load


def _values(base: Base, seed: Seed, sid: str) -> pl.DataFrame:
    frame = base.lake.scan(seed.table, study_id=sid).collect()
    keys = [c for c in ("sample_id", "cell_type", "feature_id", "peak_name", "chromosome", "start", "position",
                        "measure")
            if c in frame.columns]
    return frame.select(*keys, *([seed.value] if seed.value not in keys else [])).sort(keys)


def _clean(base: Base, name: str) -> pl.DataFrame:
    """The values of the format's clean seed (loaded by its ``clean`` case, or here when that did not run)."""
    if name not in base.clean:
        sid = f"{name}-clean"
        if not (base.root / sid).exists():
            _, load = _load_case(base, name, "clean")
            assert load.ok, load.errors.rows(named=True)
        base.clean[name] = _values(base, SEEDS[name], sid)
    return base.clean[name]


BENIGN = {"bom", "crlf"}
LINE_CASES = {"long_line", "duplicate_header", "empty_column_name", "duplicate_sample", "nan", "inf", "negative",
              "non_numeric_call", "cut_row"}
"""Cases whose problem sits on one line of a line-oriented file: the issue must give that line."""


def _expected_file(name: str, case: str) -> str:
    """The file an error of the case must name: the damaged file, or the file that points at it."""
    seed = SEEDS[name]
    if name == "10x_mtx" and case == "symlink_out":  # a link inside the assay's folder: the file is named
        return seed.target
    if case in ("symlink_out", "dotdot_path") and seed.target != "study.yaml":
        return seed.holder
    if name == "10x_mtx" and case in REPEATED_BARCODE_CASES:
        return "matrix/barcodes.tsv"
    if name == "sample_map" and case in ("latin1", "header_only"):  # a label no longer mapped: the assay's header
        return "counts.tsv"
    return seed.target


@pytest.mark.parametrize(("name", "case"), CASES, ids=[f"{n}-{c}" for n, c in CASES])
def test_load_study_corpus_case_is_located_and_leaves_other_studies_intact(base: Base, name: str,
                                                                           case: str) -> None:
    seed = SEEDS[name]
    expected = _clean(base, name) if case in BENIGN else None
    sid, load = _load_case(base, name, case)
    issues = base.lake.scan("ingest_issues", study_id=sid).collect()
    assert issues.filter(pl.col("message").str.contains("Traceback")).is_empty()
    errors = issues.filter(pl.col("severity") == "error")
    if case == "clean":
        assert load.ok
        assert errors.is_empty(), errors.rows(named=True)
        if name == "cbioportal_zscore":  # kept as given, as z-scores: the file's numbers split by hand
            text = seed.files[seed.target]
            assert isinstance(text, str)
            rows = [line.split("\t") for line in text.splitlines()]
            expected_z = sorted((sample, f"{row[0]}|{row[1]}", "zscore", float(value)) for row in rows[1:]
                                for sample, value in zip(rows[0][2:], row[2:], strict=True))
            assert sorted(_values(base, seed, sid).rows()) == expected_z
    elif case in BENIGN:  # a byte-order mark or CRLF line ends are no error: the values are the clean file's
        assert load.ok, errors.rows(named=True)
        assert expected is not None
        assert_frame_equal(_values(base, seed, sid), expected)
    elif name == "contrasts" and case in ("unknown_factor", "unknown_level"):  # a contrast the samples cannot
        # support: the study loads and DE skips that contrast alone; a located invalid_contrast warning says so
        assert load.ok, errors.rows(named=True)
        warned = issues.filter(pl.col("code") == "invalid_contrast")
        assert warned.select("file", "severity").rows() == [("study.yaml", "warning")], issues.rows(named=True)
        assert warned["line"].is_not_null().all()
        assert "differential expression skips this contrast" in warned["message"][0]
    elif case == "latin1" and load.ok:  # Latin-1 in a text field: read as Latin-1, with a located warning
        warned = issues.filter((pl.col("code") == "bad_encoding") & (pl.col("file") == seed.target))
        assert warned.height == 1, issues.rows(named=True)
    elif (name, case) == ("cbioportal_meta", "long_line"):  # cBioPortal reads meta files line by line: a line
        # that is not `key: value` is skipped with a located warning, the study loads (as cBioPortal's importer)
        assert load.ok, errors.rows(named=True)
        skipped = issues.filter(pl.col("code") == "bad_meta_line")
        assert skipped.select("file", "line").rows() == [(seed.target, 3)]
    elif case == "case_duplicate_sample":  # loaded as two samples, with a located warning naming both
        assert load.ok, errors.rows(named=True)
        (warning,) = issues.filter(pl.col("code") == "sample_case").iter_rows(named=True)
        assert (warning["file"], warning["line"], warning["column"]) == ("samples.tsv", 5, "sample_id")
        assert "'s1' and 'S1' (line 2)" in warning["message"]
    elif case == "dense_counts":  # a dense counts layer is valid AnnData: the sums of the sparse seed, by hand
        assert load.ok, errors.rows(named=True)
        assert_frame_equal(_values(base, seed, sid), _h5ad_hand_sums(EXAMPLES / "pbmc_chr21" / "cells.h5ad"),
                           check_dtypes=False)
    elif case == "duplicate_cell_ids":  # legal AnnData (anndata warns): each row is a cell with its own labels
        assert load.ok, errors.rows(named=True)
        (warning,) = issues.filter(pl.col("code") == "duplicate_cell_id").iter_rows(named=True)
        assert warning["file"] == seed.target
        assert H5AD_CASES[case] in warning["message"]
        assert_frame_equal(_values(base, seed, sid), _clean(base, name))
    elif (name, case) == ("10x_mtx", "duplicate_feature_ids"):  # as in h5ad: EGFR's counts (7 + 4) left out
        assert load.ok, errors.rows(named=True)
        (warning,) = issues.filter(pl.col("code") == "duplicate_feature").iter_rows(named=True)
        assert (warning["file"], warning["line"]) == ("matrix/features.tsv", 3)
        assert "'ENSG00000141510' of line 1" in warning["message"]
        assert "(11 counts)" in warning["message"]
        assert sorted(_values(base, seed, sid).rows()) == [  # the seed's counts by hand (see _tenx_h5), TP53, MYC
            ("S1", "B", "ENSG00000136997", 3.0), ("S1", "B", "ENSG00000141510", 5.0),
            ("S1", "T", "ENSG00000136997", 0.0), ("S1", "T", "ENSG00000141510", 2.0),
            ("S2", "B", "ENSG00000136997", 0.0), ("S2", "B", "ENSG00000141510", 0.0),
            ("S2", "T", "ENSG00000136997", 1.0), ("S2", "T", "ENSG00000141510", 0.0)]
    elif case == "duplicate_feature_ids":  # the repeated column is left out with a warning saying what it held
        assert load.ok, errors.rows(named=True)
        clean = _h5ad_hand_sums(EXAMPLES / "pbmc_chr21" / "cells.h5ad")
        names = _h5ad_feature_names(EXAMPLES / "pbmc_chr21" / "cells.h5ad")
        first, repeat = (names[i] for i in DUPLICATED_FEATURE)
        assert_frame_equal(_values(base, seed, sid), clean.filter(pl.col("feature_id") != repeat),
                           check_dtypes=False)
        (warning,) = issues.filter(pl.col("code") == "duplicate_feature").iter_rows(named=True)
        assert (warning["file"], warning["severity"]) == (seed.target, "warning")
        left_out = clean.filter(pl.col("feature_id") == repeat)["count"].sum()
        assert left_out > 0
        for part in (H5AD_CASES[case], repr(first), "row 4 repeats on row 6", f"{left_out:g} counts"):
            assert part in warning["message"], warning["message"]
    elif case == "header_only" and seed.table == "subjects":  # the samples still name their subjects: a warning
        assert load.ok, errors.rows(named=True)
        warned = issues.filter(pl.col("code") == "no_rows")
        assert warned.select("file", "line").rows() == [(seed.target, seed.header)]
    elif case == "fractional" and name not in SPARSE_COUNTS:  # kept as given (Salmon / RSEM estimate fractional
        # counts; a matrix warns)
        assert load.ok, errors.rows(named=True)
        assert 2.5 in _values(base, seed, sid)[seed.value].to_list()
        if name not in ("salmon", "rsem"):
            (warning,) = issues.filter(pl.col("code") == "fractional_count").iter_rows(named=True)
            assert (warning["file"], warning["line"]) == (seed.target, VALUE_CELL[name][0] + 1)
    else:
        assert not load.ok
        located = errors.filter(pl.col("file") == _expected_file(name, case))
        assert located.height, errors.rows(named=True)
        assert located["message"].str.len_chars().min() > 10  # type: ignore[operator]
        if (case in LINE_CASES and name in TABULAR) or name == "contrasts":
            assert located["line"].is_not_null().any(), located.rows(named=True)
        if name == "h5ad" and case in H5AD_CASES:  # the HDF5 path of the damaged part, in the message
            assert located["message"].str.contains(H5AD_CASES[case], literal=True).any(), located.rows(named=True)
        if case in REPEATED_BARCODE_CASES:  # where the repeat is (barcodes.tsv line 2, or the HDF5 dataset), and it
            assert (located["code"] == "duplicate_cell_id").all(), located.rows(named=True)
            assert located["message"].str.contains("'AAAC-1'", literal=True).all(), located.rows(named=True)
            if name == "10x_mtx":
                assert located["line"].to_list() == [2], located.rows(named=True)
            else:
                assert located["message"].str.contains("matrix/barcodes", literal=True).all(), located.rows(named=True)
        if case in ("shape_more_cells", "shape_fewer_features"):  # both sizes said: the attribute's, obs / var's
            n_cells, n_features = 1107, 507  # the seed file's obs and var lengths
            said = (n_cells + 1, n_features) if case == "shape_more_cells" else (n_cells, n_features - 1)
            message = located["message"][0]
            for part in (f"{said[0]} cells x {said[1]} features", f"{n_cells} cells (obs)",
                         f"{n_features} features (var)"):
                assert part in message, message
        if case == "duplicate_key":  # the repeat's line: the seed's lines plus one
            text = seed.files.get(seed.target, seed.manifest)
            assert isinstance(text, str)
            assert located["line"].to_list() == [text.count("\n") + 1], located.rows(named=True)
            assert "given twice" in located["message"][0]
        if case in ("non_numeric_call", "cut_row"):  # the damaged row: the first data row, or the cut last one
            text = seed.files[seed.target]
            assert isinstance(text, str)
            line = seed.header + 1 if case == "non_numeric_call" else text.count("\n")
            assert line in located["line"].to_list(), located.rows(named=True)
        if case == "truncated_gzip" and name in TABULAR:  # the first line the cut stream does not hold whole
            assert located["line"].to_list() == [_whole_lines(base.root / sid / sid / seed.target) + 1]
    assert _good_files(base.lake) == base.good_files  # the good study's files: not one added or removed


FOLDER_DEPTH = 1_500
"""Folders nested in ``deep_tree``: deeper than Python's recursion limit (1,000), within the system's path length."""


def _folder_oddity(case: str, folder: Path) -> None:
    """Something beside the study's files that no manifest names (a user's notes, a tool's leftovers)."""
    if case == "latin1_file_name":  # a name that is not UTF-8: a Latin-1 'é' from an old share or a zip
        (folder / os.fsdecode(b"notes-caf\xe9.txt")).write_text("x")
    elif case == "deep_tree":
        deep = folder
        for _ in range(FOLDER_DEPTH):  # one level at a time: Path.mkdir(parents=True) recurses too
            deep = deep / "d"
            deep.mkdir()
        (deep / "leaf.txt").write_text("x")
    elif case == "fifo_socket_device":  # nothing may open them: a FIFO nobody writes to hangs a read
        import socket
        import tempfile

        os.mkfifo(folder / "pipe")
        with tempfile.TemporaryDirectory() as short, socket.socket(socket.AF_UNIX) as sock:
            sock.bind(str(Path(short, "s")))  # bound where its path fits AF_UNIX's 108 bytes, then moved
            os.replace(Path(short, "s"), folder / "app.sock")
        if IS_ROOT:
            os.mknod(folder / "null", 0o666 | 0o020000, os.makedev(1, 3))
    elif case == "symlink_loops":
        (folder / "self").symlink_to("self")
        (folder / "sub").mkdir()
        (folder / "sub" / "up").symlink_to("..")
    else:
        raise AssertionError(case)


FOLDER_CASES = ("latin1_file_name", "deep_tree", "fifo_socket_device", "symlink_loops")


@pytest.mark.parametrize("case", FOLDER_CASES, ids=[f"folder-{c}" for c in FOLDER_CASES])
def test_corpus_folder_oddity_beside_the_files_loads_the_clean_values(base: Base, case: str) -> None:
    """A file or folder no manifest names is not read, but the study's content hash lists every file: a name
    that is not UTF-8 or a tree deeper than Python's recursion limit made hashing raise, failing the study with
    no ingest_issues row (and the landing sensor with it)."""
    from warehouse.load import load_folder

    seed, sid = SEEDS["matrix_tsv"], f"matrix_tsv-folder-{case}"
    folder = base.root / sid / sid
    _write(folder, seed, sid)
    _folder_oddity(case, folder)
    try:
        load = _guarded(lambda: load_folder(base.lake, folder, reference=base.reference, code_version="corpus"))
        assert load.ok, load.errors.rows(named=True)
        assert base.lake.scan("ingest_issues", study_id=sid).collect().is_empty()
        assert_frame_equal(_values(base, seed, sid), _clean(base, "matrix_tsv"))
        assert _good_files(base.lake) == base.good_files
    finally:
        if case == "deep_tree":  # bottom up: shutil.rmtree (pytest's clean-up) would recurse past the limit
            deep = folder.joinpath(*["d"] * FOLDER_DEPTH)
            (deep / "leaf.txt").unlink()
            while deep != folder:
                deep.rmdir()
                deep = deep.parent


def test_corpus_10x_h5_seed_sums_as_its_matrix_market_twin(base: Base) -> None:
    """The hand-built HDF5 seed holds the 10x_mtx seed's counts: both give the same pseudobulk profiles."""
    assert_frame_equal(_clean(base, "10x_h5"), _clean(base, "10x_mtx"))
    assert _clean(base, "10x_h5")["count"].sum() == 5 + 3 + 2 + 7 + 1 + 4


def _h5ad_hand_sums(path: Path) -> pl.DataFrame:
    """Counts of an h5ad file's CSR ``layers/counts`` summed per (sample, cell type, feature) with h5py and numpy
    only (categorical obs decoded by hand): the reference for the reader's pseudobulk, zeros included."""
    import h5py
    import numpy as np

    with h5py.File(path, "r") as h5:
        def labels(column: str) -> np.ndarray:
            categories = np.array([c.decode() if isinstance(c, bytes) else c for c in h5[f"obs/{column}/categories"]])
            return categories[h5[f"obs/{column}/codes"][...]]
        samples, types = labels("sample"), labels("cell_type")
        features = [f.decode() if isinstance(f, bytes) else f for f in h5["var/_index"][...]]
        group = h5["layers/counts"]
        data, indices, indptr = group["data"][...], group["indices"][...], group["indptr"][...]
    cell_of_value = np.repeat(np.arange(len(samples)), np.diff(indptr))
    keys = sorted(set(zip(samples.tolist(), types.tolist(), strict=True)))
    code = {key: i for i, key in enumerate(keys)}
    cell_group = np.array([code[key] for key in zip(samples.tolist(), types.tolist(), strict=True)])
    sums = np.zeros((len(keys), len(features)))
    np.add.at(sums, (cell_group[cell_of_value], indices), data.astype(np.float64))
    return pl.DataFrame({"sample_id": [k[0] for k in keys for _ in features],
                         "cell_type": [k[1] for k in keys for _ in features],
                         "feature_id": features * len(keys), "count": sums.reshape(-1)}
                        ).sort("sample_id", "cell_type", "feature_id")


def _h5ad_feature_names(path: Path) -> list[str]:
    import h5py

    with h5py.File(path, "r") as h5:
        return [f.decode() if isinstance(f, bytes) else f for f in h5["var/_index"][...]]


def _whole_lines(path: Path) -> int:
    """Complete lines zlib decompresses from a cut gzip file (independent of the reader under test)."""
    data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(path.read_bytes())
    return data.count(b"\n")


VALIDATE_CASES = [("study_yaml", "yaml_bomb"), ("matrix_tsv", "unreadable"), ("vcf_gz", "truncated_gzip"),
                  ("samples", "duplicate_sample"), ("contrasts", "duplicate_name")]


def test_validate_json_corpus_reports_each_case_located(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """``omicsdw validate --format json`` (no warehouse) names the same files as the load, for one landing."""
    import json

    from warehouse.cli import main

    landing, outside = tmp_path / "landing", tmp_path / "outside"
    outside.mkdir()
    for name, case in VALIDATE_CASES:
        folder = landing / f"{name}-{case}"
        _write(folder, SEEDS[name], folder.name)
        _damage(case, SEEDS[name], folder, outside)
    code = _guarded(lambda: main(["validate", str(landing), "--format", "json"]))  # type: ignore[arg-type,return-value]
    assert code == 1
    report = json.loads(capsys.readouterr().out)
    located = {s["study_id"]: {(i["file"], i["line"]) for i in s["issues"] if i["severity"] == "error"}
               for s in report["studies"]}
    assert report["landing_problems"] == []
    assert located["study_yaml-yaml_bomb"] == {("study.yaml", 1)}  # its id falls back to the folder name
    assert {f for f, _ in located["matrix_tsv-unreadable"]} == {"counts.tsv"}
    assert {f for f, _ in located["vcf_gz-truncated_gzip"]} == {"calls.vcf.gz"}
    assert ("samples.tsv", 5) in located["samples-duplicate_sample"]
    assert {f for f, line in located["contrasts-duplicate_name"] if line is not None} == {"study.yaml"}
