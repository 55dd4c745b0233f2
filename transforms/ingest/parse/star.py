"""STAR ``ReadsPerGene.out.tab`` (``--quantMode GeneCounts``): gene counts of one sample, three strand columns."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.matrix import cast_annotation, parse_wide_table
from transforms.ingest.parse.text import TableLayout, checks_stream, sniff_table
from transforms.issues import InputError, IssueLog

STRAND_COLUMNS = ("unstranded", "forward", "reverse")
"""STAR manual: column 2 counts for an unstranded library, column 3 reads whose 1st read is on the gene's
strand (htseq-count ``-s yes``), column 4 reads whose 2nd read is (``-s reverse``, e.g. dUTP / TruSeq)."""

SUMMARY_ROWS = ("N_unmapped", "N_multimapping", "N_noFeature", "N_ambiguous")
_STRANDED_RATIO = 2.0


@checks_stream
def parse_star(path: Path, *, issues: IssueLog, display_name: str | None = None, sample: str,
               strandedness: Literal["unstranded", "forward", "reverse"]) -> ParsedAssay:
    """Read one sample's gene counts from the strand column chosen by ``strandedness``.

    The file has no header: four ``N_*`` summary rows, then one row per gene. The summary rows go to
    ``metadata`` (and an info issue), not to ``records``. Because a wrong strandedness silently loses most
    reads, the gene totals of the forward and reverse columns are compared (as RSeQC ``infer_experiment``
    does): one over twice the other means that strand; a choice that disagrees is a warning.

    Returns
    -------
    ParsedAssay
        ``records`` as :data:`transforms.ingest.parse.matrix.RECORD_SCHEMA` with ``column`` = ``sample``; ``features``
        ``feature_id``, ``line``; ``metadata`` the summary rows and the totals of the three columns.
    """
    if strandedness not in STRAND_COLUMNS:
        raise ValueError(f"strandedness must be one of {STRAND_COLUMNS}, got {strandedness!r}")
    layout = _headerless_layout(path, issues=issues, display_name=display_name)
    others = [c for c in STRAND_COLUMNS if c != strandedness]
    parsed = parse_wide_table(layout, issues=issues, id_columns=("gene_id",), annotation_columns=others)
    name = layout.display_name
    features = parsed.features
    assert features is not None  # parse_wide_table always returns its feature frame
    for column in others:
        features = cast_annotation(features, column, pl.Float64, issues=issues, file=name)
    chosen = parsed.records.select("feature_id", pl.col("value").alias(strandedness)).collect()
    counts = features.join(chosen, on="feature_id", how="left")
    is_summary = pl.col("feature_id").is_in(SUMMARY_ROWS)
    summary = counts.filter(is_summary)
    if summary.height:
        issues.info("star_summary_rows", f"{summary.height} STAR summary rows ({', '.join(SUMMARY_ROWS)}) "
                    "kept in metadata, not in records", file=name, line=summary.select(pl.col("line").min()).item())
    totals = counts.filter(~is_summary).select(pl.col(STRAND_COLUMNS).sum()).row(0, named=True)
    inferred = _infer_strandedness(totals["forward"], totals["reverse"])
    if inferred is not None and inferred != strandedness:
        issues.warning("strandedness_mismatch", f"strandedness is {strandedness!r} but gene totals (forward "
                       f"{totals['forward']:.0f}, reverse {totals['reverse']:.0f}) look {inferred}",
                       file=name, column=strandedness)
    parsed.records = parsed.records.filter(~is_summary).with_columns(column=pl.lit(sample))
    parsed.features = features.filter(~is_summary).select("feature_id", "line")
    parsed.columns = [sample]
    parsed.metadata |= {
        "rows": parsed.features.height,
        "strandedness": strandedness,
        "inferred_strandedness": inferred,
        "column_totals": totals,
        "summary": dict(summary.select("feature_id", pl.col(strandedness).cast(pl.Int64)).iter_rows()),
    }
    return parsed


def _headerless_layout(path: Path, *, issues: IssueLog, display_name: str | None) -> TableLayout:
    """A layout naming the four columns; the shared sniffing still rejects empty, UTF-16 and binary files.

    The first line is data (``N_unmapped`` and three equal counts), so the sniffer's duplicate-header check
    is expected to fire on it and is not an error here.
    """
    try:
        layout = sniff_table(path, issues=issues, display_name=display_name, comment_prefix=None)
    except InputError as exc:
        if exc.issue.code != "duplicate_column":
            raise
        with open(path, "rb") as raw:
            compressed = raw.read(2) == b"\x1f\x8b"
        return TableLayout(path, exc.issue.file, "\t", ["gene_id", *STRAND_COLUMNS], 0, "utf-8", compressed)
    return TableLayout(path, layout.display_name, layout.separator, ["gene_id", *STRAND_COLUMNS], 0,
                       layout.encoding, layout.compressed)


def _infer_strandedness(forward: float, reverse: float) -> str | None:
    if forward + reverse == 0:
        return None
    if forward > _STRANDED_RATIO * reverse:
        return "forward"
    if reverse > _STRANDED_RATIO * forward:
        return "reverse"
    return "unstranded"
