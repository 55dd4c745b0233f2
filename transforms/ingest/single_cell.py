"""The ``sc_rna_counts`` reader: cells to pseudobulk profiles per (sample, cell type), into the shared tables.

Cells are annotated (h5ad obs columns, or a ``cell_annotations`` table keyed by barcode), their sample labels go
through the one sample-identity resolver and their features through the one gene resolver, and the matrix is
summed per (sample, cell type) in bounded blocks (:mod:`transforms.ingest.parse.single_cell`). One reading gives
three tables: ``sc_pseudobulk`` (the profiles with their cell counts), ``cell_type_composition`` and ``rna_counts``,
where each profile is a sample ``<sample_id>__<cell_type>`` so normalisation, DE, signatures and features read
it as any bulk sample. The derived samples (with their parent and cell type) are returned for the samples tables.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl

from schemas.manifest import Assay, PathOutsideStudy, confine, resolve_study_path
from transforms.ingest.harmonise import gene_map_rows
from transforms.ingest.parse.single_cell import (
    GENE_EXPRESSION,
    CellMatrix,
    mtx_files,
    open_10x_h5,
    open_10x_mtx,
    open_h5ad,
    pseudobulk,
    repeated_ids,
)
from transforms.ingest.parse.text import read_table, sniff_table, stream_checked
from transforms.ingest.readers import AssayContext, AssayOutput, _mapped_fraction, resolve_features
from transforms.ingest.samples import map_sample_columns
from transforms.issues import InputError, Issue

PROFILE_SEPARATOR = "__"
"""A pseudobulk profile's sample id is ``<sample_id>__<cell_type>``."""
BARCODE_COLUMNS = ("barcode", "barcodes", "cell", "cell_id", "obs_names")
"""Names (any case) of the barcode column of ``cell_annotations``; otherwise its first column holds barcodes."""


def open_cells(assay: Assay, path: Path, context: AssayContext) -> CellMatrix:
    """The assay's matrix, whichever of the three layouts; a 10x folder's files pass the confinement check."""
    file = context.relative(path)
    if assay.format == "h5ad":
        return open_h5ad(path, file=file, layer=assay.layer)
    if assay.format == "10x_h5":
        return open_10x_h5(path, file=file)
    found = mtx_files(path, file=file)
    confined = {}
    for role, member in found.items():
        try:
            confined[role] = confine(context.folder, member)
        except PathOutsideStudy as exc:  # a link in the folder pointing out of the study: nothing read from it
            raise InputError(Issue(f"{file}/{member.name}", "path_outside_study", "error",
                                   f"assay {assay.name!r}: {exc}; nothing read")) from exc
    return open_10x_mtx(path, confined, file=file)


def _annotation_table(assay: Assay, context: AssayContext) -> tuple[str, pl.DataFrame, int]:
    """(file, barcode / sample / cell type frame, header line) of ``cell_annotations``; columns checked."""
    assert assay.cell_annotations is not None
    assert assay.sample_column is not None
    assert assay.cell_type_column is not None
    try:
        (path,) = resolve_study_path(context.folder, assay.cell_annotations)
    except ValueError as exc:
        raise InputError(Issue("study.yaml", "path_outside_study", "error", f"assay {assay.name!r}: {exc}; "
                               "nothing read", column=f"assays.{assay.name}.cell_annotations")) from exc
    file = assay.cell_annotations
    with stream_checked(path, file=file, issues=context.issues):
        layout = sniff_table(path, issues=context.issues, display_name=file)
        lower = {h.lower(): h for h in reversed(layout.header)}
        barcode = next((lower[n] for n in BARCODE_COLUMNS if n in lower), layout.header[0])
        for wanted in (assay.sample_column, assay.cell_type_column):
            if wanted not in layout.header:
                key = "sample_column" if wanted == assay.sample_column else "cell_type_column"
                raise InputError(Issue(file, "missing_column", "error", f"{key} {wanted!r} is not a column of "
                                       f"the cell annotations; its columns: {layout.header}", layout.header_line,
                                       wanted))
        frame = read_table(layout, issues=context.issues).select(
            pl.col(barcode).alias("barcode"), pl.col(assay.sample_column).alias("sample"),
            pl.col(assay.cell_type_column).alias("cell_type"))
    return file, frame, layout.header_line


