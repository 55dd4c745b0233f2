"""Study reports on disk: ``<warehouse>/reports/<study>/index.html`` and the index ``<warehouse>/reports/index.html``.

A report shows what readers see: it is read from the catalog (``warehouse.duckdb``) after the study was published,
never from a stage's unpublished commits. The page itself is built by :mod:`transforms.report.html`. A report is
rewritten only when the study's published set (its ``study_versions`` fingerprints) or the code changed, so an
unchanged rebuild writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
import polars as pl

from schemas.manifest import StudyManifest
from transforms.report.html import StudyReportData, signature_heatmap, study_report_html, warehouse_index_html
from warehouse.catalog import CatalogMissing, connect, refresh_catalog
from warehouse.lake import Lake
from warehouse.versions import code_fingerprint

REPORTS = "reports"
INDEX = "index.html"
OPTIONAL_VIEWS = ("gene_set_enrichment", "signature_scores", "omics_correlations")
"""Views other stages add; a report shows their section only when the catalog has the view."""
_ORDER_BY = ("padj", "fdr", "qvalue", "pvalue", "p_value")
_STAMP = ".fingerprint"


@dataclass(frozen=True)
class WrittenReport:
    path: Path
    unchanged: bool
    sections: list[str]


def report_path(study_id: str) -> str:
    """A study's report relative to the warehouse folder (the ``study_reports`` view says the same)."""
    return f"{REPORTS}/{study_id}/{INDEX}"


def _frame(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[object]) -> pl.DataFrame:
    return con.sql(sql, params=list(params)).pl()


def _colour_by(manifest: StudyManifest, attributes: pl.DataFrame) -> str | None:
    """The manifest's ``qc.color_by``, else the first contrast's factor, else the first attribute that splits the
    samples into 2 or more groups without giving each sample its own.
    """
    if manifest.qc.color_by:
        return manifest.qc.color_by
    if manifest.contrasts:
        return manifest.contrasts[0].factor
    n = attributes["sample_id"].n_unique()
    levels = attributes.group_by("attribute", maintain_order=True).agg(pl.col("value").n_unique().alias("n"))
    fits = levels.filter((pl.col("n") >= 2) & (pl.col("n") < n))["attribute"].to_list()
    return fits[0] if fits else None


def _explained(embeddings: pl.DataFrame) -> dict[str, list[float]]:
    """Share of variance of each stored component among the stored ones (all non-zero ones up to 11 samples)."""
    found = {}
    for (assay,), rows in embeddings.group_by("assay"):
        variance = rows.group_by("component").agg(pl.col("value").var()).sort("component")["value"]
        total = variance.sum()
        found[str(assay)] = [float(v / total) for v in variance] if total else []
    return found


