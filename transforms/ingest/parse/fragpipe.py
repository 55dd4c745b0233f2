"""FragPipe (IonQuant / Philosopher) ``combined_protein.tsv``: one row per protein, quantity columns per sample.

Sample columns are ``<S> MaxLFQ Intensity``, ``<S> Intensity``, ``<S> Razor Intensity``, ``<S> Unique
Intensity`` (next to ``<S> Spectral Count`` and friends, which are not abundances). Zeros are missing values.
Decoy (``rev_``) and contaminant (``contam_``) entries are flagged in ``features``, not dropped.
"""

from __future__ import annotations

import re
from pathlib import Path

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.protein_table import (
    drop_unusable_ids,
    feature_row,
    features_frame,
    find_column,
    parse_protein_ids,
    protein_assay,
    quantity_columns,
    split_names,
)
from transforms.ingest.parse.text import checks_stream, read_table, sniff_table
from transforms.issues import InputError, Issue, IssueLog

_SEP = r"[ ._]"
_PLAIN = rf"^(?!combined{_SEP})(.+?)(?<!maxlfq)(?<!unique)(?<!total)(?<!razor)"
QUANTITIES = {
    "lfq": re.compile(rf"^(?!combined{_SEP})(.+?){_SEP}maxlfq{_SEP}intensity$", re.IGNORECASE),
    "intensity": re.compile(rf"{_PLAIN}{_SEP}intensity$", re.IGNORECASE),
    "razor_intensity": re.compile(rf"^(?!combined{_SEP})(.+?)(?<!maxlfq){_SEP}razor{_SEP}intensity$",
                                  re.IGNORECASE),
    "unique_intensity": re.compile(rf"^(?!combined{_SEP})(.+?)(?<!maxlfq){_SEP}unique{_SEP}intensity$",
                                   re.IGNORECASE),
}


@checks_stream
def parse_fragpipe(path: Path, *, issues: IssueLog, display_name: str | None = None,
                   quantity: str = "lfq") -> ParsedAssay:
    """Read a FragPipe ``combined_protein.tsv`` into protein records (one per sample and protein).

    Parameters
    ----------
    quantity
        ``lfq`` (``<S> MaxLFQ Intensity``), ``intensity``, ``razor_intensity`` or ``unique_intensity``; one
        without columns in the file is an error naming the quantities present.

    ``feature_id`` is ``Protein`` (``sp|P04637|P53_HUMAN``) or, without it, ``Protein ID``. ``protein_group``
    joins it with the ``Indistinguishable Proteins``; accessions and entry names come from all of them, gene
    names from ``Gene``.
    """
    layout = sniff_table(path, issues=issues, display_name=display_name, comment_prefix=None)
    file = layout.display_name
    id_column = find_column(layout.header, "protein", "protein id")
    if id_column is None:
        raise InputError(Issue(file, "missing_column", "error",
                               "no 'Protein' or 'Protein ID' column: this is not a FragPipe protein table",
                               layout.header_line))
    samples = quantity_columns(layout.header, QUANTITIES, quantity=quantity, file=file)
    table = drop_unusable_ids(read_table(layout, issues=issues, comment_prefix=None), id_column,
                              issues=issues, file=file)
    if table.is_empty():
        raise InputError(Issue(file, "no_rows", "error", "file has a header but no proteins", layout.header_line))

    accession = find_column(layout.header, "protein id")
    entry = find_column(layout.header, "entry name")
    genes = find_column(layout.header, "gene", "genes", "gene names")
    others = find_column(layout.header, "indistinguishable proteins")
    description = find_column(layout.header, "description", "protein description")
    rows = []
    for row in table.iter_rows(named=True):
        leading = row[id_column].strip()
        members = split_names(row[others] if others else None, separators=",;")
        ids = parse_protein_ids([leading, *members])
        if accession and row[accession] and not ids.accessions:
            ids = parse_protein_ids([row[accession], *members])
        if entry and row[entry] and row[entry].strip() not in ids.entry_names:
            ids.entry_names.insert(0, row[entry].strip())
        rows.append(feature_row(leading, row["line"], platform="ms", protein_group=";".join([leading, *members]),
                                gene_names=split_names(row[genes] if genes else None, separators=";,"),
                                ids=ids, description=row[description] if description else None))
    return protein_assay(table, id_column=id_column, samples=samples, features=features_frame(rows), file=file,
                         intensities=True, metadata={"quantity": quantity})
