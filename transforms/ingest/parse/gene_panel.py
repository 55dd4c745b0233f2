"""cBioPortal gene panels: which genes each sample's sequencing covered, so "not mutated" can differ from
"not profiled".

``data_gene_panel_matrix.txt`` (``SAMPLE_ID`` plus one column per profile, e.g. ``mutations``, holding a panel
``stable_id`` or ``NA``) and ``data_gene_panel_<id>.txt`` (``stable_id:`` and a tab-separated ``gene_list:``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import polars as pl

from transforms.ingest.parse.text import read_lines, read_table, sniff_table, stream_checked
from transforms.issues import InputError, Issue, IssueLog

#: panel IDs cBioPortal uses for genome-wide profiling: every gene counts as profiled
GENOME_WIDE = frozenset({"WES", "WXS", "WGS"})


def parse_gene_panels(matrix_path: Path, panel_paths: Sequence[Path], *, issues: IssueLog,
                      profile: str = "mutations", display_name: str | None = None) -> dict[str, set[str]]:
    """Sample label -> genes (symbols as written in the panel files) profiled by its panel in ``profile``.

    ``NA`` in the matrix means the sample was not profiled: it maps to an empty set (every gene unknown).
    Samples on a genome-wide panel (``WES``/``WXS``/``WGS``) are left out, which
    :func:`transforms.layers.variants.mutation_status_from_variants` reads as profiled for every gene. A panel ID with
    no panel file is an ``unknown_gene_panel`` error and its samples are left out too.
    """
    panels = {}
    for path in panel_paths:
        panel_id, genes = _read_panel(path)
        panels[panel_id] = genes
    with stream_checked(matrix_path, file=display_name or matrix_path.name, issues=issues):
        layout = sniff_table(matrix_path, issues=issues, separators="\t", display_name=display_name)
        by_lower = {h.lower(): h for h in layout.header}
        for needed in ("sample_id", profile.lower()):
            if needed not in by_lower:
                raise InputError(Issue(layout.display_name, "missing_column", "error",
                                       f"gene panel matrix has no {needed!r} column", layout.header_line, needed))
        matrix = read_table(layout, issues=issues).select(
            pl.col(by_lower["sample_id"]).alias("sample"), pl.col(by_lower[profile.lower()]).alias("panel"), "line")
        if matrix.height == 0:  # no sample would read as genome-wide: panel samples' untested genes as "not mutated"
            raise InputError(Issue(layout.display_name, "no_rows", "error", "gene panel matrix has a header but "
                                   "no samples; which genes were sequenced is unknown", layout.header_line))
    result: dict[str, set[str]] = {}
    for sample, panel, line in matrix.iter_rows():
        if panel is None or panel.strip() in ("", "NA"):
            result[sample] = set()
        elif panel in GENOME_WIDE:
            continue
        elif panel in panels:
            result[sample] = panels[panel]
        else:
            issues.error("unknown_gene_panel", f"panel {panel!r} has no data_gene_panel file", file=layout.display_name,
                         line=line, column=by_lower[profile.lower()], record=sample)
    return result


def _read_panel(path: Path) -> tuple[str, set[str]]:
    """``stable_id`` and gene set of one ``data_gene_panel_<id>.txt`` (``key: value`` lines)."""
    fields: dict[str, str] = {}
    for _, line in read_lines(path, file=path.name):
        key, sep, value = line.partition(":")
        if sep:
            fields[key.strip()] = value.strip()
    if "stable_id" not in fields or "gene_list" not in fields:
        raise InputError(Issue(path.name, "missing_field", "error",
                               "gene panel file needs 'stable_id:' and 'gene_list:' lines"))
    return fields["stable_id"], {g.strip() for g in fields["gene_list"].split("\t") if g.strip()}
