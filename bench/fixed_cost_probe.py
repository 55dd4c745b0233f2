"""Run ``omicsdw build`` in this process with CPU-time probes around the parts a build spends its time in.

Each probe adds the process CPU seconds (and wall seconds) spent inside one function, cumulatively (a probe inside
another counts in both), so the parts are measured without a profiler's per-call overhead. The asset bodies are
timed per asset through Dagster's ``execute_core_compute`` (every step of every run). A sampler thread reads
``/proc/self/status`` every ``RSS_EVERY_S`` seconds and keeps, per asset body (and for the whole process), the
largest resident set seen and its anonymous / file-backed parts (a memory-mapped dense block counts as file-backed
while its pages are resident). Writes JSON to ``--out``.

    python bench/fixed_cost_probe.py --out probe.json [--queries] -- build --landing DIR --warehouse DIR [--study ID]

``--queries`` also counts every polars query (``LazyFrame.collect``, ``collect_all``, ``collect_batches``, the
sinks, and each eager DataFrame operation, which polars runs as a query of its own; the outermost call only) and
every ``Lake.scan`` (by table) per asset body, with the code line of this repository that issued it and the CPU
seconds inside, under ``queries`` in the JSON (a frame walk per call: the other parts' figures are then a little
higher).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import json
import os
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as ``omicsdw build`` sets it before numpy loads
START_CPU, START_WALL = time.process_time(), time.perf_counter()
SPENT: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0])
RSS_EVERY_S = 0.25
PEAK_RSS: dict[str, dict[str, float]] = defaultdict(lambda: {"rss_gib": 0.0, "anon_gib": 0.0, "file_gib": 0.0})
CURRENT = ["outside asset bodies"]
OUT: list[Path] = []
ROOT = str(Path(__file__).resolve().parent.parent)
QUERIES: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0, 0.0])
"""(asset body, kind, calling line of this repository) -> [calls, CPU s] (``--queries``)."""
_IN_QUERY = threading.local()

PROBES = {
    # part -> (module, attribute path)
    "Dagster runs (execute_in_process, all)": ("dagster._core.definitions.job_definition",
                                               "JobDefinition.execute_in_process"),
    "Delta commits (Lake.commit)": ("warehouse.lake", "Lake.commit"),
    "Delta table creation (Lake.ensure_tables)": ("warehouse.lake", "Lake.ensure_tables"),
    "contract checks of staged files (validate_rows)": ("schemas.validate", "validate_rows"),
    "Delta history look-ups (Lake.last_commit)": ("warehouse.lake", "Lake.last_commit"),
    "catalog rebuilds (refresh_catalog)": ("warehouse.catalog", "refresh_catalog"),
    "publication (publish_study)": ("warehouse.publish", "publish_study"),
    "report page (write_study_report, incl. its catalog rebuild)": ("warehouse.report", "write_study_report"),
    "PNG plots (Figure.savefig, any stage)": ("matplotlib.figure", "Figure.savefig"),
    "landing scans (scan_landing)": ("transforms.ingest.study", "scan_landing"),
    "gene-set registry check (write_gene_sets)": ("warehouse.signatures", "write_gene_sets"),
    "Delta table opens (DeltaTable.__init__)": ("deltalake.table", "DeltaTable.__init__"),
    "polars Delta scans resolved (DeltaDataset.to_dataset_scan)": ("polars.io.delta._dataset",
                                                                   "DeltaDataset.to_dataset_scan"),
    "Dagster instance creation": ("warehouse.cli", "_instance"),
    "Dagster run creation (create_run_for_job)": ("dagster._core.instance.instance",
                                                  "DagsterInstance.create_run_for_job"),
    "Dagster event-log writes (store_event)": ("dagster._core.storage.event_log.in_memory",
                                               "InMemoryEventLogStorage.store_event"),
    "Dagster event-log writes, SQLite (store_event)": ("dagster._core.storage.event_log.sqlite.sqlite_event_log",
                                                       "SqliteEventLogStorage.store_event"),
    "Dagster input data versions (event-log reads)": ("dagster._core.execution.context.data_version_cache",
                                                      "DataVersionCache._fetch_input_asset_version_info"),
    "Dagster check results' target look-ups": ("dagster._core.definitions.asset_checks.asset_check_result",
                                               "AssetCheckResult._get_target_materialization_data"),
    "Dagster partition-key checks (has_dynamic_partition)": ("dagster._core.instance.instance",
                                                             "DagsterInstance.has_dynamic_partition"),
    "Dagster planned events at run creation (_log_asset_planned_events)": (
        "dagster._core.instance.runs.run_domain", "RunDomain._log_asset_planned_events"),
    "Dagster step input versions: partition subsets (asset_partitions_subset_for_input)": (
        "dagster._core.execution.context.system", "StepExecutionContext.asset_partitions_subset_for_input"),
    "Dagster step input versions: per-partition tags (get_latest_tags_by_partition)": (
        "dagster._core.storage.event_log.sql_event_log", "SqlEventLogStorage.get_latest_tags_by_partition"),
    "Dagster step input versions: asset records (get_asset_records)": (
        "dagster._core.instance.instance", "DagsterInstance.get_asset_records"),
    "Dagster output contexts (get_output_context)": ("dagster._core.execution.context.output",
                                                     "get_output_context"),
    "Dagster step starts (step_start_event)": ("dagster._core.events", "DagsterEvent.step_start_event"),
    "Dagster step successes (step_success_event)": ("dagster._core.events", "DagsterEvent.step_success_event"),
    "Dagster job resolution (Definitions.resolve_all_job_defs)": (
        "dagster._core.definitions.definitions_class", "Definitions.resolve_all_job_defs"),
    # inside the asset bodies (session 5)
    "study gene sets (study_gene_sets)": ("warehouse.signatures", "study_gene_sets"),
    "gene-set dict (gene_set_dict)": ("transforms.signatures.enrichment", "gene_set_dict"),
    "prerank (prerank)": ("transforms.signatures.enrichment", "prerank"),
    "ORA (ora)": ("transforms.signatures.enrichment", "ora"),
    "scores: set index (index_sets)": ("transforms.signatures.scoring", "index_sets"),
    "scores: ssGSEA (ssgsea)": ("transforms.signatures.scoring", "ssgsea"),
    "scores: singscore (singscore)": ("transforms.signatures.scoring", "singscore"),
    "scores: long frame (score_frame)": ("transforms.signatures.scoring", "score_frame"),
    "scores: dense blocks (assay_blocks)": ("transforms.signatures.scoring", "assay_blocks"),
    "plots: tight_layout": ("matplotlib.figure", "Figure.tight_layout"),
    "plots: score heatmap (score_plots)": ("orchestration.report", "score_plots"),
    "plots: enrichment (enrichment_plots)": ("orchestration.report", "enrichment_plots"),
    "plots: volcano / MA (contrast_plots)": ("orchestration.report", "contrast_plots"),
    "report: queries (read_study_report)": ("warehouse.report", "read_study_report"),
    "report: its study's views (study_session)": ("warehouse.report", "study_session"),
    "report: the views it reads (report_session)": ("warehouse.report", "report_session"),
    "report: the index (write_report_index)": ("warehouse.report", "write_report_index"),
    "report: HTML and its plots (study_report_html)": ("transforms.report.html", "study_report_html"),
    "DE transform (differential_study)": ("transforms.expression.study", "differential_study"),
    "QC: consensus clusters": ("transforms.qc.samples", "consensus_clusters"),
    "QC: structure (structure_study)": ("transforms.qc.study", "structure_study"),
    "QC: qc_study": ("transforms.qc.study", "qc_study"),
    "normalise transform (normalise_study)": ("transforms.expression.study", "normalise_study"),
    # inside normalise_study's body (session 17; generators: the time spent making their items)
    "normalise: fit_counts": ("transforms.expression.study", "fit_counts"),
    "normalise: fit_vst": ("transforms.expression.study", "fit_vst"),
    "normalise: rna_normalized frames (normalised_count_rows)": ("transforms.expression.study",
                                                                "normalised_count_rows"),
    "normalise: rna_vst frames (vst_rows)": ("transforms.expression.study", "vst_rows"),
    "normalise: identifier columns and float series (_long_frames)": ("transforms.expression.study",
                                                                      "_long_frames"),
    "normalise: Parquet files of dictionary frames (Lake._write_dictionary_frame)": (
        "warehouse.lake", "Lake._write_dictionary_frame"),
    "staged tables' checks and commits (commit_tables, every stage)": ("warehouse.commit", "commit_tables"),
}


def _count(part: str, cpu: float, wall: float) -> None:
    SPENT[part][0] += cpu
    SPENT[part][1] += wall
    SPENT[part][2] += 1


def _timed(part: str, function: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            inner = function(*args, **kwargs)
            while True:
                cpu, wall = time.process_time(), time.perf_counter()
                try:
                    item = next(inner)
                except StopIteration:
                    _count(part, time.process_time() - cpu, time.perf_counter() - wall)
                    return
                _count(part, time.process_time() - cpu, time.perf_counter() - wall)
                yield item
        return generator

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _count(part, time.process_time() - cpu, time.perf_counter() - wall)
    return wrapper


def _sample_rss(stop: threading.Event) -> None:
    """Largest VmRSS (with RssAnon / RssFile at that moment) per asset body and for the whole process."""
    while not stop.wait(RSS_EVERY_S):
        fields = {}
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "RssAnon", "RssFile"):
                fields[key] = int(value.split()[0]) / 1024**2
        sample = {"rss_gib": fields["VmRSS"], "anon_gib": fields["RssAnon"], "file_gib": fields["RssFile"]}
        for part in (CURRENT[0], "whole process"):
            if sample["rss_gib"] > PEAK_RSS[part]["rss_gib"]:
                PEAK_RSS[part] = sample


def _caller() -> str:
    """The innermost frame of this repository's code (not bench/, not a package) that led to the call: its
    ``path:line function``, and the repository frame that called it."""
    frame = sys._getframe(2)
    found: list[str] = []
    while frame is not None and len(found) < 2:
        name = frame.f_code.co_filename
        if name.startswith(ROOT) and "/.venv/" not in name and "/bench/" not in name:
            found.append(f"{name[len(ROOT) + 1:]}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back  # type: ignore[assignment]
    return " <- ".join(found) or "(outside the repository)"


def _counted(kind: str, function: Callable[..., Any]) -> Callable[..., Any]:
    """Count ``function``'s outermost calls by asset body and calling line, with their CPU seconds."""
    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if getattr(_IN_QUERY, "depth", 0):
            return function(*args, **kwargs)
        key = (CURRENT[0], kind, _caller())
        _IN_QUERY.depth = 1
        cpu = time.process_time()
        try:
            return function(*args, **kwargs)
        finally:
            _IN_QUERY.depth = 0
            QUERIES[key][0] += 1
            QUERIES[key][1] += time.process_time() - cpu
    return wrapper


