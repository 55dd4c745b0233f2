"""Parsers: one module per file layout, each turning a file into its native long frame.

Every parser has the signature ``parse_<format>(path, *, issues, display_name=None, **options) -> ParsedAssay``
and never maps genes or samples itself (that is :mod:`transforms.ingest.harmonise`'s job), so a new format adds a
parser, not a new path through the system.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import polars as pl

if TYPE_CHECKING:
    from transforms.ingest.parse.matrix import WideMatrix


@dataclass
class ParsedAssay:
    """What a parser hands to harmonisation.

    ``records``: long LazyFrame, one row per record of the file. Always has ``column`` (the sample label exactly as
    written in the file: a header cell or a ``Tumor_Sample_Barcode``), ``feature_id`` (the identifier as given; null
    for segments) and ``line`` (1-based line of the record in the file, for issues and quarantine), plus the value
    columns of the target table (``value`` for matrices; variant / segment / protein columns otherwise).
    ``features``: one row per ``feature_id`` with per-feature annotations (e.g. ``length`` for TPM, ``gene_names``
    and ``accessions`` for protein groups), or None.
    ``columns``: the sample labels in file order (for sample mapping and duplicate checks).
    ``metadata``: facts to show in Dagster (e.g. the strandedness chosen, the CSQ rule, rows filtered);
    ``header_line`` (the line holding the sample labels) is where sample-mapping issues point.
    ``wide``: for a features x samples matrix, the frame ``records`` is the unpivot of (see :meth:`matrix`).
    """

    records: pl.LazyFrame
    columns: list[str]
    features: pl.DataFrame | None = None
    metadata: dict[str, object] = field(default_factory=dict)
    wide: WideMatrix | None = None

    def matrix(self) -> WideMatrix | None:
        """The wide matrix behind ``records`` while ``records`` is still its plain unpivot, else None.

        The RNA reader asks it whether the file was read typed (no value to flag); a parser that reshapes
        ``records`` afterwards (one-sample formats relabel ``column``) loses it.
        """
        return self.wide if self.wide is not None and self.wide.records is self.records else None
