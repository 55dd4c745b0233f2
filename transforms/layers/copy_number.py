"""Gene-level copy number from segments: the length-weighted mean log2 ratio of the segments over each gene.

Segments are only placed on genes whose coordinates are on the segments' genome build; coordinates on another
build would put values on the wrong genes, so the function returns None and the caller records
:func:`build_mismatch_message` as a warning instead of guessing. The gene reference ships GRCh38 loci and GRCh37
loci lifted from them (``transforms/ingest/reference/build_grch37_loci.py``): segments on either are placed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from transforms.ingest.parse.seg import normalise_chromosome

# Build names that denote the same coordinates; the value is the name used in messages.
_BUILDS = {
    "grch38": "GRCh38", "hg38": "GRCh38",
    "grch37": "GRCh37", "hg19": "GRCh37",
    "ncbi36": "NCBI36", "hg18": "NCBI36",
}
_GROUP_STRIDE = 1 << 32  # larger than any chromosome length: group_index * stride + position sorts by group first


def canonical_build(name: str) -> str:
    """``hg38``/``GRCh38`` -> ``GRCh38``, ``hg19``/``GRCh37`` -> ``GRCh37`` (any case); ValueError otherwise."""
    try:
        return _BUILDS[name.strip().lower()]
    except KeyError:
        raise ValueError(f"unknown genome build {name!r}; expected one of {sorted(set(_BUILDS))}") from None


def build_mismatch_message(segment_build: str, reference_builds: tuple[str, ...] = ("GRCh38", "GRCh37")) -> str:
    """The warning text for segments that cannot be placed on the reference's genes."""
    return (f"segments are on {segment_build}; the gene reference has {' and '.join(reference_builds)} "
            "coordinates only, so no gene-level values were derived")


def segments_to_genes(segments: pl.DataFrame, genes: pl.DataFrame, *, segment_build: str,
                      reference_build: str = "GRCh38") -> pl.DataFrame | None:
    """Length-weighted mean ``segment_mean`` per sample and gene; one row per (column, gene) with any overlap.

    ``segments``: :func:`transforms.ingest.parse.seg.parse_seg` records (``column``, ``chromosome``, ``start``, ``end``,
    ``segment_mean``, optional ``problem``; rows with a problem or a null are left out). ``genes``: ``gene_id``,
    ``symbol``, ``chromosome``, ``start``, ``end`` (genes without coordinates are left out). Coordinates are
    1-based and inclusive on both sides, so a segment ``[s, e]`` covers ``min(e, gene_end) - max(s, gene_start) + 1``
    bases of a gene. Returns ``column``, ``feature_id`` (the gene symbol), ``gene_id``, ``log2_ratio`` (sum of
    overlap x segment_mean over sum of overlap) and ``coverage`` (covered bases / gene length; above 1 only if a
    sample's segments overlap each other), or None when ``segment_build`` differs from ``reference_build``.
    """
    if canonical_build(segment_build) != canonical_build(reference_build):
        return None
    usable = segments.filter(pl.all_horizontal(pl.col("column", "chromosome", "start", "end", "segment_mean")
                                               .is_not_null()))
    if "problem" in usable.columns:
        usable = usable.filter(pl.col("problem").is_null())
    gene = (
        genes.select("gene_id", "symbol", normalise_chromosome(pl.col("chromosome")).alias("chromosome"),
                     "start", "end")
        .drop_nulls(["chromosome", "start", "end"])
        .sort("chromosome", "start")
    )
    seg = (
        usable.select("column", normalise_chromosome(pl.col("chromosome")).alias("chromosome"),
                      "start", "end", "segment_mean")
        .join(gene.select("chromosome").unique(), on="chromosome")  # segments on chromosomes without genes
        .sort("column", "chromosome", "start")
    )
    # A group is one sample's segments on one chromosome; it is paired with every gene of that chromosome.
    groups = seg.select("column", "chromosome").unique(maintain_order=True)
    group = seg.select(pl.struct("column", "chromosome").rle_id()).to_series().to_numpy().astype(np.int64)
    gene_chrom = gene.get_column("chromosome")
    group_chrom = groups.get_column("chromosome")
    genes_from = np.searchsorted(gene_chrom.to_numpy(), group_chrom.to_numpy(), side="left")
    genes_to = np.searchsorted(gene_chrom.to_numpy(), group_chrom.to_numpy(), side="right")
    cand_group, cand_gene = _expand(genes_from, genes_to)

    seg_start, seg_end = seg.get_column("start").to_numpy(), seg.get_column("end").to_numpy()
    seg_mean = seg.get_column("segment_mean").to_numpy()
    gene_start = gene.get_column("start").to_numpy()[cand_gene]
    gene_end = gene.get_column("end").to_numpy()[cand_gene]

    # Segments are sorted by (group, start); keys put each group on its own stretch of one number line. The
    # running maximum of the end key is monotonic, so the first segment that can reach a gene is found by binary
    # search even when a sample's segments overlap; the last one is the last that starts before the gene ends.
    start_key = group * _GROUP_STRIDE + seg_start
    reach_key = np.maximum.accumulate(group * _GROUP_STRIDE + seg_end)
    first = np.searchsorted(reach_key, cand_group * _GROUP_STRIDE + gene_start, side="left")
    stop = np.searchsorted(start_key, cand_group * _GROUP_STRIDE + gene_end, side="right")
    pair_cand, pair_seg = _expand(first, np.maximum(stop, first))
    overlap = (np.minimum(seg_end[pair_seg], gene_end[pair_cand])
               - np.maximum(seg_start[pair_seg], gene_start[pair_cand]) + 1).clip(min=0)

    covered = np.bincount(pair_cand, weights=overlap, minlength=cand_gene.size)
    weighted = np.bincount(pair_cand, weights=overlap * seg_mean[pair_seg], minlength=cand_gene.size)
    hit = np.flatnonzero(covered > 0)
    return pl.DataFrame({
        "column": groups.get_column("column").gather(cand_group[hit]),
        "feature_id": gene.get_column("symbol").gather(cand_gene[hit]),
        "gene_id": gene.get_column("gene_id").cast(pl.Int64).gather(cand_gene[hit]),
        "log2_ratio": weighted[hit] / covered[hit],
        "coverage": covered[hit] / (gene_end[hit] - gene_start[hit] + 1),
    })


