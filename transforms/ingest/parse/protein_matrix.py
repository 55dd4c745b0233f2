"""Protein matrices without a search-engine layout: RPPA antibodies, cBioPortal protein levels, plain tables.

Layouts read (through :func:`transforms.ingest.parse.matrix.parse_matrix`, so ragged rows, duplicate identifiers and
non-numeric cells are reported the same way as for any matrix):

- cBioPortal ``data_rppa.txt`` / ``data_protein_quantification.txt``: first column ``Composite.Element.REF`` =
  ``GENE1 GENE2|antibody`` (``BRAF|BRAF_pS399`` for mass-spec sites), samples as columns;
- antibody matrices without genes, e.g. mixOmics' ``breast.TCGA`` protein table (``transpose=True``: samples
  are rows, antibody names such as ``Akt_pS473`` or ``ER-alpha`` are the columns); their genes come from the
  shipped RPPA annotation when the protein groups are mapped (:func:`transforms.layers.proteins.annotated_genes`);
- protein groups (UniProt accessions, FASTA-style ``sp|P04637|P53_HUMAN``) or gene symbols x samples.

Values are taken as given (RPPA log2 ratios: zeros and negatives are data).
"""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.matrix import parse_matrix
from transforms.ingest.parse.protein_table import (
    feature_row,
    features_frame,
    matrix_assay,
    parse_protein_ids,
    split_names,
)
from transforms.issues import IssueLog

_NO_GENE = {"", "NA", "na", "N/A"}
_FASTA_LIKE = re.compile(r"^>?(?:sp|tr)\|", re.IGNORECASE)


def parse_protein_matrix(path: Path, *, issues: IssueLog, display_name: str | None = None, platform: str = "ms",
                         transpose: bool = False) -> ParsedAssay:
    """Read a protein or antibody matrix into protein records (one per sample and row identifier).

    ``feature_id`` is the identifier as given. ``features`` per identifier: ``GENES|antibody`` gives
    ``gene_names`` (space-separated; ``NA`` means none) and ``antibody``; accession lists give ``accessions``;
    on an RPPA ``platform`` any other identifier is an antibody name without genes, on MS a ``;``-joined list
    of gene names. ``is_phospho`` marks site-specific antibodies and sites (``_pS473``, ``-pY1068``).
    """
    assay = parse_matrix(path, issues=issues, display_name=display_name, transpose=transpose)
    identifiers = assay.features if assay.features is not None else pl.DataFrame({"feature_id": [], "line": []})
    rows = [_feature(feature_id, line, platform=platform)
            for feature_id, line in identifiers.select("feature_id", "line").iter_rows()]
    return matrix_assay(assay, features_frame(rows))


def _feature(feature_id: str, line: int | None, *, platform: str) -> dict[str, object]:
    if "|" in feature_id and not _FASTA_LIKE.match(feature_id):
        genes, _, antibody = feature_id.rpartition("|")
        names = [g for g in re.split(r"[\s,;]+", genes) if g not in _NO_GENE]
        return feature_row(feature_id, line, platform=platform, gene_names=names, antibody=antibody.strip() or None,
                           is_decoy=False, is_contaminant=False)
    ids = parse_protein_ids([feature_id])
    if ids.accessions:
        return feature_row(feature_id, line, platform=platform, protein_group=feature_id, ids=ids)
    if platform == "rppa":
        return feature_row(feature_id, line, platform=platform, antibody=feature_id, is_decoy=False,
                           is_contaminant=False)
    return feature_row(feature_id, line, platform=platform, gene_names=split_names(feature_id),
                       is_decoy=False, is_contaminant=False)