def read_study_report(con: duckdb.DuckDBPyConnection, study_id: str, *, folder: Path) -> StudyReportData:
    """What the study's report shows, from the catalog session ``con`` and the DE plots in ``folder``."""
    p = [study_id]
    studies = _frame(con, "SELECT name, manifest FROM studies WHERE study_id = ?", p)
    if studies.height == 0:
        raise LookupError(f"study {study_id!r} is not published in the catalog")
    manifest = StudyManifest.model_validate_json(studies["manifest"][0])
    attributes = _frame(con, "SELECT sample_id, attribute, value FROM sample_attributes WHERE study_id = ?", p)
    embeddings = _frame(con, "SELECT * FROM sample_embeddings WHERE study_id = ? ORDER BY assay, sample_id, "
                             "component", p)
    views = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    optional: dict[str, pl.DataFrame] = {}
    images: dict[str, bytes] = {}
    for view in OPTIONAL_VIEWS:
        if view not in views:
            continue
        columns = [c for (c,) in con.execute("SELECT column_name FROM information_schema.columns WHERE "
                                             "table_name = ?", [view]).fetchall()]
        where = "WHERE study_id = ?" if "study_id" in columns else ""
        order = next((f"ORDER BY {c} NULLS LAST" for c in _ORDER_BY if c in columns), "")
        rows = _frame(con, f'SELECT * FROM "{view}" {where} {order} LIMIT 5000', p if where else [])
        optional[view] = rows
        if view == "signature_scores":
            image = signature_heatmap(rows, title=f"{study_id}: signature scores")
            if image is not None:
                images[view] = image
    plots = sorted(folder.glob("*_volcano.png")) + sorted(folder.glob("*_ma.png"))
    return StudyReportData(
        study_id=study_id, name=studies["name"][0],
        sample_qc=_frame(con, "SELECT * FROM sample_qc WHERE study_id = ? ORDER BY assay, sample_id", p),
        vst=_frame(con, "SELECT assay, sample_id, feature_id, vst AS value FROM rna_vst WHERE study_id = ?", p),
        embeddings=embeddings,
        clusters=_frame(con, "SELECT * FROM sample_clusters WHERE study_id = ?", p),
        attributes=attributes,
        coverage=_frame(con, "SELECT * FROM sample_omics_coverage WHERE study_id = ? ORDER BY sample_id", p),
        colour_by=_colour_by(manifest, attributes), top_genes=manifest.qc.top_genes,
        explained=_explained(embeddings),
        contrast_plots=[(p.stem, p.read_bytes()) for p in sorted(plots, key=lambda f: f.name)],
        optional=optional, images=images)


def _write(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a reader never opens half a page."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _published(con: duckdb.DuckDBPyConnection, study_id: str) -> list[tuple[object, ...]]:
    return con.execute("SELECT table_name, fingerprint FROM study_versions WHERE study_id = ? ORDER BY table_name",
                       [study_id]).fetchall()


def write_study_report(warehouse_dir: Path, study_id: str, *, lake: Lake) -> WrittenReport:
    """Write the study's report from the catalog (unless its published set and the code are unchanged) and the
    warehouse's report index.

    Called under the study's lock: the catalog is rebuilt first if it does not show the study's newest
    publication yet (``omicsdw build`` leaves that rebuild to this step; a concurrent build releases the lock
    before its catalog refresh).
    """
    folder = warehouse_dir / REPORTS / study_id
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / INDEX
    newest = (lake.scan("study_versions", study_id=study_id).select("table_name", "fingerprint")
              .sort("table_name").collect().rows())
    try:
        con = connect(warehouse_dir)
    except CatalogMissing:  # a build that rebuilds the catalog only at its end: its first study
        refresh_catalog(lake, warehouse_dir)
        con = connect(warehouse_dir)
    published = _published(con, study_id)
    if published != newest:  # published by this or another build, not yet in the catalog: rebuild it here
        con.close()
        refresh_catalog(lake, warehouse_dir)
        con = connect(warehouse_dir)
        published = _published(con, study_id)
    try:
        plots = sorted(f.name for f in folder.glob("*.png"))
        state = json.dumps({"published": published, "plots": plots, "code": code_fingerprint(),
                            "views": sorted(v for (v,) in con.execute(
                                "SELECT table_name FROM information_schema.tables").fetchall())})
        fingerprint = hashlib.blake2b(state.encode(), digest_size=16).hexdigest()
        stamp = folder / _STAMP
        if target.is_file() and stamp.is_file() and stamp.read_text() == fingerprint:
            page, unchanged = target.read_text(encoding="utf-8"), True
        else:
            page, unchanged = study_report_html(read_study_report(con, study_id, folder=folder)), False
            _write(target, page)
            stamp.write_text(fingerprint)
        _write(warehouse_dir / REPORTS / INDEX, warehouse_index_html(_frame(
            con, "SELECT study_id, name, report_path FROM study_reports", []).with_columns(
            pl.col("report_path").str.strip_prefix(f"{REPORTS}/").alias("path"))))
    finally:
        con.close()
    sections = [s.split('"')[0] for s in page.split('<section id="')[1:]]
    return WrittenReport(target, unchanged, sections)