def install_query_counts() -> None:
    """Count polars queries and lake scans (``--queries``)."""
    import polars as pl

    from warehouse.lake import Lake

    for name in ("collect", "collect_batches", "sink_parquet", "sink_ipc", "sink_csv", "_collect_eager"):
        if hasattr(pl.LazyFrame, name):  # _collect_eager: an eager DataFrame operation (filter, join, ...)
            kind = "polars eager operation" if name == "_collect_eager" else f"polars {name}"
            setattr(pl.LazyFrame, name, _counted(kind, getattr(pl.LazyFrame, name)))
    original = pl.collect_all
    wrapped = _counted("polars collect_all", original)
    for module in list(sys.modules.values()):
        if getattr(module, "collect_all", None) is original:
            module.collect_all = wrapped  # type: ignore[attr-defined]
    scan = Lake.scan

    def lake_scan(self: Any, table: str, **kwargs: Any) -> Any:
        key = (CURRENT[0], f"Lake.scan {table}", _caller())
        QUERIES[key][0] += 1
        return scan(self, table, **kwargs)

    Lake.scan = lake_scan  # type: ignore[method-assign]


def install() -> None:
    """Wrap every probe, and every asset body per asset (Dagster's step compute generator)."""
    for part, (module_name, attribute) in PROBES.items():
        owner: Any = importlib.import_module(module_name)
        *path, name = attribute.split(".")
        for step in path:
            owner = getattr(owner, step)
        original = getattr(owner, name, None)
        if original is None:  # not in this version of the code (the probe also runs on older checkouts)
            continue
        wrapped = _timed(part, original)
        setattr(owner, name, wrapped)
        if not path:  # also where ``from module import name`` bound it already
            for module in list(sys.modules.values()):
                if getattr(module, name, None) is original:
                    setattr(module, name, wrapped)
    from dagster._core.storage.event_log.in_memory import InMemoryEventLogStorage

    store = InMemoryEventLogStorage.store_event

    def store_event(self: Any, event: Any) -> None:
        """Event-log writes also split by Dagster event type (what each kind of event costs)."""
        kind = event.dagster_event.event_type_value if event.dagster_event else "user log message"
        _timed(f"Dagster event-log writes: {kind}", store)(self, event)

    InMemoryEventLogStorage.store_event = store_event  # type: ignore[method-assign]
    import dagster._core.execution.plan.execute_step as execute_step

    original = execute_step.execute_core_compute

    def compute(step_context: Any, *args: Any, **kwargs: Any) -> Iterator[Any]:
        part = f"asset body: {step_context.step.key}"
        events = original(step_context, *args, **kwargs)
        while True:
            cpu, wall = time.process_time(), time.perf_counter()
            CURRENT[0] = part
            try:
                event = next(events)
            except StopIteration:
                _count(part, time.process_time() - cpu, time.perf_counter() - wall)
                _write(None)
                return
            finally:
                CURRENT[0] = "outside asset bodies"
            _count(part, time.process_time() - cpu, time.perf_counter() - wall)
            yield event

    execute_step.execute_core_compute = compute  # type: ignore[assignment]


