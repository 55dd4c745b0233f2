"""The qc stage of one study, in two steps around normalisation, per count assay, as long frames.

:func:`qc_study` (``sample_qc``) runs *before* normalisation, on ``rna_counts`` alone, so that a study declaring
``qc: exclude_failed: true`` can leave the failed samples out of normalisation, DE and everything computed from them.
Its correlation and PCA distance are therefore computed on edgeR's log2 CPM of the raw counts (``cpm(log=TRUE,
prior.count=2)`` without TMM factors), not on the VST: the flags must not depend on a normalisation that the flags
decide the input of, and a library-size-scaled log is what scater's and nf-core's QC look at too.

:func:`structure_study` (``sample_embeddings``, ``sample_clusters``) runs *after* normalisation, on ``rna_vst.vst``
(else ``rna_normalized.log2_cpm`` when DESeq2's VST could not be fitted), so excluded samples are not in it either.
Both read through :func:`transforms.expression.study.dense_block`; nothing here writes. A study without counts yields
no rows (its tables are committed empty).
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from pathlib import Path

import numpy as np
import polars as pl

from schemas.manifest import QcSettings
from transforms.expression import normalise
from transforms.expression.study import DenseBlock, StageOutput, dense_block, distinct_rows, shared_dense_block
from transforms.qc import samples as qc

QC_TABLE = "sample_qc"
STRUCTURE_TABLES = ("sample_embeddings", "sample_clusters")
QC_TABLES = (QC_TABLE, *STRUCTURE_TABLES)
THRESHOLDS = ("log library size / log detected genes / median correlation below median - nmads MAD; pct_mito / PCA "
              "distance above median + nmads MAD (MAD scaled by 1.4826); correlation and PCA on log2 CPM of the raw "
              "counts")


def _assays(frame: pl.LazyFrame) -> list[str]:
    return [a for (a,) in distinct_rows(frame, "assay")]


def top_raw_log2_cpm(counts: np.ndarray, columns: np.ndarray, *, top_genes: int,
                     block_cells: int = qc.BLOCK_CELLS) -> np.ndarray:
    """The ``top_genes`` most variable rows of edgeR's ``cpm(counts[, columns], log=TRUE, prior.count=2)`` (no TMM)
    over the rows complete in ``columns``, most variable first.

    Read by blocks (library sizes over sample columns, variances over gene rows, as
    :func:`transforms.qc.samples.top_variable`), so the whole log2 CPM block is never held; same bits as the
    one-block computation.
    """
    rows = qc.complete_rows(counts, columns=columns, block_cells=block_cells)
    library = np.zeros(columns.size)
    for cols in qc.index_blocks(columns.size, block_cells // max(rows.size, 1)):
        library[cols] = qc.take_part(counts, rows, columns[cols]).sum(axis=0)
    mean_library = float(np.mean(library))

    def log2(part: np.ndarray) -> np.ndarray:
        return normalise.log2_cpm(part, library_size=library, mean_library_size=mean_library)

    return qc.top_variable(counts, top_genes=top_genes, columns=columns, transform=log2, block_cells=block_cells)


def qc_frame(block: DenseBlock, *, assay: str, mito: set[int], settings: QcSettings,
             summary: dict[str, object], block_cells: int = qc.BLOCK_CELLS,
             correlation_block: int = qc.CORRELATION_BLOCK) -> pl.DataFrame:
    """``sample_qc`` rows of one count assay (one per sample of ``block``); fills ``summary`` with its counts.

    The block is read ``block_cells`` cells at a time and correlations ``correlation_block`` samples at a time
    (above it, rows of the correlation matrix by blocks of ``block_cells``): bounded memory at any study width;
    the values do not depend on either but for the last bits of correlations.
    """
    samples = block.sample_ids
    is_mito = block.gene_ids.is_in(list(mito)).fill_null(False).to_numpy() if mito else None
    metrics = qc.count_metrics(block.values, mito=is_mito, block_cells=block_cells)
    n = samples.len()
    corr_median = np.full(n, np.nan)
    distance = np.full(n, np.nan)
    has_counts = metrics.library_size > 0
    if has_counts.sum() >= 2:
        top = top_raw_log2_cpm(block.values, np.flatnonzero(has_counts), top_genes=settings.top_genes,
                               block_cells=block_cells)
        if top.shape[0] >= 2:
            corr_median[has_counts] = qc.median_correlations(top, whole_up_to=correlation_block,
                                                              block_cells=block_cells)
            distance[has_counts] = qc.pca_distance(qc.pca(top).scores)
    flags = {
        "low_library_size": qc.mad_outliers(metrics.library_size, nmads=settings.nmads, side="lower", log=True),
        "low_detected_genes": qc.mad_outliers(metrics.detected_genes.astype(float), nmads=settings.nmads,
                                              side="lower", log=True),
        "high_pct_mito": qc.mad_outliers(metrics.pct_mito, nmads=settings.nmads, side="higher"),
        "low_correlation": qc.mad_outliers(corr_median, nmads=settings.nmads, side="lower"),
        "pca_outlier": qc.mad_outliers(distance, nmads=settings.nmads, side="higher"),
    }
    sample_flags = [[name for name, mask in flags.items() if mask[j]] for j in range(n)]
    passed = [not f for f in sample_flags]
    frame = pl.DataFrame({
        "sample_id": samples, "assay": assay,
        "library_size": metrics.library_size, "detected_genes": metrics.detected_genes.astype(np.int64),
        "pct_top100": metrics.pct_top100, "pct_mito": metrics.pct_mito,
        "median_correlation": corr_median, "pca_distance": distance,
        "qc_flags": pl.Series(sample_flags, dtype=pl.List(pl.String)),
        "qc_pass": passed,
        "excluded": [settings.exclude_failed and not ok for ok in passed],
    }).with_columns(pl.col(pl.Float64).fill_nan(None))
    failed = frame.filter(~pl.col("qc_pass"))["sample_id"].to_list()
    summary.update({f"{assay}.samples": n, f"{assay}.failed": len(failed), f"{assay}.failed_samples": failed,
                    f"{assay}.flags": {name: int(mask.sum()) for name, mask in flags.items()}})
    return frame


def qc_study(counts: pl.LazyFrame, mito_genes: pl.Series, *, settings: QcSettings,
             workdir: str | Path, counts_key: tuple[Hashable, ...] | None = None) -> StageOutput:
    """``sample_qc`` of every count assay of one study (the study's ``rna_counts`` rows), before normalisation.

    ``mito_genes``: gene ids on the mitochondrial chromosome. ``settings`` is the manifest's ``qc:`` key; with
    ``exclude_failed`` the failed samples get ``excluded = true`` and the stages after this one leave them out.
    ``counts_key`` names the ``counts`` rows (:func:`~transforms.expression.study.shared_dense_block`; the assay is
    added): the last count block read is kept under it for the normalise stage of this process (one block per
    process, so only a study with one count assay gains: normalise asks for its first assay first, and a call with
    another key drops the kept block).
    """
    summary: dict[str, object] = {"nmads": settings.nmads, "top_genes": settings.top_genes, "thresholds": THRESHOLDS,
                                  "exclude_failed": settings.exclude_failed}
    mito = set(mito_genes.to_list())

    def frames() -> Iterator[tuple[str, pl.DataFrame]]:
        for assay in _assays(counts):
            block = shared_dense_block(counts.filter(pl.col("assay") == assay), value="count", workdir=workdir,
                                       key=None if counts_key is None else (*counts_key, assay), keep=True)
            yield QC_TABLE, qc_frame(block, assay=assay, mito=mito, settings=settings, summary=summary)

    return StageOutput(frames(), {QC_TABLE: summary}, [])


def structure_study(vst: pl.LazyFrame, normalised: pl.LazyFrame, *, settings: QcSettings,
                    workdir: str | Path, vst_key: tuple[Hashable, ...] | None = None) -> StageOutput:
    """PCA embeddings and clusters of every count assay of one study, from its VST (else log2 CPM) values.

    ``normalised`` rows with ``source = 'counts'`` name the count assays; samples the normalise stage left out
    (``qc.exclude_failed``) are absent from both inputs and so from the output. ``vst_key`` names the ``vst`` rows
    (:func:`~transforms.expression.study.shared_dense_block`; the assay is added): a VST block the normalise stage
    of this process kept under it is taken instead of read back.
    """
    metadata: dict[str, dict[str, object]] = {t: {} for t in STRUCTURE_TABLES}
    embeddings, clusters = (metadata[t] for t in STRUCTURE_TABLES)
    count_rows = normalised.filter(pl.col("source") == "counts")
    vst_assays = set(_assays(vst))

    def frames() -> Iterator[tuple[str, pl.DataFrame]]:
        for assay in _assays(count_rows):
            if assay in vst_assays:
                source = "rna_vst.vst"
                block = shared_dense_block(vst.filter(pl.col("assay") == assay), value="vst", workdir=workdir,
                                           key=None if vst_key is None else (*vst_key, assay), keep=False)
            else:
                source = "rna_normalized.log2_cpm"
                block = dense_block(count_rows.filter(pl.col("assay") == assay), value="log2_cpm", workdir=workdir)
            top = qc.top_variable(block.values, top_genes=settings.top_genes)  # by blocks of gene rows
            ids = block.sample_ids
            if ids.len() < 2 or top.shape[0] < 2:
                continue
            fit = qc.pca(top)
            yield "sample_embeddings", pl.DataFrame({
                "sample_id": np.repeat(ids.to_numpy(), fit.scores.shape[1]),
                "assay": assay, "method": "pca",
                "component": np.tile(np.arange(1, fit.scores.shape[1] + 1), ids.len()),
                "value": fit.scores.ravel()})
            embeddings.update({f"{assay}.explained_variance": [round(float(v), 4) for v in fit.explained],
                               f"{assay}.genes": int(top.shape[0]), f"{assay}.values": source})
            # samples in id order: the seeded resamples must not depend on the order the long table was scanned
            order = np.argsort(ids.to_numpy(), kind="stable")
            found = qc.consensus_clusters(top[:, order])
            if found is None:
                continue
            # one frame (one staged file) per assay, not one per method and k: each file costs a sink, a footer
            # read at the commit and in every catalog rebuild, ~10 a small study for ~80 rows each
            sorted_ids = ids.gather(order)
            if found.ks:
                yield "sample_clusters", pl.concat([
                    pl.DataFrame({"sample_id": sorted_ids, "assay": assay, "method": method, "k": k,
                                  "cluster": by_k[k]})
                    for method, by_k in (("hierarchical", found.hierarchical), ("consensus", found.consensus))
                    for k in found.ks])
            clusters.update({f"{assay}.chosen_k": found.chosen_k,
                             f"{assay}.stability": round(1 - found.pac[found.chosen_k], 4),
                             f"{assay}.pac": {str(k): round(v, 4) for k, v in found.pac.items()},
                             f"{assay}.within_cluster_consensus": {str(k): round(v, 4)
                                                                   for k, v in found.within.items()},
                             f"{assay}.resamples": qc.RESAMPLES,
                             f"{assay}.clustered_samples": min(ids.len(), qc.CONSENSUS_MAX_SAMPLES),
                             f"{assay}.others": ("none" if ids.len() <= qc.CONSENSUS_MAX_SAMPLES else
                                                 "assigned to the nearest cluster centroid (Pearson r)")})

    return StageOutput(frames(), metadata, [])
