"""Gene-set enrichment of one contrast: gseapy prerank on the Wald statistic and hypergeometric ORA of DE genes.

Genes are keyed by NCBI gene_id (as text for gseapy); gseapy always gets a ranked Series and a dict of gene sets,
never a library name, so nothing is fetched. prerank uses a fixed seed and one thread: a re-run gives the same
numbers. ORA: genes with ``padj < padj_threshold`` and a positive (``ora_up``) or negative (``ora_down``) log2
fold change, against the genes tested in the contrast (non-null pvalue); P(X >= overlap) from the hypergeometric
distribution, Benjamini-Hochberg FDR over the library's tested sets.
"""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Iterable

import numpy as np
import polars as pl
from scipy.stats import false_discovery_control, hypergeom

_LOG = logging.getLogger(__name__)

PADJ = 0.05
PERMUTATIONS = 1000
SEED = 20091105
MIN_SIZE, MAX_SIZE = 15, 500
"""prerank tests sets with 15 to 500 members in the ranked list (gseapy's defaults); ORA needs 5 in the universe."""
ORA_MIN = 5
DEFAULT_PRERANK_LIBRARIES = ("msigdb_hallmark",)
"""Shipped libraries prerank tests unless told otherwise (warehouse and study libraries always are): Hallmark's 50
sets are GSEA's usual first pass; Reactome and GO biological process (8,548 sets) get ORA, prerank when named."""
ALL_LIBRARIES = "all"
"""The prerank library setting naming every library (the behaviour before the default above)."""

ENRICHMENT_SCHEMA = pl.Schema({
    "contrast": pl.String, "library": pl.String, "gene_set": pl.String, "method": pl.String, "size": pl.Int64,
    "es": pl.Float64, "nes": pl.Float64, "pvalue": pl.Float64, "fdr": pl.Float64, "leading_edge": pl.String,
})


def gene_set_dict(members: pl.DataFrame) -> dict[str, dict[str, list[str]]]:
    """Library -> gene_set -> distinct mapped gene_ids (as text) of every set, sets and members in id order.

    gseapy's permutation draws follow the order of the sets and their members, so that order is fixed here,
    not left to the order the stored member rows come back in.
    """
    mapped = (members.filter(pl.col("gene_id").is_not_null()).select("library", "gene_set", "gene_id").unique()
              .sort("library", "gene_set", "gene_id"))
    grouped = mapped.group_by("library", "gene_set", maintain_order=True).agg(pl.col("gene_id").cast(pl.String))
    out: dict[str, dict[str, list[str]]] = {}
    for library, gene_set, genes in grouped.iter_rows():  # one aggregation, not a frame per set: half the time
        out.setdefault(str(library), {})[str(gene_set)] = genes
    return out


def prerank(stat: pl.DataFrame, sets: dict[str, list[str]], *, permutations: int = PERMUTATIONS, seed: int = SEED,
            min_size: int = MIN_SIZE, max_size: int = MAX_SIZE) -> pl.DataFrame:
    """Gseapy prerank of ``stat`` (gene_id, stat) against ``sets``: gene_set, size, es, nes, pvalue, fdr,
    leading_edge (empty frame when no set has a usable size).
    """
    import gseapy
    import pandas as pd

    ranked = stat.drop_nulls()  # gseapy sorts it; passing every set keeps its permutation draws as in its own run
    series = pd.Series(ranked["stat"].to_numpy(), index=ranked["gene_id"].cast(pl.String).to_list())
    universe = set(series.index)
    usable = {k: v for k, v in sets.items() if min_size <= len(universe.intersection(v)) <= max_size}
    empty = pl.DataFrame(schema={k: v for k, v in ENRICHMENT_SCHEMA.items()
                                 if k not in ("contrast", "library", "method")})
    if not usable or len(series) < 2:
        return empty
    # gseapy gives each run a logger of its own ('prerank<id>') with a handler on the stderr of that moment: its
    # warnings (ties in the ranking) went to the terminal through the build's progress line. They go to our log.
    with contextlib.redirect_stderr(io.StringIO()) as said:
        result = gseapy.prerank(rnk=series, gene_sets=sets, permutation_num=permutations, seed=seed, threads=1,
                                min_size=min_size, max_size=max_size, outdir=None, no_plot=True, verbose=False)
    for line in said.getvalue().splitlines():
        _LOG.info("gseapy prerank: %s", line)
    table = result.res2d
    sizes = {k: len(universe.intersection(v)) for k, v in usable.items()}
    return pl.DataFrame({
        "gene_set": table["Term"].astype(str).tolist(),
        "size": [sizes[t] for t in table["Term"].astype(str)],
        "es": table["ES"].astype(float).to_numpy(),
        "nes": table["NES"].astype(float).to_numpy(),
        "pvalue": table["NOM p-val"].astype(float).to_numpy(),
        "fdr": table["FDR q-val"].astype(float).to_numpy(),
        "leading_edge": table["Lead_genes"].astype(str).tolist(),
    }, schema=empty.schema)