def _expand(begin: np.ndarray, end: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """All ``(i, j)`` with ``begin[i] <= j < end[i]``, as two flat arrays (a vectorised nested loop)."""
    counts = end - begin
    owner = np.repeat(np.arange(begin.size), counts)
    within = np.arange(owner.size) - np.repeat(np.cumsum(counts) - counts, counts)
    return owner, np.repeat(begin, counts) + within


PEAK_KEYS = ["direction", "chromosome", "wide_peak_start", "wide_peak_end"]
"""What identifies a GISTIC peak across its files: ``amp_genes`` / ``del_genes`` list a peak by its wide peak
boundaries (ordered by q-value), ``all_lesions`` by its name."""


@dataclass
class PeakMembers:
    """Genes of GISTIC peaks matched to the peaks of ``all_lesions``.

    ``kept``: the listed rows with their ``peak_name``, one per peak and gene (the first listing). ``unknown``: per
    peak column of a genes file whose boundaries match no peak, ``peak_column``, ``cytoband``, first ``line`` and
    ``genes``. ``repeated``: the later listings of a gene already listed in its peak (GISTIC lists each locus of a
    symbol), in file order.
    """

    kept: pl.DataFrame
    unknown: pl.DataFrame
    repeated: pl.DataFrame


def match_peak_genes(listed: pl.DataFrame, peaks: pl.DataFrame) -> PeakMembers:
    """Match ``parse_gistic_peak_genes`` rows to ``parse_gistic_lesions`` peaks by :data:`PEAK_KEYS`."""
    matched = listed.join(peaks.select(*PEAK_KEYS, "peak_name"), on=PEAK_KEYS, how="left", maintain_order="left")
    unknown = (matched.filter(pl.col("peak_name").is_null())
               .group_by("peak_column", maintain_order=True)
               .agg(pl.col("cytoband").first(), pl.col("line").min(), pl.len().alias("genes")))
    found = matched.filter(pl.col("peak_name").is_not_null())
    key = pl.struct("peak_name", "feature_id")
    return PeakMembers(found.filter(key.is_first_distinct()), unknown, found.filter(~key.is_first_distinct()))
