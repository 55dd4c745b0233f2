"""Study reports on disk: ``<warehouse>/reports/<study>/index.html`` and the index ``<warehouse>/reports/index.html``.

A report shows what readers see: it is read after the study was published, through the catalog's views over the
study's published files (the files its ``study_versions`` entry names, as in ``warehouse.duckdb``), never from a
stage's unpublished commits. The page itself is built by :mod:`transforms.report.html`. A report is
rewritten only when the study's published set (its ``study_versions`` fingerprints) or the code changed, so an
unchanged rebuild writes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import duckdb
import polars as pl

from schemas.manifest import StudyManifest
from transforms.report.html import (
    BIOMARKER_P,
    BIOMARKER_ROWS,
    ENRICHMENT_FDR,
    ENRICHMENT_ROWS,
    StudyReportData,
    attempt_note_html,
    study_report_html,
    warehouse_index_html,
)
from transforms.signatures.plots import TOP_SETS
from warehouse.catalog import STATUS_VIEW, study_visible_files, view_names, view_session, visible_files
from warehouse.lake import Lake
from warehouse.versions import code_fingerprint

REPORTS = "reports"
INDEX = "index.html"
_STAMP = ".fingerprint"

_TOP_OF_VALS = """
), per_gene AS (
    SELECT assay, feature_id, var_samp(value) AS variance, count(value) AS n FROM vals GROUP BY assay, feature_id
), complete AS (
    SELECT * FROM per_gene QUALIFY n = max(n) OVER (PARTITION BY assay)
), top AS (
    SELECT assay, feature_id FROM complete
    QUALIFY row_number() OVER (PARTITION BY assay ORDER BY variance DESC, feature_id) <= $top
)
SELECT v.assay, v.sample_id, v.feature_id, v.value
FROM vals v JOIN top t ON v.assay = t.assay AND v.feature_id = t.feature_id
ORDER BY v.assay, v.feature_id, v.sample_id
"""
"""The ranking shared by the two queries below, over their ``vals`` (assay, sample_id, feature_id, value)."""

TOP_VARIABLE_VALUES = """
WITH vals AS NOT MATERIALIZED (
    SELECT assay, sample_id, feature_id, vst AS value FROM rna_vst WHERE study_id = $study
    UNION ALL
    SELECT assay, sample_id, feature_id, log2_cpm FROM rna_normalized
    WHERE study_id = $study AND source = 'counts' AND log2_cpm IS NOT NULL
      AND assay NOT IN (SELECT DISTINCT assay FROM rna_vst WHERE study_id = $study)""" + _TOP_OF_VALS
"""Log-scale values (VST, else log2 CPM) of each count assay's ``$top`` most variable complete genes (variance
ddof = 1, as R's rowVars; ties by feature id): aggregated by DuckDB over the study's rows, so the report holds
``top x samples`` values, never the study's matrix."""

TOP_VARIABLE_VST = """
WITH vals AS NOT MATERIALIZED (
    SELECT assay, sample_id, feature_id, vst AS value FROM rna_vst WHERE study_id = $study""" + _TOP_OF_VALS
""":data:`TOP_VARIABLE_VALUES` of a study whose every count assay has a VST (the usual case): the same rows, read
from ``rna_vst`` alone (the general query also scans ``rna_normalized`` twice for the log2 CPM of assays without
one: ~30 % of the report's CPU at 20,000 x 1,000)."""

COUNT_ASSAYS_WITHOUT_VST = """
SELECT DISTINCT assay FROM rna_normalized
WHERE study_id = $study AND source = 'counts'
  AND assay NOT IN (SELECT DISTINCT assay FROM rna_vst WHERE study_id = $study)
"""

TOP_VARIABLE_SETS = """
WITH ssgsea AS NOT MATERIALIZED (
    SELECT assay, library, gene_set, sample_id, score FROM signature_scores
    WHERE study_id = $study AND method = 'ssgsea' AND score IS NOT NULL
), top AS (
    SELECT assay, library, gene_set FROM ssgsea GROUP BY assay, library, gene_set
    QUALIFY row_number() OVER (PARTITION BY assay ORDER BY var_samp(score) DESC NULLS LAST, library, gene_set) <= $top
)
SELECT s.assay, s.library, s.gene_set, s.sample_id, s.score
FROM ssgsea s JOIN top t USING (assay, library, gene_set)
ORDER BY s.assay, s.library, s.gene_set, s.sample_id
"""
"""ssGSEA scores of each assay's ``$top`` most variable gene sets (the selection the signatures stage draws as
its heatmap, :func:`transforms.signatures.plots.top_variable_scores`; the report shows that PNG)."""


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


def top_variable_values(con: duckdb.DuckDBPyConnection, study_id: str, *, top_genes: int) -> pl.DataFrame:
    """``assay``, ``sample_id``, ``feature_id``, ``value`` of each count assay's ``top_genes`` most variable genes."""
    without_vst = con.sql(COUNT_ASSAYS_WITHOUT_VST, params={"study": study_id}).fetchall()
    return con.sql(TOP_VARIABLE_VALUES if without_vst else TOP_VARIABLE_VST,
                   params={"study": study_id, "top": top_genes}).pl()


def top_variable_sets(con: duckdb.DuckDBPyConnection, study_id: str, *, top: int = TOP_SETS) -> pl.DataFrame:
    """``assay``, ``library``, ``gene_set``, ``sample_id``, ``score`` (ssGSEA) of each assay's ``top`` most variable
    gene sets.
    """
    return con.sql(TOP_VARIABLE_SETS, params={"study": study_id, "top": top}).pl()


TOP_ENRICHMENT = """
SELECT * FROM gene_set_enrichment
WHERE study_id = $study AND (method NOT IN ('ora_up', 'ora_down') OR leading_edge IS NOT NULL)
ORDER BY fdr NULLS LAST, pvalue NULLS LAST, gene_set, contrast, method, library
LIMIT $rows
"""
"""The study's enrichment rows of lowest FDR, leaving out ORA sets holding no DE gene: their p = 1 is no result
(with no gene at padj < 0.05 every set is one, and 30 of them at p = 1 filled the report's table)."""

ENRICHMENT_TESTS = """
SELECT contrast, method, count(*) AS sets_tested,
       count(*) FILTER (WHERE method = 'prerank' OR leading_edge IS NOT NULL) AS sets_with_result,
       count(*) FILTER (WHERE fdr < $fdr) AS sets_at_fdr
FROM gene_set_enrichment WHERE study_id = $study
GROUP BY contrast, method ORDER BY contrast, method
"""
"""Per contrast and method: sets tested, sets with a result (ORA: holding a DE gene; prerank: every set), sets
below the FDR threshold."""


def top_enrichment(con: duckdb.DuckDBPyConnection, study_id: str, *,
                   rows: int = ENRICHMENT_ROWS) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The ``rows`` enrichment results of lowest FDR (no ORA set without a DE gene) and the tests per contrast
    and method (``ENRICHMENT_TESTS``), so the report can say what was tested when nothing was found.
    """
    top = con.sql(TOP_ENRICHMENT, params={"study": study_id, "rows": rows}).pl()
    tests = con.sql(ENRICHMENT_TESTS, params={"study": study_id, "fdr": ENRICHMENT_FDR}).pl()
    return top, tests


BIOMARKER_CANDIDATES = """
SELECT b.contrast, b.gene_id, g.symbol, b.rna_log2fc, b.rna_padj, b.rna_method, b.protein_difference,
       b.protein_pvalue, b.rna_protein_r, b.concordant
FROM biomarker_candidates b LEFT JOIN genes g USING (gene_id)
WHERE b.study_id = $study
QUALIFY row_number() OVER (PARTITION BY b.contrast ORDER BY b.rna_padj NULLS LAST, b.protein_pvalue NULLS LAST,
                                                            b.gene_id) <= $rows
ORDER BY b.contrast, b.rna_padj NULLS LAST, b.protein_pvalue NULLS LAST, b.gene_id
"""
"""Each contrast's ``$rows`` candidates of lowest RNA adjusted p (then protein p), with the gene's symbol."""

BIOMARKER_TESTS = """
SELECT contrast, any_value(rna_method) AS rna_method, count(*) AS genes,
       count(*) FILTER (WHERE rna_padj < $padj) AS rna_padj_lt,
       count(*) FILTER (WHERE protein_pvalue < $padj) AS protein_pvalue_lt,
       count(*) FILTER (WHERE rna_padj < $padj AND protein_pvalue < $padj AND concordant) AS both_concordant
FROM biomarker_candidates WHERE study_id = $study GROUP BY contrast ORDER BY contrast
"""
"""Per contrast: genes with RNA and protein tested, and how many pass each threshold (both, same sign)."""


def top_biomarker_candidates(con: duckdb.DuckDBPyConnection, study_id: str, *,
                             rows: int = BIOMARKER_ROWS) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Each contrast's ``rows`` ``biomarker_candidates`` of lowest RNA padj, and the counts per contrast
    (:data:`BIOMARKER_TESTS`, thresholds ``BIOMARKER_P``): bounded reads, whatever the study's size.
    """
    top = con.sql(BIOMARKER_CANDIDATES, params={"study": study_id, "rows": rows}).pl()
    tests = con.sql(BIOMARKER_TESTS, params={"study": study_id, "padj": BIOMARKER_P}).pl()
    return top, tests


def read_study_report(con: duckdb.DuckDBPyConnection, study_id: str, *, folder: Path) -> StudyReportData:
    """What the study's report shows, from a session with the catalog's views ``con`` (:func:`study_session`, or
    the catalog itself) and the stages' plots in ``folder``.

    Every read is bounded by design (top genes, top sets, one correlation per gene, the lowest FDRs), whatever the
    study's size.
    """
    p = [study_id]
    studies = _frame(con, "SELECT name, manifest FROM studies WHERE study_id = ?", p)
    if studies.height == 0:
        raise LookupError(f"study {study_id!r} is not published in the catalog")
    manifest = StudyManifest.model_validate_json(studies["manifest"][0])
    attributes = _frame(con, "SELECT sample_id, attribute, value FROM sample_attributes WHERE study_id = ?", p)
    embeddings = _frame(con, "SELECT * FROM sample_embeddings WHERE study_id = ? ORDER BY assay, sample_id, "
                             "component", p)
    coverage = _frame(con, "SELECT * FROM sample_omics_coverage WHERE study_id = ? ORDER BY sample_id", p)
    views = {name for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    enrichment = signatures = rna_protein = candidates = None
    enrichment_tests = candidate_tests = None
    if "gene_set_enrichment" in views:
        enrichment, enrichment_tests = top_enrichment(con, study_id)
    if "signature_scores" in views:
        signatures = top_variable_sets(con, study_id)
    has_rna = coverage.height > 0 and bool(coverage.select(pl.col("has_rna_counts") | pl.col("has_rna_abundance"))
                                           .to_series().any())
    has_protein = coverage.height > 0 and bool(coverage["has_protein_abundance"].any())
    if "omics_correlations" in views and has_rna and has_protein:
        rna_protein = _frame(con, "SELECT gene_id, r, n FROM omics_correlations WHERE study_id = ? AND layer_x = "
                                  "'rna' AND layer_y = 'protein' AND method = 'spearman' AND r IS NOT NULL", p)
    if "biomarker_candidates" in views and has_rna and has_protein:
        candidates, candidate_tests = top_biomarker_candidates(con, study_id)
    plots = sorted(folder.glob("*_volcano.png")) + sorted(folder.glob("*_ma.png"))
    return StudyReportData(
        study_id=study_id, name=studies["name"][0],
        sample_qc=_frame(con, "SELECT * FROM sample_qc WHERE study_id = ? ORDER BY assay, sample_id", p),
        vst=top_variable_values(con, study_id, top_genes=manifest.qc.top_genes),
        embeddings=embeddings,
        clusters=_frame(con, "SELECT * FROM sample_clusters WHERE study_id = ?", p),
        attributes=attributes, coverage=coverage,
        colour_by=_colour_by(manifest, attributes), top_genes=manifest.qc.top_genes,
        explained=_explained(embeddings),
        contrast_plots=[(f.stem, f.read_bytes()) for f in sorted(plots, key=lambda f: f.name)],
        enrichment=enrichment, enrichment_tests=enrichment_tests,
        enrichment_plots=[(f.name.removesuffix("_enrichment_dots.png"), f.read_bytes())
                          for f in sorted(folder.glob("*_enrichment_dots.png"))] if enrichment is not None else [],
        signature_scores=signatures,
        signature_plots=[(f.name.removesuffix("_ssgsea_heatmap.png"), f.read_bytes())
                         for f in sorted(folder.glob("*_ssgsea_heatmap.png"))] if signatures is not None else [],
        rna_protein=rna_protein, biomarker_candidates=candidates, biomarker_tests=candidate_tests,
        contrasts=[c.name for c in manifest.contrasts])


def _write(path: Path, text: str) -> None:
    """Write through a temporary file and a rename, so a reader never opens half a page."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def write_study_report(warehouse_dir: Path, study_id: str, *, lake: Lake, plots: bool = True,
                       index: bool = True) -> WrittenReport:
    """Write the study's report (unless its published set, ``plots`` and the code are unchanged) and the
    warehouse's report index; ``plots=False``: tables and text only (no plot drawn or embedded); ``index=False``:
    not the index (the caller writes it, as ``omicsdw build`` does with its catalog rebuilds).

    The report reads the catalog's views over this study's published files only (:func:`report_session`), so it
    shows what readers see of the study without binding every study's files, and needs no catalog rebuild first
    (``omicsdw build`` rebuilds the catalog on its own schedule); an unchanged report opens no session. Called
    under the study's lock.
    """
    folder = warehouse_dir / REPORTS / study_id
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / INDEX
    ledger = (lake.scan("study_versions", study_id=study_id).select("table_name", "fingerprint", "files")
              .sort("table_name").collect())
    published = ledger.select("table_name", "fingerprint").rows()
    pngs = sorted(f.name for f in folder.glob("*.png"))
    state = json.dumps({"published": published, "plots": pngs, "draw": plots, "code": code_fingerprint(),
                        "views": view_names()})
    fingerprint = hashlib.blake2b(state.encode(), digest_size=16).hexdigest()
    stamp = folder / _STAMP
    if target.is_file() and stamp.is_file() and stamp.read_text() == fingerprint:
        page, unchanged = target.read_text(encoding="utf-8"), True
    else:
        con = report_session(lake, study_id, ledger=ledger)
        try:
            data = read_study_report(con, study_id, folder=folder)
        finally:
            con.close()
        if not plots:  # stage PNGs may be of older results: none is shown
            data = replace(data, plots=False, contrast_plots=[], enrichment_plots=[], signature_plots=[])
        page, unchanged = study_report_html(data), False
        _write(target, page)
        (folder / _NOTE).unlink(missing_ok=True)  # a new page of the published version: no note in it (yet)
        stamp.write_text(fingerprint)
    if index:
        write_report_index(lake, warehouse_dir)
    sections = [s.split('"')[0] for s in page.split('<section id="')[1:]]
    return WrittenReport(target, unchanged, sections)


def study_session(lake: Lake, study_id: str, *, ledger: pl.DataFrame | None = None) -> duckdb.DuckDBPyConnection:
    """In-memory session with every view of the catalog (tables and joined views) over one study's published
    files: the rows a catalog session shows of the study, for a cost that does not grow with the warehouse.

    ``ledger``: the study's ``study_versions`` rows (``table_name``, ``files``), when the caller read them already.
    """
    return view_session(lake, study_visible_files(lake, study_id, ledger=ledger))


REPORT_TABLES = ("biomarker_candidates", "cn_segments", "copy_number", "copy_number_peak_calls", "genes",
                 "gene_mutation_status", "gene_set_enrichment", "omics_correlations", "protein_abundance",
                 "rna_abundance", "rna_counts", "rna_normalized", "rna_vst", "sample_attributes", "sample_clusters",
                 "sample_embeddings", "sample_qc", "samples", "signature_scores", "studies", "variants")
"""The tables :func:`read_study_report` reads, itself or through :data:`REPORT_VIEWS`."""
REPORT_VIEWS = ("sample_omics_coverage",)
"""The joined views :func:`read_study_report` reads."""


def report_session(lake: Lake, study_id: str, *, ledger: pl.DataFrame | None = None) -> duckdb.DuckDBPyConnection:
    """:func:`study_session` with only the views the report reads (:data:`REPORT_TABLES`, :data:`REPORT_VIEWS`),
    over the same files: the same report data. Why: each view binds its files when created, and the other ~20
    tables' and ~10 joined views' cost half of a small study's session (~40 of ~80 ms).
    """
    return view_session(lake, study_visible_files(lake, study_id, ledger=ledger, tables=REPORT_TABLES),
                        views=REPORT_VIEWS)


INDEX_ROWS = """
SELECT study_id, r.name, r.report_path, s.result, s.attempted_at, s.run_id, s.launched_by, s.published_version,
       s.published_at, s.errors, s.warnings, s.first_error_file, s.first_error_line, s.first_error_column,
       s.first_error
FROM study_reports r FULL JOIN study_status s USING (study_id)
ORDER BY study_id
"""
"""Every study the warehouse knows: each published one (``study_reports``) and each with an ingest attempt
(``study_status``: a failed first load too), with its last attempt's result and first located error."""

_NOTE = ".attempt_note"
"""File beside a study's page holding the note :func:`write_report_index` put in the page ("" or absent: none)."""
_NOTE_START, _NOTE_END = "<!--omicsdw:attempt-->", "<!--/omicsdw:attempt-->"


def write_report_index(lake: Lake, warehouse_dir: Path) -> None:
    """``reports/index.html``: a row per study the warehouse knows (:data:`INDEX_ROWS`: each published study, with
    a link to its report, and each study with an ingest attempt, a failed first load too), with its last attempt's
    result and first located error; and in the page of a published study whose latest attempt failed or was
    withheld, a note saying so (:func:`note_latest_attempt`).

    Read from the published ``studies`` files, ``study_versions``, the newest ``ingest_issues`` files and the
    attempts in the ingest_issues log (read incrementally, cached per process), not the catalog: a failed catalog
    rebuild still gets its index.
    """
    (warehouse_dir / REPORTS).mkdir(parents=True, exist_ok=True)
    files = {table: found for table, (_, found) in visible_files(lake, ["studies", "study_versions",
                                                                       "ingest_issues"]).items()}
    con = view_session(lake, files, views=["study_reports", STATUS_VIEW])
    try:
        listed = _frame(con, INDEX_ROWS, [])
    finally:
        con.close()
    listed = listed.with_columns(pl.col("report_path").str.strip_prefix(f"{REPORTS}/").alias("path"))
    for row in listed.filter(pl.col("report_path").is_not_null()).iter_rows(named=True):
        note_latest_attempt(warehouse_dir / REPORTS / row["study_id"], attempt_note_html(row))
    _write(warehouse_dir / REPORTS / INDEX, warehouse_index_html(listed))


def note_latest_attempt(folder: Path, note: str) -> None:
    """Put ``note`` (HTML, "" for none) at the top of the study's page in ``folder``, unless it is there already.

    The page stays the previous good version; only the note between two comments changes, so a study whose latest
    attempt failed keeps its report and says so. Cheap when nothing changed (one small file read per study); a
    page rewritten meanwhile by its report (the inode changed) is left alone: the new page is of a newer
    publication.
    """
    marker, page = folder / _NOTE, folder / INDEX
    current = marker.read_text(encoding="utf-8") if marker.is_file() else ""
    if current == note or not page.is_file():
        return
    before = page.stat()
    text = page.read_text(encoding="utf-8")
    start, end = text.find(_NOTE_START), text.find(_NOTE_END)
    block = f"{_NOTE_START}{note}{_NOTE_END}"
    if 0 <= start < end:
        text = text[:start] + block + text[end + len(_NOTE_END):]
    elif "</h1>" in text:
        text = text.replace("</h1>", "</h1>" + block, 1)
    else:
        return
    temporary = page.with_name(f".{page.name}.{os.getpid()}.note.tmp")
    temporary.write_text(text, encoding="utf-8")
    after = page.stat()
    if (after.st_ino, after.st_mtime_ns) != (before.st_ino, before.st_mtime_ns):
        temporary.unlink(missing_ok=True)  # the report rewrote the page meanwhile
        return
    os.replace(temporary, page)
    marker.write_text(note, encoding="utf-8")


def remove_study_report(warehouse_dir: Path, study_id: str, *, lake: Lake) -> None:
    """Delete ``reports/<study>/`` and rewrite the index (called after the study was unpublished, so the index
    drops its link).
    """
    folder = warehouse_dir / REPORTS / study_id
    if folder.is_dir():
        shutil.rmtree(folder)
    write_report_index(lake, warehouse_dir)