def ora(de: pl.DataFrame, sets: dict[str, list[str]], *, padj_threshold: float = PADJ, direction: int,
        min_size: int = ORA_MIN) -> pl.DataFrame:
    """Hypergeometric over-representation of up (``direction`` 1) or down (-1) DE genes in each set.

    Members are matched as text (``sets`` holds gene ids as text, as gseapy gets them) and the p-values of all
    sets come from one vectorised ``hypergeom.sf`` call (the same values as one call per set).
    """
    tested = de.filter(pl.col("pvalue").is_not_null()).unique("gene_id")
    universe = set(tested["gene_id"].cast(pl.String).to_list())
    fold = pl.col("log2_fold_change")
    chosen = tested.filter((pl.col("padj") < padj_threshold) & ((fold > 0) if direction > 0 else (fold < 0)))
    selected = set(chosen["gene_id"].cast(pl.String).to_list())
    n_universe, n_selected = len(universe), len(selected)
    names, sizes, overlaps = [], [], []
    for name, genes in sets.items():
        members = universe.intersection(genes)
        if len(members) < min_size:
            continue
        names.append(name)
        sizes.append(len(members))
        overlaps.append(sorted(int(g) for g in members & selected))
    size = np.asarray(sizes, dtype=np.int64)
    hits = np.asarray([len(o) for o in overlaps], dtype=np.int64)
    pvalue = (hypergeom.sf(hits - 1, n_universe, size, n_selected).astype(float) if len(names)
              else np.empty(0))
    expected = size * n_selected / n_universe if n_universe else np.zeros(len(names))
    frame = pl.DataFrame({
        "gene_set": pl.Series(names, dtype=pl.String), "size": pl.Series(size, dtype=pl.Int64),
        "es": pl.Series([h / e if e > 0 else None for h, e in zip(hits.tolist(), expected.tolist(), strict=True)],
                        dtype=pl.Float64),
        "pvalue": pl.Series(pvalue, dtype=pl.Float64),
        "leading_edge": pl.Series([";".join(str(g) for g in o) or None for o in overlaps], dtype=pl.String)})
    fdr = false_discovery_control(frame["pvalue"].to_numpy(), method="bh") if frame.height else np.empty(0)
    return frame.with_columns(nes=pl.lit(None, dtype=pl.Float64), fdr=pl.Series(fdr, dtype=pl.Float64)).select(
        "gene_set", "size", "es", "nes", "pvalue", "fdr", "leading_edge")


def contrast_statistics(de: pl.LazyFrame, gene_map: pl.LazyFrame) -> dict[str, pl.DataFrame]:
    """Contrast -> one row per mapped gene (gene_id, stat, log2_fold_change, pvalue, padj), first count assay.

    Contrasts in name order, genes in gene_id order, a gene measured by several features taking the first
    feature_id: the same rows in the same order however the stored DE rows come back (prerank breaks tied
    statistics by input order).
    """
    mapped = gene_map.filter(pl.col("status") == "mapped").select("assay", "feature_id")
    rows = (de.filter(pl.col("gene_id").is_not_null()).join(mapped, on=["assay", "feature_id"])
            .select("contrast", "assay", "gene_id", "feature_id", "stat", "log2_fold_change", "pvalue", "padj")
            .sort("contrast", "assay", "gene_id", "feature_id").collect())
    out = {}
    for (contrast,), part in rows.group_by("contrast", maintain_order=True):
        first = part["assay"][0]
        out[str(contrast)] = part.filter(pl.col("assay") == first).drop("contrast", "assay").unique(
            "gene_id", keep="first", maintain_order=True).drop("feature_id")
    return out