def main() -> None:
    out = Path(sys.argv[sys.argv.index("--out") + 1])
    argv = sys.argv[sys.argv.index("--") + 1:]
    import_cpu, import_wall = time.process_time(), time.perf_counter()
    import orchestration.definitions  # noqa: F401  (what build imports first: Dagster, polars, every asset)
    import warehouse.cli as cli

    _count("imports (orchestration.definitions)", time.process_time() - import_cpu,
           time.perf_counter() - import_wall)
    install()
    if "--queries" in sys.argv[:sys.argv.index("--")]:
        install_query_counts()
    OUT.append(out)
    stop = threading.Event()
    sampler = threading.Thread(target=_sample_rss, args=(stop,), daemon=True)
    sampler.start()
    code = cli.main(argv)
    stop.set()
    sampler.join()
    _count("whole process", time.process_time() - START_CPU, time.perf_counter() - START_WALL)
    _write(code)


def _write(code: int | None) -> None:
    """The figures so far (``exit`` None while the build runs: a run stopped early still leaves its finished assets)."""
    parts = {k: {"cpu_s": v[0], "wall_s": v[1], "calls": v[2], **PEAK_RSS.get(k, {})} for k, v in SPENT.items()}
    queries = [{"body": body, "kind": kind, "caller": caller, "calls": int(v[0]), "cpu_s": v[1]}
               for (body, kind, caller), v in sorted(QUERIES.items(), key=lambda kv: -kv[1][0])]
    OUT[0].write_text(json.dumps({"exit": code, "parts": parts, "peak_rss_outside_assets": PEAK_RSS[
        "outside asset bodies"], "at_wall_s": time.perf_counter() - START_WALL, "queries": queries}, indent=2))


if __name__ == "__main__":
    main()
