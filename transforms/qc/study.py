"""The qc stage of one study: per count assay, sample QC, PCA embeddings and clusters as long frames.

Reads the study's ``rna_counts`` (library size, detected genes, top-100 and mitochondrial fractions) and its log-scale
values (``rna_vst.vst``, else ``rna_normalized.log2_cpm`` when DESeq2's VST could not be fitted) through
:func:`transforms.expression.study.dense_block`, and calls :mod:`transforms.qc.samples`. A study without counts
yields no rows (its tables are committed empty). Nothing here writes.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl

from schemas.manifest import QcSettings
from transforms.expression.study import DenseBlock, StageOutput, dense_block
from transforms.qc import samples as qc

QC_TABLES = ("sample_qc", "sample_embeddings", "sample_clusters")


def _aligned(block: DenseBlock, sample_ids: pl.Series) -> np.ndarray:
    """The block's columns in ``sample_ids`` order (NaN columns for samples it lacks)."""
    position = {s: i for i, s in enumerate(block.sample_ids.to_list())}
    out = np.full((block.values.shape[0], sample_ids.len()), np.nan)
    for j, sample in enumerate(sample_ids.to_list()):
        if sample in position:
            out[:, j] = block.values[:, position[sample]]
    return out


def qc_study(counts: pl.LazyFrame, vst: pl.LazyFrame, normalised: pl.LazyFrame, mito_genes: pl.Series, *,
             settings: QcSettings, workdir: str | Path) -> StageOutput:
    """Sample QC, PCA and clusters of every count assay of one study (the study's rows of each input table).

    ``mito_genes``: gene ids on the mitochondrial chromosome. ``settings`` is the manifest's ``qc:`` key.
    """
    metadata: dict[str, dict[str, object]] = {t: {} for t in QC_TABLES}
    summary, embeddings, clusters = (metadata[t] for t in QC_TABLES)
    summary |= {"nmads": settings.nmads, "top_genes": settings.top_genes,
                "thresholds": "log library size / log detected genes / median correlation below median - nmads "
                              "MAD; pct_mito / PCA distance above median + nmads MAD (MAD scaled by 1.4826)",
                "exclude_failed": settings.exclude_failed}
    if settings.exclude_failed:
        summary["exclude_failed_applied_by"] = ("nothing yet: normalise and differential_expression still use every "
                                                "sample; failed samples are listed here")
    assays = sorted(a for (a,) in counts.select("assay").unique().collect().iter_rows())
    vst_assays = set(vst.select("assay").unique().collect()["assay"].to_list())
    mito = set(mito_genes.to_list())

    def frames() -> Iterator[tuple[str, pl.DataFrame]]:
        for assay in assays:
            block = dense_block(counts.filter(pl.col("assay") == assay), value="count", workdir=workdir)
            samples = block.sample_ids
            is_mito = block.gene_ids.is_in(list(mito)).fill_null(False).to_numpy() if mito else None
            metrics = qc.count_metrics(block.values, mito=is_mito)
            if assay in vst_assays:
                source = "rna_vst.vst"
                log_block = dense_block(vst.filter(pl.col("assay") == assay), value="vst", workdir=workdir)
            else:
                source = "rna_normalized.log2_cpm"
                log_block = dense_block(normalised.filter(pl.col("assay") == assay, pl.col("source") == "counts"),
                                        value="log2_cpm", workdir=workdir)
            values = _aligned(log_block, samples)
            have = np.flatnonzero(~np.isnan(values).all(axis=0))
            top = qc.top_variable(values[:, have], top_genes=settings.top_genes)
            n = samples.len()
            corr_median = np.full(n, np.nan)
            distance = np.full(n, np.nan)
            if have.size >= 2 and top.shape[0] >= 2:
                corr_median[have] = qc.median_correlation(qc.correlation(top))
                fit = qc.pca(top)
                distance[have] = qc.pca_distance(fit.scores)
                ids = samples.gather(have)
                yield "sample_embeddings", pl.DataFrame({
                    "sample_id": np.repeat(ids.to_numpy(), fit.scores.shape[1]),
                    "assay": assay, "method": "pca",
                    "component": np.tile(np.arange(1, fit.scores.shape[1] + 1), have.size),
                    "value": fit.scores.ravel()})
                embeddings[f"{assay}.explained_variance"] = [round(float(v), 4) for v in fit.explained]
                embeddings[f"{assay}.genes"] = int(top.shape[0])
                embeddings[f"{assay}.values"] = source
                # samples in id order: the seeded resamples must not depend on the order the long table was scanned
                order = np.argsort(ids.to_numpy(), kind="stable")
                found = qc.consensus_clusters(top[:, order])
                if found is not None:
                    for method, by_k in (("hierarchical", found.hierarchical), ("consensus", found.consensus)):
                        for k in found.ks:
                            yield "sample_clusters", pl.DataFrame({
                                "sample_id": ids.gather(order), "assay": assay, "method": method, "k": k,
                                "cluster": by_k[k]})
                    clusters.update({f"{assay}.chosen_k": found.chosen_k,
                                 f"{assay}.stability": round(1 - found.pac[found.chosen_k], 4),
                                 f"{assay}.pac": {str(k): round(v, 4) for k, v in found.pac.items()},
                                 f"{assay}.within_cluster_consensus": {str(k): round(v, 4)
                                                                       for k, v in found.within.items()},
                                     f"{assay}.resamples": qc.RESAMPLES})
            flags = {
                "low_library_size": qc.mad_outliers(metrics.library_size, nmads=settings.nmads, side="lower",
                                                    log=True),
                "low_detected_genes": qc.mad_outliers(metrics.detected_genes.astype(float), nmads=settings.nmads,
                                                      side="lower", log=True),
                "high_pct_mito": qc.mad_outliers(metrics.pct_mito, nmads=settings.nmads, side="higher"),
                "low_correlation": qc.mad_outliers(corr_median, nmads=settings.nmads, side="lower"),
                "pca_outlier": qc.mad_outliers(distance, nmads=settings.nmads, side="higher"),
            }
            sample_flags = [[name for name, mask in flags.items() if mask[j]] for j in range(n)]
            frame = pl.DataFrame({
                "sample_id": samples, "assay": assay,
                "library_size": metrics.library_size, "detected_genes": metrics.detected_genes.astype(np.int64),
                "pct_top100": metrics.pct_top100, "pct_mito": metrics.pct_mito,
                "median_correlation": corr_median, "pca_distance": distance,
                "qc_flags": pl.Series(sample_flags, dtype=pl.List(pl.String)),
                "qc_pass": [not f for f in sample_flags]}).with_columns(pl.col(pl.Float64).fill_nan(None))
            failed = frame.filter(~pl.col("qc_pass"))["sample_id"].to_list()
            summary.update({f"{assay}.samples": n, f"{assay}.failed": len(failed), f"{assay}.failed_samples": failed,
                        f"{assay}.flags": {name: int(mask.sum()) for name, mask in flags.items()},
                            f"{assay}.values": source})
            yield "sample_qc", frame

    return StageOutput(frames(), metadata, [])