def prerank_names(setting: str | None) -> list[str]:
    """The library names a prerank setting lists (comma-separated, blanks dropped)."""
    return [n.strip() for n in (setting or "").split(",") if n.strip()]


def unknown_prerank_libraries(setting: str | None, known: Iterable[str]) -> list[str]:
    """Names ``setting`` lists that are no library in ``known`` (``all`` is always known), in the order given.

    A misspelt name would otherwise select nothing and prerank would silently skip the library.
    """
    libraries = {*known, ALL_LIBRARIES}
    return [n for n in prerank_names(setting) if n not in libraries]


def prerank_selection(members: pl.DataFrame, setting: str | None) -> list[str]:
    """The libraries prerank tests, sorted: those ``setting`` names (comma-separated; ``all``: every library in
    ``members``), else (None or empty) :data:`DEFAULT_PRERANK_LIBRARIES` and every warehouse or study library.

    ORA tests every library either way; prerank with 1,000 permutations over all 8,598 shipped sets costs ~270
    CPU s for one contrast of 18,000 genes (``bench/README.md``), so Reactome and GO get it only when named.
    """
    present = members.select("scope", "library").unique()
    names = prerank_names(setting)
    if ALL_LIBRARIES in names:
        return sorted(present["library"].unique().to_list())
    if names:
        return sorted(set(names) & set(present["library"].to_list()))
    chosen = present.filter((pl.col("scope") != "shipped") | pl.col("library").is_in(DEFAULT_PRERANK_LIBRARIES))
    return sorted(chosen["library"].unique().to_list())


def enrich_study(statistics: dict[str, pl.DataFrame], libraries: dict[str, dict[str, list[str]]], *,
                 permutations: int = PERMUTATIONS, seed: int = SEED, padj_threshold: float = PADJ,
                 prerank_libraries: list[str] | None = None) -> tuple[pl.DataFrame, dict[str, object]]:
    """``gene_set_enrichment`` rows (without study_id) of every contrast, and per-contrast metadata.

    ``statistics`` from :func:`contrast_statistics`, ``libraries`` from :func:`gene_set_dict`;
    ``prerank_libraries`` limits the (slow) permutation test to those libraries (None: every library).
    """
    frames = []
    metadata: dict[str, object] = {}
    for contrast, stats in statistics.items():
        done = []
        for library, sets in libraries.items():
            parts = [("ora_up", ora(stats, sets, padj_threshold=padj_threshold, direction=1)),
                     ("ora_down", ora(stats, sets, padj_threshold=padj_threshold, direction=-1))]
            if prerank_libraries is None or library in prerank_libraries:
                parts.insert(0, ("prerank", prerank(stats.select("gene_id", "stat"), sets,
                                                    permutations=permutations, seed=seed)))
            done += [part.with_columns(contrast=pl.lit(contrast), library=pl.lit(library), method=pl.lit(method))
                     .select(list(ENRICHMENT_SCHEMA)) for method, part in parts]
        rows = pl.concat(done) if done else pl.DataFrame(schema=ENRICHMENT_SCHEMA)
        frames.append(rows)
        top = rows.filter(pl.col("method") == "prerank").sort("fdr", "pvalue").head(5)
        metadata[contrast] = {"sets_tested": rows.height,
                              "top_prerank": [f"{r['library']}/{r['gene_set']} NES {r['nes']:.2f} FDR {r['fdr']:.3g}"
                                              for r in top.iter_rows(named=True)]}
    frame = pl.concat(frames) if frames else pl.DataFrame(schema=ENRICHMENT_SCHEMA)
    return frame.filter(pl.col("gene_set").is_not_null()), metadata
