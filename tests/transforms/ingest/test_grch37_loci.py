"""GRCh37 / hg19 gene loci (lifted from the shipped GRCh38 ones) and hg19 segments placed on genes with them."""

from __future__ import annotations

import polars as pl
import pytest

from tests.conftest import EXAMPLES
from transforms.ingest.genes import GeneReference
from transforms.ingest.study import read_study


def _locus(reference: GeneReference, build: str, symbol: str) -> tuple[str, int, int]:
    genes = reference.genes_on(build)
    assert genes is not None
    (row,) = genes.filter(pl.col("symbol") == symbol).select("chromosome", "start", "end").rows()
    return row


def test_genes_on_grch37_matches_the_published_hg19_locus(reference: GeneReference) -> None:
    # TP53 (NM_000546) in UCSC hg19: chr17:7,571,720-7,590,868; in hg38: chr17:7,668,402-7,687,550. The shipped
    # GRCh38 start is UCSC's 0-based txStart (7,668,401), and the lift keeps that convention.
    chromosome, start, end = _locus(reference, "GRCh37", "TP53")
    assert chromosome == "17"
    assert start == pytest.approx(7_571_720, abs=1)
    assert end == 7_590_868
    assert _locus(reference, "GRCh38", "TP53")[1:] == (7_668_401, 7_687_550)
    assert reference.genes_on("NCBI36") is None


def test_read_study_places_laml_hg19_segments_on_genes(reference: GeneReference) -> None:
    ingest = read_study(EXAMPLES / "laml", reference=reference)
    codes = {i.code for i in ingest.issues.issues}
    assert "segment_build_mismatch" not in codes
    copy_number = pl.concat(ingest.tables["copy_number"]).collect()
    tp53 = copy_number.filter(pl.col("feature_id") == "TP53").select("sample_id", "log2_ratio")
    values = dict(tp53.rows())
    # zcat LAML_CBS_segments.tsv.gz | awk '$2==17 && $3<=7571720 && $4>=7590868' (one segment holds hg19 TP53):
    #   TCGA-AB-2820 17 6967689 8412814 600 -0.796276   (a deletion over the whole gene)
    #   TCGA-AB-2868 17 987221  7627465 3129 -0.575403  (ends 41 kb before TP53's hg38 locus: only hg19 places it)
    assert values["TCGA-AB-2820"] == pytest.approx(-0.796276)
    assert values["TCGA-AB-2868"] == pytest.approx(-0.575403)
    # 191 segments of the file touch hg19 TP53 (awk '$2==17 && $3<=7590868 && $4>=7571720' | wc -l), one per
    # sample: 191 samples get a TP53 value
    assert tp53.height == 191
