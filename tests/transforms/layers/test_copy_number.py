import polars as pl
import pytest

from transforms.ingest.parse.gistic2 import GENE_SCHEMA, PEAK_SCHEMA
from transforms.ingest.parse.seg import parse_seg
from transforms.issues import IssueLog
from transforms.layers.copy_number import (
    build_mismatch_message,
    canonical_build,
    match_peak_genes,
    segments_to_genes,
)

# One gene of 1,000 bp (1-based inclusive 1001..2000) and one on another chromosome that no segment reaches.
GENES = pl.DataFrame({"gene_id": [101, 202], "symbol": ["GENEA", "GENEB"], "chromosome": ["1", "2"],
                      "start": [1001, 5001], "end": [2000, 6000]})


def _segments(rows: list[tuple]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema={"column": pl.String, "chromosome": pl.String, "start": pl.Int64,
                                      "end": pl.Int64, "segment_mean": pl.Float64, "problem": pl.String},
                        orient="row")


def test_segments_to_genes_length_weighted_mean():
    segments = _segments([
        ("S1", "chr1", 701, 1300, 1.0, None),   # overlaps 1001..1300 = 300 bp
        ("S1", "chr1", 1301, 2500, -1.0, None),  # overlaps 1301..2000 = 700 bp
        ("S1", "2", 1, 100, 3.0, None),          # before GENEB: no row for GENEB
    ])
    out = segments_to_genes(segments, GENES, segment_build="hg38")
    # (300 * 1.0 + 700 * -1.0) / (300 + 700) = -400 / 1000 = -0.4; covered 1000 of 1000 bp
    assert out.rows() == [("S1", "GENEA", 101, pytest.approx(-0.4), pytest.approx(1.0))]
    assert out.schema == pl.Schema({"column": pl.String, "feature_id": pl.String, "gene_id": pl.Int64,
                                    "log2_ratio": pl.Float64, "coverage": pl.Float64})


def test_segments_to_genes_partial_coverage_and_boundaries():
    segments = _segments([
        ("S1", "1", 1, 1001, 2.0, None),      # touches the gene's first base only: 1 bp
        ("S1", "1", 1500, 1599, 4.0, None),   # 100 bp inside
        ("S2", "1", 2000, 3000, -1.0, None),  # the gene's last base: 1 bp
        ("S3", "1", 2001, 3000, 5.0, None),   # one base past the end: no overlap, no row
    ])
    out = segments_to_genes(segments, GENES, segment_build="GRCh38").sort("column")
    # S1: (1 * 2 + 100 * 4) / 101 = 402 / 101; coverage 101 / 1000.  S2: -1.0 over 1 / 1000
    assert out.rows() == [("S1", "GENEA", 101, pytest.approx(402 / 101), pytest.approx(0.101)),
                          ("S2", "GENEA", 101, pytest.approx(-1.0), pytest.approx(0.001))]


def test_segments_to_genes_skips_problem_segments():
    segments = _segments([("S1", "1", 1, 5000, 1.0, None), ("S1", "1", 900, 100, 9.0, "start 900 > end 100")])
    assert segments_to_genes(segments, GENES, segment_build="hg38").rows() == [
        ("S1", "GENEA", 101, pytest.approx(1.0), pytest.approx(1.0))]


def test_segments_to_genes_overlapping_segments_of_one_sample():
    # A long segment with a short one nested inside: both count, weighted by their overlap with the gene.
    segments = _segments([("S1", "1", 1, 5000, 0.0, None), ("S1", "1", 1200, 1300, 1.0, None),
                          ("S1", "1", 1900, 1950, 2.0, None)])
    out = segments_to_genes(segments, GENES, segment_build="hg38")
    # (1000 * 0 + 101 * 1 + 51 * 2) / (1000 + 101 + 51) = 203 / 1152; coverage 1152 / 1000
    assert out.rows() == [("S1", "GENEA", 101, pytest.approx(203 / 1152), pytest.approx(1.152))]


def test_segments_to_genes_build_mismatch_returns_none():
    segments = _segments([("S1", "1", 1, 5000, 1.0, None)])
    assert segments_to_genes(segments, GENES, segment_build="hg19") is None
    # GRCh37 and hg19 are one build: chr1:1-5000 covers GENEA (chr1:1001-2000) whole; GENEB is on chr2
    same = segments_to_genes(segments, GENES, segment_build="GRCh37", reference_build="hg19")
    assert same.rows() == [("S1", "GENEA", 101, 1.0, 1.0)]
    assert build_mismatch_message("hg18") == ("segments are on hg18; the gene reference has GRCh38 and GRCh37 "
                                              "coordinates only, so no gene-level values were derived")


def test_canonical_build_rejects_unknown():
    assert canonical_build(" HG38 ") == "GRCh38"
    with pytest.raises(ValueError, match="unknown genome build 'hg17'"):
        canonical_build("hg17")


def test_segments_to_genes_real_laml_segments(shared_data):
    segments = parse_seg(shared_data / "variants_tcga_laml_maftools/TCGA.AB.3009.hg19.seg.txt",
                         issues=IssueLog("laml")).records.collect()
    # A made-up gene 80001..100000 on chr1 (hg19, same build as the file) straddles the first two segments:
    # sed -n 2,3p -> 1 61735 86341 -0.683 ; 1 98588 3166089 0.3069 (the gap 86342..98587 is uncovered)
    genes = pl.DataFrame({"gene_id": [1], "symbol": ["MADEUP"], "chromosome": ["1"], "start": [80001],
                          "end": [100000]})
    out = segments_to_genes(segments, genes, segment_build="hg19", reference_build="hg19")
    # awk 'BEGIN{a=86341-80001+1; b=100000-98588+1; print (a*-0.683+b*0.3069)/(a+b), (a+b)/20000}'
    # -> 6341 and 1413 bp: -0.5026119809, coverage 0.3877
    assert out.rows() == [("TCGA-AB-3009", "MADEUP", 1, pytest.approx(-0.5026119809), pytest.approx(0.3877))]


def test_match_peak_genes_by_direction_and_wide_peak():
    """Hand-made rows: a deletion and an amplification peak share boundaries; a third genes column matches none."""
    peak = {c: None for c in PEAK_SCHEMA} | {"chromosome": "9", "wide_peak_start": 100, "wide_peak_end": 200}
    peaks = pl.DataFrame([peak | {"peak_name": "Deletion Peak 1", "direction": "deletion"},
                          peak | {"peak_name": "Amplification Peak 1", "direction": "amplification"}],
                         schema=PEAK_SCHEMA)
    listed = pl.DataFrame([
        ("deletion", "9", 100, 200, "9p21.3", "CDKN2A", True, 5, 2),
        ("deletion", "9", 100, 200, "9p21.3", "CDKN2B", True, 6, 2),
        ("deletion", "9", 100, 200, "9p21.3", "CDKN2A", True, 7, 2),   # a second locus of CDKN2A
        ("deletion", "9", 100, 999, "9p21.2", "MTAP", True, 5, 3),     # boundaries of no peak
        ("deletion", "9", 100, 999, "9p21.2", "DMRTA1", True, 6, 3),
    ], schema=GENE_SCHEMA, orient="row")
    members = match_peak_genes(listed, peaks)
    assert members.kept.select("peak_name", "feature_id", "line").rows() == [
        ("Deletion Peak 1", "CDKN2A", 5), ("Deletion Peak 1", "CDKN2B", 6)]
    assert members.repeated.select("feature_id", "line").rows() == [("CDKN2A", 7)]
    assert members.unknown.rows() == [(3, "9p21.2", 5, 2)]
