"""The gene dimension in the lake: written from the shipped snapshot when missing or when its files changed.

Study runs call :func:`ensure_gene_reference` before ingest, so a fresh warehouse never maps genes against an
empty ``genes`` table, whichever job or command builds it first.
"""

from __future__ import annotations

from transforms.ingest.genes import GeneReference, gene_xrefs_table, genes_table
from warehouse.commit import Commit, commit_frames, unchanged
from warehouse.lake import Lake

GENE_TABLES = ["genes", "gene_xrefs"]


def write_gene_reference(lake: Lake, reference: GeneReference | None = None
                         ) -> tuple[Commit, dict[str, dict[str, object]]]:
    """Commit both gene tables from ``reference`` (default: the shipped one) unless they already hold it."""
    reference = reference or GeneReference.load()
    release = str(reference.release.get("source", ""))
    metadata: dict[str, dict[str, object]] = {t: {"release": release, "fingerprint": reference.fingerprint}
                                              for t in GENE_TABLES}
    lake.ensure_tables(GENE_TABLES)
    done = unchanged(lake, GENE_TABLES, study_id=None, fingerprint=reference.fingerprint)
    if done is not None:
        return done, metadata
    frames = [("genes", genes_table(reference)), ("gene_xrefs", gene_xrefs_table(reference))]
    return commit_frames(lake, frames, tables=GENE_TABLES, study_id=None, fingerprint=reference.fingerprint), metadata


def ensure_gene_reference(lake: Lake) -> bool:
    """Write the gene tables if they are missing, empty or from another snapshot; True when they were written."""
    reference = GeneReference.load()
    if all(lake.last_fingerprint(t, None) == reference.fingerprint for t in GENE_TABLES):
        return False
    commit, _ = write_gene_reference(lake, reference)
    if not commit.ok:
        raise RuntimeError(f"the shipped gene reference breaks its contract: {commit.failures}")
    return True
