"""The warehouse resource: where studies land, where the lake and the catalog live, and what every asset shares.

Assets ask it for the lake, a study's folder, a study's write session (its lock) and to publish a study; the
catalog is refreshed here after anything readers see changed (:meth:`WarehouseResource.study_session`), so no
asset has to remember it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import dagster as dg
import duckdb
from deltalake.exceptions import CommitFailedError

from schemas.tables import PUBLISHED_TABLES
from transforms.ingest.study import find_studies
from warehouse import report
from warehouse.catalog import refresh_catalog
from warehouse.lake import Lake, StudyLocked
from warehouse.storage import open_lake

TRANSIENT_ERRORS: tuple[type[Exception], ...] = (OSError, CommitFailedError, StudyLocked, duckdb.IOException)
"""Storage errors a later attempt may not meet: I/O and network errors of the file system or object store (delta-rs
and s3fs raise ``OSError``), a Delta commit that lost a race, the study's lock held by another run, the catalog
file locked. :data:`TRANSIENT_RETRY` retries only these."""
TRANSIENT_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL)
"""The retry policy of every asset, so of every run that materialises it (``study_job``, the schedule, the UI's
*Materialize*, ``study_automation``: Dagster's implicit asset job has no job-level policy): transient storage errors
(:data:`TRANSIENT_ERRORS`) are retried after 5, 15 and 35 s; anything else fails at once, since the warehouse
resource's session turns it into a ``dg.Failure(allow_retries=False)`` (bad input raises one itself)."""
DEFAULT_WAREHOUSE = "warehouse_data"
"""Where ``make run`` and ``make dev`` build the warehouse (git-ignored, not a Python package)."""
PRERANK_LIBRARIES_ENV = "OMICSDW_PRERANK_LIBRARIES"
PLOTS_ENV = "OMICSDW_PLOTS"


class WarehouseResource(dg.ConfigurableResource):
    """Landing folder of study folders, warehouse folder (catalog, reports) and lake root (path or URI)."""

    landing_dir: str
    warehouse_dir: str
    lake_uri: str | None = None
    refresh_catalog_on_commit: bool = True
    """False: the caller rebuilds the catalog itself (``omicsdw build``: at a pace, and at the end; see
    ``warehouse.cli.CATALOG_PACE``). The study report needs no rebuild: it reads the study's published files."""
    prerank_libraries: str | None = None
    """Gene-set libraries ``gene_set_enrichment`` runs prerank on, comma-separated (``all``: every library); None:
    ``$OMICSDW_PRERANK_LIBRARIES``, else MSigDB Hallmark and every warehouse or study library (ORA tests all)."""
    retry_transient_errors: bool = True
    """False: a transient storage error fails the step at once too (``omicsdw build``: a person waits for it, and a
    study lock held by another run was already waited for ``LOCK_TIMEOUT_S``; each retry would wait that again)."""
    report_index_with_catalog: bool = False
    """True: the study report leaves the warehouse's report index (``reports/index.html``) to :meth:`refresh_catalog`,
    which then writes it after the catalog (``omicsdw build``: at its pace and at the end, see
    ``warehouse.cli.CATALOG_PACE``); the index lists every study, and written after each study it was ~40-80 ms of a
    small study's report (bench/README.md, "Per-study fixed cost, Session 18"). False: every report writes it."""
    accept_shrink: list[str] | None = None
    """Study ids whose new load may lose samples or assays of their published version (``omicsdw build
    --accept-shrink STUDY``); any other study's such load is held (``study_would_shrink``, :func:`warehouse.load
    .load_study`). In the Dagster UI: the run tag ``omicsdw/accept_shrink: true`` on the study's run
    (:data:`orchestration.partitions.ACCEPT_SHRINK_TAG`; this resource's config in the launchpad needs every other
    setting of it retyped)."""
    plots: bool | None = None
    """Draw PNG plots (stage plots in the Dagster metadata and the report folder, the report's own); False: tables
    and report text only (a quarter of a small study's build). None: ``$OMICSDW_PLOTS``, else True."""

    @classmethod
    def from_env(cls) -> WarehouseResource:
        """Settings from OMICSDW_LANDING / OMICSDW_WAREHOUSE / OMICSDW_LAKE (defaults: examples, warehouse_data)."""
        return cls(landing_dir=os.environ.get("OMICSDW_LANDING", "examples"),
                   warehouse_dir=os.environ.get("OMICSDW_WAREHOUSE", DEFAULT_WAREHOUSE),
                   lake_uri=os.environ.get("OMICSDW_LAKE"))

    def draws_plots(self) -> bool:
        """``plots``, else ``$OMICSDW_PLOTS`` (``0`` / ``false`` / ``no``: no plots), else True."""
        if self.plots is not None:
            return self.plots
        return os.environ.get(PLOTS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")

    def prerank_library_setting(self) -> str | None:
        """``prerank_libraries``, else ``$OMICSDW_PRERANK_LIBRARIES`` (None: the default selection)."""
        return self.prerank_libraries or os.environ.get(PRERANK_LIBRARIES_ENV) or None

    def lake(self) -> Lake:
        return open_lake(self.warehouse_dir, self.lake_uri)

    def landing(self) -> Path:
        """The landing folder; a missing one is an error saying which setting names it (the landing sensor, on by
        default, evaluates every 30 s: "No such file or directory: 'examples'" did not say where that came from).
        """
        folder = Path(self.landing_dir)
        if not folder.is_dir():
            raise FileNotFoundError(f"no landing folder {self.landing_dir} ({folder.absolute()}): set "
                                    "OMICSDW_LANDING (default: examples, relative to the working directory) or the "
                                    "warehouse resource's landing_dir")
        return folder

    @contextmanager
    def study_session(self, study_id: str | None) -> Iterator[Lake]:
        """The lake under the study's write lock (a second run of the same study waits, then finds its work done).

        Every asset body works inside it, so its errors are sorted here: a :data:`TRANSIENT_ERRORS` one is raised
        as it is (:data:`TRANSIENT_RETRY` tries again, with backoff; unless ``retry_transient_errors`` is off); any
        other is a ``dg.Failure`` that is not retried (the same input and code fail the same way), naming the error
        and keeping it as the cause.
        On the way out, the catalog is rebuilt if a table readers see at once was committed (a publication, the
        issues of a run, the gene dimension) — also when the asset body raised after committing them.
        """
        lake = self.lake()
        try:
            with lake.study_session(study_id):
                yield lake
        except Exception as exc:
            if isinstance(exc, (dg.Failure, dg.RetryRequested, dg.DagsterError)):
                raise
            if isinstance(exc, TRANSIENT_ERRORS) and self.retry_transient_errors:
                raise
            raise dg.Failure(f"{type(exc).__name__}: {exc}", allow_retries=False) from exc
        finally:
            if self.refresh_catalog_on_commit and lake.committed - set(PUBLISHED_TABLES):
                self.refresh_catalog(index="ingest_issues" in lake.committed)

    def refresh_catalog(self, *, index: bool = False) -> Path:
        """Rebuild the catalog; then the report index too when the reports leave it to these rebuilds
        (``report_index_with_catalog``) or ``index`` (an ingest attempt was recorded: the index shows each study's
        last attempt, a failed one too, which no report of the study writes). A failed rebuild keeps the previous
        catalog, and the index (read from the lake, not the catalog) is still written, so the reports this run made
        are listed.
        """
        lake = self.lake()
        index = index or self.report_index_with_catalog
        try:
            path = refresh_catalog(lake, Path(self.warehouse_dir))
        except Exception:
            if index:
                with suppress(Exception):  # the catalog's error is the one to report
                    report.write_report_index(lake, self.warehouse_path)
            raise
        if index:
            report.write_report_index(lake, self.warehouse_path)
        return path

    @property
    def warehouse_path(self) -> Path:
        return Path(self.warehouse_dir)

    def reports_dir(self, study_id: str) -> Path:
        folder = Path(self.warehouse_dir, "reports", study_id)
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def study_folder(self, study_id: str) -> Path:
        """Folder of a study in the landing folder (partition keys are study ids)."""
        studies = find_studies(self.landing())
        if study_id not in studies:
            raise dg.Failure(f"study {study_id!r} is not in the landing folder {self.landing_dir}; "
                             f"found: {sorted(studies)}", allow_retries=False)
        return studies[study_id]