def annotate_cells(matrix: CellMatrix, assay: Assay, context: AssayContext) -> tuple[pl.DataFrame, str, int]:
    """One row per cell of the matrix, in its order: ``sample`` label and ``cell_type`` (null when missing).

    Returns (cells, file the labels come from, its header line) for sample-mapping issues.
    """
    assert assay.sample_column is not None
    assert assay.cell_type_column is not None
    if assay.cell_annotations is None:
        assert matrix.obs is not None  # the manifest requires cell_annotations for 10x layouts
        for key, wanted in (("sample_column", assay.sample_column), ("cell_type_column", assay.cell_type_column)):
            if wanted not in matrix.obs_columns:
                raise InputError(Issue(matrix.file, "missing_column", "error", f"{key} {wanted!r} is not an obs "
                                       f"column of the file (no obs/{wanted}); its obs columns: "
                                       f"{matrix.obs_columns}", column=wanted))
        repeated_obs = repeated_ids(matrix.barcodes)
        if repeated_obs:  # anndata reads it (with a warning): each row is still one cell with its own obs labels
            file, _, where = repeated_obs.location(matrix, "barcodes")
            context.issues.warning("duplicate_cell_id", f"{where}; each row is summed as its own cell with its obs "
                                   "labels", file=file)
        cells = pl.DataFrame({"sample": matrix.obs(assay.sample_column).tolist(),
                              "cell_type": matrix.obs(assay.cell_type_column).tolist()},
                             schema={"sample": pl.String, "cell_type": pl.String}, strict=False)
        return cells, matrix.file, 1
    repeated_cells = repeated_ids(matrix.barcodes)
    if repeated_cells:  # the annotations are joined by barcode: a repeated one would give two cells the same labels
        # (and one left unannotated is still two cells nobody can tell apart: a damaged or naively merged matrix)
        file, line, where = repeated_cells.location(matrix, "barcodes")
        raise InputError(Issue(file, "duplicate_cell_id", "error", f"{where}; the cell annotations are matched by "
                               "barcode, so each cell needs its own; the matrix is not read", line))
    file, table, header_line = _annotation_table(assay, context)
    repeated = table.filter(pl.col("barcode").is_duplicated())
    if repeated.height:
        context.issues.error("duplicate_barcode", f"{repeated['barcode'].n_unique()} barcode(s) are annotated more "
                             f"than once (first {repeated['barcode'][0]!r}); give each cell one row", file=file,
                             column="barcode")
    barcodes = pl.DataFrame({"barcode": matrix.barcodes.tolist()}, schema={"barcode": pl.String})
    cells = barcodes.join(table.unique("barcode", keep="first"), on="barcode", how="left", maintain_order="left")
    unknown = table.join(barcodes, on="barcode", how="anti")
    if unknown.height:
        context.issues.warning("unknown_barcode", f"{unknown.height} annotated barcode(s) are not cells of "
                               f"{matrix.file} (first {unknown['barcode'][0]!r}); ignored", file=file,
                               column="barcode")
    return cells.select("sample", "cell_type"), file, header_line


def _profiles(cells: pl.DataFrame, mapping: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray]:
    """(one row per (sample_id, cell_type) group with its cell count, group code per cell, -1 = left out)."""
    labelled = cells.with_row_index("cell").join(mapping.select(pl.col("column").alias("sample"), "sample_id"),
                                                 on="sample", how="left")
    usable = labelled.filter(pl.col("sample_id").is_not_null() & pl.col("cell_type").is_not_null())
    groups = (usable.group_by("sample_id", "cell_type").agg(pl.len().cast(pl.Int64).alias("n_cells"))
              .sort("sample_id", "cell_type").with_row_index("group"))
    coded = usable.join(groups.select("sample_id", "cell_type", "group"), on=["sample_id", "cell_type"])
    codes = np.full(cells.height, -1, dtype=np.int64)
    codes[coded["cell"].to_numpy()] = coded["group"].to_numpy()
    return groups, codes


