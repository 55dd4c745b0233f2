"""MaxQuant ``proteinGroups.txt``: one row per protein group, one quantity column per sample and quantity.

Sample labels come from the quantity columns (``LFQ intensity H1`` -> ``H1``, ``Intensity H1``, ``iBAQ H1``).
Zeros are MaxQuant's missing values. Decoy (``Reverse``), contaminant (``Potential contaminant``) and
site-only (``Only identified by site``) groups are dropped by default, counted in one info issue per category
and listed in ``metadata['dropped']``; they are never dropped silently.
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.protein_table import (
    ProteinIds,
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

QUANTITIES = {
    "lfq": re.compile(r"^lfq[ ._]intensity[ ._](.+)$", re.IGNORECASE),
    "intensity": re.compile(r"^intensity[ ._](.+)$", re.IGNORECASE),
    "ibaq": re.compile(r"^ibaq[ ._](?!peptides$)(.+)$", re.IGNORECASE),
}

# Category -> its flag column (folded header names, newest MaxQuant first) and how an issue names it.
_FLAGS = {
    "reverse": ("reverse",),
    "contaminant": ("potential contaminant", "contaminant"),
    "only_by_site": ("only identified by site",),
}
_LABELS = {"reverse": "reverse (decoy)", "contaminant": "potential contaminant",
           "only_by_site": "only-identified-by-site"}


@checks_stream
def parse_maxquant(path: Path, *, issues: IssueLog, display_name: str | None = None, quantity: str = "lfq",
                   keep_flagged: bool = False) -> ParsedAssay:
    """Read a MaxQuant ``proteinGroups.txt`` into protein records (one per sample and kept group).

    Parameters
    ----------
    quantity
        ``lfq`` (``LFQ intensity <S>``), ``intensity`` (``Intensity <S>``) or ``ibaq`` (``iBAQ <S>``); a quantity
        without columns in the file is an error naming the quantities present.
    keep_flagged
        Keep reverse, contaminant and site-only groups (flagged in ``features``) instead of dropping them.

    ``feature_id`` is ``Protein IDs`` as given; ``features`` hold the accessions (FASTA-style entries
    ``sp|P04637|P53_HUMAN`` are split into accession and entry name), ``Gene names`` (or the ``GN=`` of the
    ``Fasta headers`` when empty), and the three flags.
    """
    layout = sniff_table(path, issues=issues, display_name=display_name, comment_prefix=None)
    file = layout.display_name
    id_column = find_column(layout.header, "protein ids", "majority protein ids", "protein group")
    if id_column is None:
        raise InputError(Issue(file, "missing_column", "error",
                               "no 'Protein IDs' column: this is not a MaxQuant proteinGroups file",
                               layout.header_line))
    samples = quantity_columns(layout.header, QUANTITIES, quantity=quantity, file=file)
    table = drop_unusable_ids(read_table(layout, issues=issues, comment_prefix=None), id_column,
                              issues=issues, file=file)
    if table.is_empty():
        raise InputError(Issue(file, "no_rows", "error", "file has a header but no protein groups",
                               layout.header_line))

    flags = {name: find_column(layout.header, *keys) for name, keys in _FLAGS.items()}
    flagged = {name: (pl.col(col).str.strip_chars() == "+").fill_null(False) if col else pl.lit(False)
               for name, col in flags.items()}
    table = table.with_columns(**{f"_{name}": expr for name, expr in flagged.items()})
    dropped: dict[str, list[str]] = {}
    if not keep_flagged:
        for name in _FLAGS:
            hit = table.filter(pl.col(f"_{name}"))
            dropped[name] = hit[id_column].to_list()
            if hit.height:
                issues.info(f"{name}_dropped", f"{hit.height} {_LABELS[name]} protein groups dropped "
                            f"(column {flags[name]!r} is '+')", file=file, column=flags[name])
        table = table.filter(~pl.any_horizontal(*[pl.col(f"_{name}") for name in _FLAGS]))

    genes = find_column(layout.header, "gene names", "gene name", "genes")
    headers = find_column(layout.header, "fasta headers")
    names = find_column(layout.header, "protein names")
    rows = [
        feature_row(
            row[id_column].strip(), row["line"], platform="ms", protein_group=row[id_column].strip(),
            gene_names=split_names(row[genes] if genes else None),
            ids=_ids(row[id_column], row[headers] if headers else None),
            description=next(iter(split_names(row[names] if names else None)), None),
            is_decoy=row["_reverse"] if flags["reverse"] else None,
            is_contaminant=row["_contaminant"] if flags["contaminant"] else None,
            only_by_site=row["_only_by_site"] if flags["only_by_site"] else None,
        )
        for row in table.iter_rows(named=True)
    ]
    metadata = {"quantity": quantity, "dropped": dropped, "n_dropped": len(set().union(*dropped.values())),
                "flag_columns": flags}
    return protein_assay(table, id_column=id_column, samples=samples, features=features_frame(rows), file=file,
                         intensities=True, metadata=metadata)


def _ids(protein_ids: str, fasta_headers: str | None) -> ProteinIds:
    """Accessions from ``Protein IDs``; entry names and ``GN=`` genes from ``Fasta headers`` when filled."""
    ids = parse_protein_ids([protein_ids])
    if fasta_headers:
        from_headers = parse_protein_ids([fasta_headers])
        ids.entry_names = ids.entry_names or from_headers.entry_names
        ids.header_genes = ids.header_genes or from_headers.header_genes
    return ids
