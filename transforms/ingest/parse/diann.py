r"""DIA-NN protein-group matrix (``report.pg_matrix.tsv``, DIA-NN 1.8 to 2.x): one row per group, one per run.

Run columns are headed by the raw file's full path (``D:\data\run.mzML``, ``/data/run.raw``, ``run.d``); the
sample label is its file stem. Every column that is not a known annotation column is a run, unless none of its
cells is a number (then it is kept out with an info issue). Empty cells are missing values.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.protein_table import (
    drop_unusable_ids,
    feature_row,
    features_frame,
    find_column,
    header_key,
    parse_protein_ids,
    protein_assay,
    run_label,
    split_names,
)
from transforms.ingest.parse.text import checks_stream, read_table, sniff_table
from transforms.issues import InputError, Issue, IssueLog

ANNOTATION_COLUMNS = frozenset({
    "protein group", "protein ids", "protein names", "genes", "first protein description", "n sequences",
    "n proteotypic sequences", "proteotypic", "protein q value", "pg q value", "global pg q value",
    "lib pg q value", "gene names", "description",
})


@checks_stream
def parse_diann(path: Path, *, issues: IssueLog, display_name: str | None = None) -> ParsedAssay:
    """Read a DIA-NN ``pg_matrix`` into protein records (one per run and protein group).

    ``feature_id`` is ``Protein.Group`` (``Protein.Ids`` when there is no group column). ``features`` take gene
    names from ``Genes``, entry names from ``Protein.Names`` (``TMA7_HUMAN``; other species stay recognisable)
    and the description from ``First.Protein.Description``; contaminant prefixes (``Cont_``, ``CON__``) are
    flagged, not dropped.
    """
    layout = sniff_table(path, issues=issues, display_name=display_name, comment_prefix=None)
    file = layout.display_name
    id_column = find_column(layout.header, "protein group", "protein ids")
    if id_column is None:
        raise InputError(Issue(file, "missing_column", "error",
                               "no 'Protein.Group' column: this is not a DIA-NN pg_matrix", layout.header_line))
    table = drop_unusable_ids(read_table(layout, issues=issues, comment_prefix=None), id_column,
                              issues=issues, file=file)
    if table.is_empty():
        raise InputError(Issue(file, "no_rows", "error", "file has a header but no protein groups",
                               layout.header_line))
    runs = [h for h in layout.header if header_key(h) not in ANNOTATION_COLUMNS]
    for header in [h for h in runs if _never_numeric(table[h])]:
        issues.info("not_a_run", "column has no numeric value: read as an annotation, not a run", file=file,
                    line=layout.header_line, column=header)
        runs.remove(header)
    if not runs:
        raise InputError(Issue(file, "no_samples", "error", "no run columns found", layout.header_line))

    ids_column = find_column(layout.header, "protein ids")
    genes = find_column(layout.header, "genes", "gene names")
    names = find_column(layout.header, "protein names")
    description = find_column(layout.header, "first protein description", "description")
    rows = []
    for row in table.iter_rows(named=True):
        ids = parse_protein_ids([row[id_column]])
        if not ids.accessions and ids_column:
            ids = parse_protein_ids([row[ids_column]])
        ids.entry_names = ids.entry_names or split_names(row[names] if names else None)
        rows.append(feature_row(row[id_column].strip(), row["line"], platform="ms",
                                protein_group=row[id_column].strip(),
                                gene_names=split_names(row[genes] if genes else None), ids=ids,
                                description=row[description] if description else None))
    features = features_frame(rows)
    n_contaminant = int(features["is_contaminant"].sum())
    if n_contaminant:
        issues.info("contaminant_flagged", f"{n_contaminant} contaminant protein groups flagged (kept)",
                    file=file, column=id_column)
    return protein_assay(table, id_column=id_column, samples={h: run_label(h) for h in runs}, features=features,
                         file=file, intensities=True, metadata={"n_contaminant": n_contaminant})


def _never_numeric(cells: pl.Series) -> bool:
    text = cells.str.strip_chars()
    present = text.filter(text.is_not_null() & (text != ""))
    return present.len() > 0 and present.cast(pl.Float64, strict=False).is_null().all()