def read_single_cell(assay: Assay, files: list[Path], context: AssayContext) -> AssayOutput:
    """Pseudobulk counts per (sample, cell type) of one single-cell matrix (see the module docstring)."""
    (path,) = files
    matrix = open_cells(assay, path, context)
    cells, label_file, header_line = annotate_cells(matrix, assay, context)
    cells = cells.with_columns(pl.col("sample", "cell_type").str.strip_chars().replace("", None))
    for column, key in (("sample", assay.sample_column), ("cell_type", assay.cell_type_column)):
        missing = cells[column].null_count()
        if missing:
            context.issues.warning("unannotated_cell", f"{missing} of {cells.height} cells have no {key} "
                                   f"({column}); they are left out of the pseudobulk", file=label_file, column=key)
    if not (cells["sample"].is_not_null() & cells["cell_type"].is_not_null()).any():  # nothing to sum: the assay
        raise InputError(Issue(label_file, "no_annotated_cells", "error",  # would load as an empty study
                               f"none of the {cells.height} cells has both a {assay.sample_column} and a "
                               f"{assay.cell_type_column}; nothing to sum into pseudobulk profiles", header_line))
    labels = cells["sample"].drop_nulls().unique(maintain_order=True).to_list()
    mapping = map_sample_columns(labels, assay=assay.name, samples=context.samples, sample_map=context.sample_map,
                                 issues=context.issues, file=label_file, header_line=header_line)
    groups, codes = _profiles(cells, mapping)

    is_gene = matrix.features["feature_type"].is_null() | (matrix.features["feature_type"] == GENE_EXPRESSION)
    if not is_gene.all():
        other = matrix.features.filter(~is_gene)["feature_type"].value_counts(sort=True)
        context.issues.info("non_gene_feature", "features that are not genes are left out: " + ", ".join(
            f"{n} {t}" for t, n in other.iter_rows()), file=matrix.file)
    kept = np.flatnonzero(is_gene.to_numpy())
    sums = pseudobulk(matrix, codes, n_groups=groups.height, features=kept)
    feature_ids = matrix.features["feature_id"].gather(kept)
    repeated = repeated_ids(feature_ids)
    if repeated:  # one row per (profile, feature): the first column of an id is kept, as a bulk matrix keeps the
        # first row of a repeated id; what the others held is said, never merged or dropped silently
        file, line, where = repeated.location(matrix, "features", rows=kept)
        left_out = float(sums[:, repeated.later_rows].sum())
        context.issues.warning("duplicate_feature", f"{where}; the first column of each is summed, the "
                               f"{repeated.later_rows.size} repeated column(s) are left out ({left_out:g} counts)",
                               file=file, line=line)
        unique = np.ones(kept.size, dtype=bool)
        unique[repeated.later_rows] = False
        kept, sums, feature_ids = kept[unique], sums[:, unique], feature_ids.filter(pl.Series(unique))
    resolved = resolve_features(feature_ids, assay, context)
    gene_ids = (pl.DataFrame({"feature_id": feature_ids})
                .join(resolved.filter(pl.col("status") == "mapped").select("feature_id", "gene_id")
                      .unique("feature_id"), on="feature_id", how="left", maintain_order="left")["gene_id"])
    tables = profile_tables(groups, sums, feature_ids=feature_ids, gene_ids=gene_ids, study_id=context.study_id,
                            assay=assay.name, file=context.relative(path))
    derived = groups.join(mapping.select("sample_id", "subject_id").unique("sample_id"), on="sample_id",
                          how="left").select(
        pl.concat_str("sample_id", pl.lit(PROFILE_SEPARATOR), "cell_type").alias("sample_id"),
        "subject_id", pl.col("sample_id").alias("parent_sample_id"), "cell_type")
    gene_map = gene_map_rows(resolved, study_id=context.study_id, assay=assay.name)
    metadata: dict[str, object] = {
        "format": assay.format, "matrix": matrix.element, "cells": matrix.n_cells,
        "cells_used": int((codes >= 0).sum()), "profiles": groups.height, "features": int(kept.size),
        "samples": int(groups["sample_id"].n_unique()), "cell_types": int(groups["cell_type"].n_unique()),
        "mapped_fraction": _mapped_fraction(gene_map)}
    expected = {"rna_counts": groups.height * int(kept.size), "sc_pseudobulk": groups.height * int(kept.size),
                "cell_type_composition": groups.height}
    return AssayOutput(tables, gene_map, mapping, metadata, expected, derived_samples=derived)


def profile_tables(groups: pl.DataFrame, sums: np.ndarray, *, feature_ids: pl.Series, gene_ids: pl.Series,
                   study_id: str, assay: str, file: str) -> dict[str, pl.LazyFrame]:
    """``sc_pseudobulk``, ``rna_counts`` and ``cell_type_composition`` rows of the summed profiles.

    ``groups``: one row per profile (sample_id, cell_type, n_cells) in the row order of ``sums`` (profiles x
    features); every feature of every profile is a row (zeros included, as a bulk count matrix has them).
    """
    n_groups, n_features = sums.shape
    profile_of_row = np.repeat(np.arange(n_groups), n_features)  # rows: profile-major, features in order
    feature_of_row = np.tile(np.arange(n_features), n_groups)
    profile_ids = groups.select(pl.concat_str("sample_id", pl.lit(PROFILE_SEPARATOR), "cell_type")).to_series()
    long = pl.DataFrame({  # every column gathered from its few distinct values (one contiguous chunk each)
        "study_id": study_id, "assay": assay,
        "sample_id": groups["sample_id"].gather(profile_of_row),
        "cell_type": groups["cell_type"].gather(profile_of_row),
        "gene_id": gene_ids.gather(feature_of_row), "feature_id": feature_ids.gather(feature_of_row),
        "count": sums.reshape(-1), "n_cells": groups["n_cells"].gather(profile_of_row), "file": file})
    counts = long.select(
        "study_id", "assay", profile_ids.gather(profile_of_row).alias("sample_id"), "gene_id", "feature_id",
        "count", pl.lit(None, pl.Float64).alias("length"), "file")
    total = pl.col("n_cells").sum().over("sample_id")
    composition = groups.select(pl.lit(study_id).alias("study_id"), pl.lit(assay).alias("assay"), "sample_id",
                                "cell_type", "n_cells", (pl.col("n_cells") / total).alias("fraction"),
                                pl.lit(file).alias("file"))
    return {"sc_pseudobulk": long.lazy(), "rna_counts": counts.lazy(), "cell_type_composition": composition.lazy()}
