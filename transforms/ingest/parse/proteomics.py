"""One entry point for protein abundance files: the manifest's ``format`` picks the parser.

Every parser returns the same records (``column``, ``feature_id``, ``line``, ``abundance``, ``problem``,
``raw``) and features (:data:`transforms.ingest.parse.protein_table.FEATURE_SCHEMA`), so
:func:`transforms.layers.proteins.map_protein_groups` and the ``protein_abundance`` table do not care which search
engine or array wrote the file.
"""

from __future__ import annotations

from pathlib import Path

from transforms.ingest.parse import ParsedAssay
from transforms.ingest.parse.diann import parse_diann
from transforms.ingest.parse.fragpipe import parse_fragpipe
from transforms.ingest.parse.maxquant import parse_maxquant
from transforms.ingest.parse.protein_matrix import parse_protein_matrix
from transforms.issues import IssueLog

FORMATS = ("maxquant", "diann", "fragpipe", "matrix", "rppa")


def parse_protein_file(path: Path, *, issues: IssueLog, display_name: str | None = None, format: str,
                       platform: str = "ms", quantity: str = "lfq", transpose: bool = False) -> ParsedAssay:
    """Parse one protein abundance file of the given ``format`` (see :data:`FORMATS`).

    ``quantity`` applies to MaxQuant (lfq, intensity, ibaq) and FragPipe (lfq, intensity, razor_intensity,
    unique_intensity); ``platform`` and ``transpose`` (samples as rows) to ``matrix`` and ``rppa``, which share
    one reader. ``rppa`` always means platform ``rppa``.
    """
    if format == "maxquant":
        return parse_maxquant(path, issues=issues, display_name=display_name, quantity=quantity)
    if format == "diann":
        return parse_diann(path, issues=issues, display_name=display_name)
    if format == "fragpipe":
        return parse_fragpipe(path, issues=issues, display_name=display_name, quantity=quantity)
    if format in ("matrix", "rppa"):
        return parse_protein_matrix(path, issues=issues, display_name=display_name,
                                    platform="rppa" if format == "rppa" else platform, transpose=transpose)
    raise ValueError(f"format must be one of {', '.join(FORMATS)}; got {format!r}")
