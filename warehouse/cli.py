"""omicsdw: build a multi-omics warehouse from study folders, check folders, query it in SQL, remove a study.

build materialises the same Dagster assets as the Dagster UI, study by study (on the instance of $DAGSTER_HOME
when set; --jobs N studies at once in worker processes, :mod:`orchestration.build_pool`, --jobs 1 in this process), so
a failing study is reported and the others still land; the exit code is 1 if any study failed. Heavy libraries
are imported by the command that needs them: --help and sql start fast.
"""

from __future__ import annotations

import argparse
import difflib
import errno
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import TYPE_CHECKING

from warehouse.storage import LakeUnreachable, check_reachable

if TYPE_CHECKING:
    import polars as pl

    from warehouse.lake import Lake

DEFAULT_WAREHOUSE = os.environ.get("OMICSDW_WAREHOUSE", "warehouse_data")
SQL_STATEMENTS = {"SELECT", "EXPLAIN"}
"""Statement types analysts' SQL may run: reads only."""


def _landing_problems(landing: Path) -> tuple[dict[str, Path], list[dict[str, object]]]:
    """Valid study folders, and each folder that cannot be a study (file, line, column, code, message)."""
    from dataclasses import asdict

    from transforms.ingest.study import scan_landing

    studies, problems = scan_landing(landing)
    return studies, [asdict(p) for p in problems]


def _instance():  # type: ignore[no-untyped-def]
    """The Dagster instance of $DAGSTER_HOME (runs show in the UI), else a temporary one (Dagster's ephemeral
    instance with storages that keep their connections: :mod:`orchestration.ephemeral`).
    """
    import dagster as dg

    from orchestration.ephemeral import ephemeral_instance

    return dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else ephemeral_instance()


def _terminated(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # main() says "interrupted" and exits 130


def _ignored(signum: int, frame: object) -> None:
    """SIGINT of a build started ignoring it (in the background): still ignored, but by Python, so the signal
    number reaches the wakeup pipe and SIGTERM, which Dagster gives SIGINT's handler after each run, is never
    ignored by the OS.
    """


class Stopped(KeyboardInterrupt):
    """A signal stopped the build; ``completed``: the run it came in finished anyway (Dagster lost the interrupt)."""

    def __init__(self, result, *, completed: bool) -> None:  # type: ignore[no-untyped-def]
        super().__init__()
        self.result, self.completed = result, completed


class _Signals:
    """The stopping signals a build received, read after each Dagster run from the wakeup pipe.

    Dagster turns SIGINT or SIGTERM inside a run into a failed run, but loses one that lands outside a step (its
    nested interrupt contexts clear what they caught), and after the run gives SIGTERM SIGINT's handler. So a
    foreground build went on to the next study after ``kill``, and one started in the background (SIGINT ignored)
    ignored ``kill`` from its first run on, as did every process it started later. Python writes every signal it
    handles to the wakeup pipe, whatever the handler: nothing is lost.
    """

    def __init__(self, pipe: int | None, stops: set[int]) -> None:
        self.pipe, self.stops = pipe, stops

    def finished(self, result):  # type: ignore[no-untyped-def]
        """``result`` once SIGTERM is the build's again; :class:`Stopped` if a stopping signal came meanwhile."""
        if self.pipe is None:
            return result
        signal.signal(signal.SIGTERM, _terminated)
        if self.stop_received():
            raise Stopped(result, completed=result.success)
        if not result.success and any(
                error is not None and error.cls_name == "DagsterExecutionInterruptedError"
                for error in [e.step_failure_data.error for e in result.get_step_failure_events()]
                + [e.job_failure_data.error for e in result.all_events if e.is_run_failure]):
            raise Stopped(result, completed=False)  # interrupted by a signal of another kind Dagster handles
        return result

    def stop_received(self) -> bool:
        """Whether a stopping signal came since the last look (reads the wakeup pipe empty)."""
        if self.pipe is None:
            return False
        received = b""
        with suppress(BlockingIOError):
            while chunk := os.read(self.pipe, 512):
                received += chunk
        return any(number in self.stops for number in received)

    @contextmanager
    def deferred(self) -> Iterator[None]:
        """Meanwhile SIGINT and SIGTERM only reach the wakeup pipe (``--jobs``: the parent, waiting for its workers,
        reads it and stops them; a KeyboardInterrupt between two lines of its loop could lose a study's outcome).
        """
        if self.pipe is None:
            yield
            return
        saved = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
        for number in saved:
            signal.signal(number, _ignored)
        try:
            yield
        finally:
            for number, handler in saved.items():
                if handler is not None:
                    signal.signal(number, handler)


@contextmanager
def _stopped_by_signals() -> Iterator[_Signals]:
    """SIGTERM, and SIGINT unless it was ignored, stop the build (:class:`_Signals`); the previous handlers and
    wakeup pipe come back on the way out. Only the main thread may set them (as for Dagster, a build called from
    another thread leaves them alone and is not stopped by signals).
    """
    if threading.current_thread() is not threading.main_thread():
        yield _Signals(None, set())
        return
    sigint, sigterm = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    read, write = os.pipe()
    os.set_blocking(read, False)
    os.set_blocking(write, False)
    wakeup = signal.set_wakeup_fd(write, warn_on_full_buffer=False)
    if sigint is signal.SIG_IGN:
        signal.signal(signal.SIGINT, _ignored)
    signal.signal(signal.SIGTERM, _terminated)
    try:
        yield _Signals(read, {signal.SIGTERM} | (set() if sigint is signal.SIG_IGN else {signal.SIGINT}))
    finally:
        signal.set_wakeup_fd(wakeup)
        if sigint is not None:
            signal.signal(signal.SIGINT, sigint)
        signal.signal(signal.SIGTERM, signal.SIG_DFL if sigterm is None else sigterm)
        os.close(read)
        os.close(write)


def _interrupted_at(sid: str) -> None:
    print("INTERRUPTED", flush=True)
    print(f"{sid}: readers keep seeing its previous load until a build completes it; the studies before it are "
          "loaded; build again to finish", file=sys.stderr)


def _failure_text(result) -> str:  # type: ignore[no-untyped-def]
    """Each failed step of a run and its error itself, not Dagster's wrapper of it, indented."""
    from orchestration.operations import error_text

    lines = []
    for event in result.get_step_failure_events():
        text = error_text(event.step_failure_data.error)
        user = event.step_failure_data.user_failure_data  # a dg.Failure's metadata: which rows broke which check
        for key, value in (user.metadata if user is not None else {}).items():
            text += f"\n  {key}: " + str(getattr(value, "value", value)).replace("\n", "\n  " + " " * len(key) + "  ")
        lines.append(f"    {event.step_key}: " + text.replace("\n", "\n    "))
    return "\n".join(lines)


def _outcome(result) -> str:  # type: ignore[no-untyped-def]
    """'unchanged' when every table the run reported kept its version, else 'ok'."""
    events = result.get_asset_materialization_events()
    flags = [e.materialization.metadata.get("unchanged") for e in events]
    return "unchanged" if flags and all(f is not None and f.value is True for f in flags) else "ok"


CATALOG_PACE = 20
"""``omicsdw build`` rebuilds the catalog after a study once the time since its last rebuild is at least this many
times what that rebuild took (and always at the end): analysts see finished studies while a long build runs, and
the rebuilds, each longer as the warehouse grows, stay within ~1/20 of the build's time instead of adding one per
study (quadratic over a night of many studies)."""


class _CatalogPacer:
    """Rebuilds the catalog of a build at the :data:`CATALOG_PACE`, after studies that changed something."""

    def __init__(self, resource, *, pace: float = CATALOG_PACE) -> None:  # type: ignore[no-untyped-def]
        self.resource, self.pace = resource, pace
        self.done_at: float | None = None
        self.took = 0.0

    def after_study(self, *, changed: bool) -> None:
        """Rebuild if the study changed what readers see and the last rebuild is long enough ago."""
        if changed and (self.done_at is None or time.monotonic() - self.done_at >= self.pace * self.took):
            # a failure waits: a study still to come may repair it (a table moved aside is written again study
            # by study), and the rebuild at the end says it if not
            with suppress(CatalogNotRebuilt):
                self.refresh()

    def refresh(self) -> None:
        start = time.monotonic()
        try:
            self.resource.refresh_catalog()
        except Exception as exc:
            raise _not_rebuilt(exc, self.resource.warehouse_dir) from exc
        finally:
            self.done_at = time.monotonic()
            self.took = self.done_at - start


class CatalogNotRebuilt(Exception):
    """The catalog could not be rebuilt from the lake (a file it lists is missing or torn, a log unreadable)."""


def _not_rebuilt(exc: Exception, warehouse: object) -> CatalogNotRebuilt:
    """A catalog rebuild's failure as a sentence saying what to run (printed instead of a traceback)."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
    return CatalogNotRebuilt(f"the catalog could not be rebuilt ({reason}); the previous one is kept. "
                             f"`omicsdw doctor --warehouse {warehouse}` names the damaged table and how to repair it")


@contextmanager
def _catalog_refreshed(resource):  # type: ignore[no-untyped-def]
    """A :class:`_CatalogPacer`; the catalog is rebuilt on the way out, also after a failure (a failed study's
    ingest_issues show). When the build is already ending on an exception (a signal, a crash), a rebuild that fails
    too is only printed: the first error, and its exit status, is what the user sees.
    """
    pacer = _CatalogPacer(resource)
    try:
        yield pacer
    except BaseException:
        try:
            pacer.refresh()
        except CatalogNotRebuilt as exc:
            print(f"omicsdw: {exc}", file=sys.stderr)
        raise
    pacer.refresh()


BLAS_THREADS = "OPENBLAS_NUM_THREADS"
"""Threads of the BLAS numpy bundles: ``omicsdw build`` sets it to 1 unless the user did (before numpy loads).
A build's BLAS calls are small blocks (QC's PCA and sample correlations, scoring), where OpenBLAS's idle worker
threads spin: on a busy machine that was ~0.6 CPU s of a small study's ~6.5 (``bench/README.md``); DE is tested
not to depend on the thread count."""


def _prerank_problem(setting: str | None, *, option: str | None, landing: Path) -> str | None:
    """A sentence naming the libraries the prerank setting lists that no library file defines (None: all known).

    Checked before any work: a misspelt name would otherwise be skipped silently after a long build.
    """
    from orchestration.resources import PRERANK_LIBRARIES_ENV
    from transforms.signatures.enrichment import unknown_prerank_libraries
    from warehouse.signatures import known_libraries, warehouse_library_dir

    if not setting:
        return None
    known = known_libraries(landing=landing, library_dir=warehouse_library_dir())
    unknown = unknown_prerank_libraries(setting, known)
    if not unknown:
        return None
    return (f"omicsdw build: {'--prerank-libraries' if option else PRERANK_LIBRARIES_ENV} names unknown gene-set "
            f"librar{'y' if len(unknown) == 1 else 'ies'} {', '.join(unknown)}; known: {', '.join(known)} "
            "(or 'all' for every one)")


CLI_TAGS = {"omicsdw/launched_by": "cli", "omicsdw/study_run": "true"}
"""Tags of a build's study runs: the ``study_status`` view says a study's last attempt was the CLI's; each runs the
whole ``study_job`` (``orchestration.partitions.STUDY_RUN_TAG``: its writes trigger no automation)."""


def _build(args: argparse.Namespace) -> int:
    from orchestration.build_pool import stop_forkserver

    try:
        return _build_studies(args)
    finally:
        stop_forkserver()  # --jobs: the workers' server (and its CPU time) ends with the build


def _build_studies(args: argparse.Namespace) -> int:
    os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")
    os.environ.setdefault(BLAS_THREADS, "1")
    from orchestration.build_pool import default_jobs
    from warehouse.storage import open_lake

    try:
        jobs = args.jobs or default_jobs()
    except argparse.ArgumentTypeError as exc:
        print(f"omicsdw build: OMICSDW_BUILD_JOBS: {exc}", file=sys.stderr)
        return 2
    landing = Path(args.landing)
    if not landing.is_dir():
        print(f"omicsdw build: no landing folder {landing}", file=sys.stderr)
        return 2
    lake = open_lake(args.warehouse, args.lake)  # the one the build writes, as its resource opens it
    written = [Path(args.warehouse), *([Path(lake.root.removeprefix("file://"))] if lake.is_local else [])]
    unwritable = next((f for f in written if f.is_dir() and not os.access(f, os.W_OK)), None)
    if unwritable is not None:  # a read-only mount: every step failed, and the build blamed the gene reference
        print(f"omicsdw build: the warehouse cannot be written ({unwritable} is read-only to this user); a "
              "warehouse on a read-only mount or a snapshot can be read (omicsdw sql, doctor), not built",
              file=sys.stderr)
        return 1
    from warehouse.summary import format_issue

    studies, problems = _landing_problems(landing)
    found = dict(studies)
    for problem in problems:
        print(format_issue(problem), file=sys.stderr)
    if args.study:
        missing = [s for s in args.study if s not in studies]
        if missing:
            print(f"not in {landing}: {', '.join(missing)} (found: {', '.join(studies) or 'none'})", file=sys.stderr)
            return 2
        studies = {s: studies[s] for s in args.study}
    unknown = [s for s in args.accept_shrink or [] if s not in studies]
    if unknown:  # a misspelt id would accept nothing, and the study would be held again after a long build
        print(f"omicsdw build: --accept-shrink names {', '.join(unknown)}, not a study this build loads (studies: "
              f"{', '.join(studies) or 'none'})", file=sys.stderr)
        return 2
    if not studies:  # with problems above: folders that are studies, none of which can be built
        print(f"no study folders (study.yaml or meta_study.txt) in {landing}" if not problems else
              f"no study of {landing} can be built: every study folder has a problem above", file=sys.stderr)
        return 2
    jobs = min(jobs, len(studies))
    if jobs > 1:  # the workers' forkserver imports the build's modules while this process imports them too
        from orchestration.build_pool import start_forkserver

        context = start_forkserver()
    import dagster as dg

    from orchestration.definitions import CROSS_STUDY_ASSETS, REFERENCE_ASSETS
    from orchestration.partitions import STUDIES
    from orchestration.resources import WarehouseResource
    from warehouse.catalog import connect
    from warehouse.summary import warehouse_summary

    # Catalog rebuilds at a pace (_CatalogPacer) and at the end, instead of one after every commit readers see
    # (2-3 per study, each longer as the warehouse grows); the study report reads the study's files alone, and the
    # report index (every study's link) is written with each rebuild, not after every study's report.
    settings = {"landing_dir": str(landing.resolve()), "warehouse_dir": str(Path(args.warehouse)),
                "lake_uri": args.lake, "refresh_catalog_on_commit": False, "report_index_with_catalog": True,
                "retry_transient_errors": False, "plots": False if args.no_plots else None,
                "prerank_libraries": args.prerank_libraries, "accept_shrink": list(args.accept_shrink or [])}
    resource = WarehouseResource(**settings)  # type: ignore[arg-type]
    refused = _prerank_problem(resource.prerank_library_setting(), option=args.prerank_libraries, landing=landing)
    if refused:
        print(refused, file=sys.stderr)
        return 2
    check_reachable(resource.lake())
    with _stopped_by_signals() as signals, _instance() as instance, _catalog_refreshed(resource) as catalog:
        new = [s for s in studies if not instance.has_dynamic_partition(STUDIES, s)]
        if new:
            instance.add_dynamic_partitions(STUDIES, new)
        quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
        resources = {"warehouse": resource}
        print(f"omicsdw build: {len(studies)} stud{'y' if len(studies) == 1 else 'ies'} from {landing} "
              f"into {args.warehouse}" + (f" ({jobs} at a time)" if jobs > 1 else ""))
        start = time.monotonic()
        reference = signals.finished(dg.materialize(REFERENCE_ASSETS, resources=resources, instance=instance,
                                             run_config=quiet, raise_on_error=False))
        if not reference.success:
            print(f"omicsdw build: the gene reference did not load; no study was built\n"
                  f"{_failure_text(reference)}", file=sys.stderr)
            return 1
        if jobs > 1:
            failed = _build_in_workers(context, jobs, settings, list(studies), signals=signals, catalog=catalog)
        else:
            failed = _build_one_by_one(list(studies), resources=resources, instance=instance, signals=signals,
                                       catalog=catalog, run_config=quiet)
        matches = signals.finished(dg.materialize(CROSS_STUDY_ASSETS, resources=resources, instance=instance,
                                           run_config=quiet, raise_on_error=False))
        if not matches.success:  # its error is printed as a study's is: 'failed: signature_matches' alone said nothing
            failed.append("signature_matches")
            print("signature_matches: FAILED")
            print(_failure_text(matches))
        if args.features:
            failed += _build_feature_sets(Path(args.features), signals, resources=resources, instance=instance,
                                          run_config=quiet)
    con = connect(args.warehouse)
    try:
        print(f"\n{warehouse_summary(con)}")
        stored = {sid for (sid,) in con.execute("SELECT study_id FROM studies").fetchall()}
    finally:
        con.close()
    for sid in sorted(stored - set(found)):  # documented: a deleted landing folder never removes a study
        print(f"kept: {sid} has no folder in {landing}; it stays as loaded, its gene-set libraries too, until "
              f"`omicsdw remove {sid} --warehouse {args.warehouse}`")
    if problems:
        failed.append(f"{len(problems)} landing folder problem(s) above")
    print(f"\ndone in {time.monotonic() - start:.1f} s; "
          + (f"failed: {', '.join(failed)}" if failed else "all studies loaded"))
    return 1 if failed else 0


def _build_one_by_one(studies: list[str], *, resources: dict, instance, signals: _Signals,  # type: ignore[no-untyped-def]
                      catalog: _CatalogPacer, run_config: dict) -> list[str]:
    """``--jobs 1``: each study's run in this process, one after the other; the studies that failed."""
    import dagster as dg

    from orchestration.definitions import STUDY_ASSETS
    from orchestration.sensors import study_job
    from warehouse.lake import StudyLocked

    # The landing sensor's study_job (the UI lists a build's runs under it), resolved and snapshotted once for
    # every study: dg.materialize did both per study.
    job = dg.Definitions(assets=STUDY_ASSETS, jobs=[study_job], resources=resources).resolve_job_def(study_job.name)
    failed = []
    study_build = resources["warehouse"].lake().study_build
    for i, sid in enumerate(studies, start=1):
        print(f"[{i}/{len(studies)}] {sid} ...", end=" ", flush=True)
        t0 = time.monotonic()
        try:
            with study_build(sid, on_wait=_waiting):  # a second build of the study waits for the whole first
                result = signals.finished(job.execute_in_process(partition_key=sid, instance=instance,
                                                                 run_config=run_config, raise_on_error=False,
                                                                 tags=CLI_TAGS))
        except StudyLocked as locked:  # its other build stopped or stuck: this study fails, the next ones go on
            failed.append(sid)
            print(f"FAILED\n  {locked}")
            continue
        except Stopped as stop:
            if stop.completed:
                print(f"{_outcome(stop.result)} ({time.monotonic() - t0:.1f} s)", flush=True)
                print(f"stopped by a signal after {sid}: the studies after it were not built; build again to "
                      "finish", file=sys.stderr)
            else:
                _interrupted_at(sid)
            raise
        except KeyboardInterrupt:  # between Dagster's interrupt contexts: SIGTERM's own handler, or Ctrl-C
            _interrupted_at(sid)
            raise
        took, outcome = time.monotonic() - t0, _outcome(result) if result.success else "FAILED"
        catalog.after_study(changed=outcome != "unchanged")  # a failure may have committed ingest_issues
        if result.success:
            print(f"{outcome} ({took:.1f} s)")
            continue
        failed.append(sid)
        print("FAILED")
        print(_failure_text(result))
    return failed


def _build_in_workers(context, jobs: int, settings: dict, studies: list[str], *,  # type: ignore[no-untyped-def]
                      signals: _Signals, catalog: _CatalogPacer) -> list[str]:
    """``--jobs N``: N worker processes build the studies (:mod:`orchestration.build_pool`); this process prints each
    study's line as it finishes (``[i/n]``: the i-th to finish), rebuilds the catalog at its pace, and on a stopping
    signal launches no more studies and interrupts the running ones, as the one-by-one build interrupts its one.
    The studies that failed; :class:`KeyboardInterrupt` after a signal, once every worker has reported.
    """
    from contextlib import closing

    from orchestration.build_pool import StudyPool

    pool = StudyPool(context, jobs, settings)
    failed: list[str] = []
    interrupted: list[str] = []
    waits: dict[str, str] = {}
    done = 0

    def on_wakeup() -> None:
        if signals.stop_received():
            pool.stop()

    with signals.deferred(), closing(pool.run(studies, wakeup=signals.pipe, on_wakeup=on_wakeup)) as reports:
        for report in reports:
            if report[0] == "waiting":
                waits[report[1]] = report[2]
                continue
            outcome = report[1]
            done += 1
            holder = waits.pop(outcome.sid, None)
            line = f"[{done}/{len(studies)}] {outcome.sid} ... " + (
                f"waiting for another build of it ({holder}) to finish ... " if holder else "")
            if outcome.status == "locked":  # its other build stopped or stuck: this study fails, the others go on
                failed.append(outcome.sid)
                print(f"{line}FAILED\n  {outcome.text}", flush=True)
                continue
            if outcome.status == "INTERRUPTED":
                print(f"{line}INTERRUPTED", flush=True)
                print(f"{outcome.sid}: readers keep seeing its previous load until a build completes it",
                      file=sys.stderr)
                interrupted.append(outcome.sid)
                if not pool.stopping:  # a signal sent to its worker alone: this study fails, the others go on
                    failed.append(outcome.sid)
                continue
            status = outcome.text if outcome.status == "stopped" else outcome.status  # stopped: its run completed
            catalog.after_study(changed=status != "unchanged")  # a failure may have committed ingest_issues
            if status in ("ok", "unchanged"):
                print(f"{line}{status} ({outcome.took:.1f} s)", flush=True)
                continue
            failed.append(outcome.sid)
            print(f"{line}FAILED\n{outcome.text}", flush=True)
    if pool.stopping:
        left = [s for s in studies if s in interrupted or s in pool.not_launched]
        print(f"stopped by a signal: {', '.join(left) if left else 'no study'} not built "
              f"({len(left)} of {len(studies)}); the others are loaded or failed as printed; build again to finish",
              file=sys.stderr)
        raise KeyboardInterrupt
    return failed


def _waiting(holder: str) -> None:
    """Said on the study's progress line when another build of it holds the study."""
    print(f"waiting for another build of it ({holder}) to finish ...", end=" ", flush=True)


def _build_feature_sets(folder: Path, signals: _Signals, *, resources: dict, instance,  # type: ignore[no-untyped-def]
                        run_config: dict) -> list[str]:
    """Materialise the asset of every spec in ``folder`` (as ``dg dev`` with ``OMICSDW_FEATURES``); what failed.

    A spec that does not validate is named by its file and left out; the others are still built, as one failed
    study leaves the others loaded (one broken spec of a folder failed them all with an error naming no file).
    """
    import dagster as dg
    from pydantic import ValidationError

    from orchestration.assets.features import feature_set_asset, spec_files

    try:
        paths = spec_files(folder)
    except OSError as exc:
        print(f"features: {exc}", file=sys.stderr)
        return [f"feature specs in {folder}"]
    assets, failed = [], []
    for path in paths:
        try:
            assets.append(feature_set_asset(path))
        except (OSError, ValueError, ValidationError) as exc:
            text = _spec_error(exc)
            print(f"features: {text if str(path) in text else f'{path.name}: {text}'}", file=sys.stderr)
            failed.append(f"feature spec {path.name}")
    if not paths:
        print(f"features: no *.yaml spec in {folder}")
        return []
    if not assets:
        return failed
    result = signals.finished(dg.materialize(assets, resources=resources, instance=instance, run_config=run_config,
                                      raise_on_error=False))
    for event in result.get_asset_materialization_events():
        meta = {k: v.value for k, v in event.materialization.metadata.items()}
        print(f"{event.materialization.asset_key.to_user_string()}: version {meta['version']}, {meta['rows']} rows x "
              f"{meta['columns']} columns" + (" (unchanged)" if meta.get("unchanged") else "")
              + (f"; not found (NULL columns): {meta['not_found']}" if meta.get("not_found") else "")
              + (f"; NULL after scaling: {meta['unscalable']}" if meta.get("unscalable") else "")
              + (f"; {meta['empty_samples']} samples with no value in any column" if meta.get("empty_samples")
                 else ""))
    for event in result.get_step_failure_events():
        data = event.step_failure_data
        text = (data.user_failure_data.description if data.user_failure_data is not None
                else data.error.message if data.error is not None else "failed without a message")
        print(f"features: FAILED {(text or '').strip()}", file=sys.stderr)
    return failed + ([] if result.success else ["feature sets"])


def _missing(missing: dict[str, list[str]]) -> str:
    return "; ".join(f"{layer}: {', '.join(names)}" for layer, names in missing.items())


def _spec_error(exc: Exception) -> str:
    """A spec error as one line per problem (pydantic's locations and messages, without its links)."""
    from pydantic import ValidationError

    if isinstance(exc, ValidationError):
        return f"{exc.error_count()} problem(s): " + "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}: {e['msg']}" for e in exc.errors())
    return str(exc)


def _validate(args: argparse.Namespace) -> int:
    import json

    import polars as pl

    from transforms.ingest.genes import GeneReference
    from transforms.ingest.study import read_study
    from warehouse.load import study_issues
    from warehouse.summary import format_issue

    root = Path(args.path)
    if not root.is_dir():
        print(f"omicsdw validate: no folder {root}", file=sys.stderr)
        return 2
    studies, problems = _landing_problems(root)
    if not studies and not problems:
        print(f"no study folders (study.yaml or meta_study.txt) in {root}", file=sys.stderr)
        return 1
    reference = GeneReference.load()
    report, n_errors = [], len(problems)
    for sid, folder in studies.items():
        issues = study_issues(read_study(folder, reference=reference))
        if not args.all:
            issues = issues.filter(pl.col("severity") != "info")
        errors = issues.filter(pl.col("severity") == "error").height
        n_errors += errors
        report.append((sid, folder, errors, issues))
    if args.format == "json":
        payload = {"studies": [{"study_id": sid, "folder": str(folder), "errors": errors,
                                "issues": issues.to_dicts()} for sid, folder, errors, issues in report],
                   "landing_problems": problems, "errors": n_errors}
        print(json.dumps(payload, indent=2, default=str))
        return 1 if n_errors else 0
    for problem in problems:
        print(format_issue(problem))
    for sid, folder, errors, issues in report:
        print(f"{sid} ({folder}): {errors} error(s), {issues.height - errors} other issue(s)")
        for row in issues.iter_rows(named=True):
            print("  " + format_issue(row))
    return 1 if n_errors else 0


STATUS_COLUMNS = ("study_id", "attempted_at", "launched_by", "run_id", "result", "published_version", "errors",
                  "warnings", "first_error_at", "first_error")
"""Columns ``omicsdw status`` prints (first_error_at: file:line column)."""


def _status(args: argparse.Namespace) -> int:
    import polars as pl

    from warehouse.catalog import CatalogMissing, connect

    try:
        con = connect(args.warehouse)
    except CatalogMissing as exc:
        print(f"omicsdw status: {exc}", file=sys.stderr)
        return 1
    try:
        if not con.execute("SELECT view_name FROM duckdb_views() WHERE view_name = 'study_status'").fetchall():
            print("omicsdw status: the catalog predates the study_status view; rebuild it (omicsdw build)",
                  file=sys.stderr)
            return 1
        frame = pl.DataFrame(con.sql("SELECT * FROM study_status").to_arrow_table())
    finally:
        con.close()
    if args.study:
        if args.study not in frame["study_id"]:
            print(f"omicsdw status: no attempt to load {args.study} in {args.warehouse} (studies: "
                  f"{', '.join(frame['study_id']) or 'none'})", file=sys.stderr)
            return 1
        frame = frame.filter(pl.col("study_id") == args.study)
    bad = frame.filter(pl.col("result") != "loaded")
    if args.failed:
        frame = bad
    located = pl.concat_str([pl.col("first_error_file"), pl.lit(":"), pl.col("first_error_line").cast(pl.String)
                             .fill_null("?"), pl.lit(" "), pl.col("first_error_column").fill_null("")])
    shown = frame.with_columns(
        pl.col("attempted_at").dt.strftime("%Y-%m-%d %H:%M:%SZ"), pl.col("run_id").str.slice(0, 8),
        located.str.strip_chars().alias("first_error_at"),
        pl.col("first_error").str.slice(0, 120)).select(STATUS_COLUMNS).with_columns(
        pl.all().cast(pl.String).fill_null("-"))
    if shown.height:
        with pl.Config(tbl_rows=-1, tbl_cols=-1, fmt_str_lengths=120, tbl_width_chars=250,
                       tbl_hide_dataframe_shape=True, tbl_hide_column_data_types=True, tbl_formatting="MARKDOWN"):
            print(shown)
    counts = frame.group_by("result").len().sort("result").rows() if frame.height else []
    print(f"{frame.height} stud{'y' if frame.height == 1 else 'ies'}"
          + (": " + ", ".join(f"{n} {result}" for result, n in counts) if counts else ""))
    return 1 if args.failed and bad.height else 0


def _sql(args: argparse.Namespace) -> int:
    import duckdb
    import polars as pl

    from warehouse.catalog import CatalogMissing, connect

    if args.output and args.format == "table":  # the table went to the terminal and no file was written
        print("omicsdw sql: --output writes csv or parquet: add --format csv or --format parquet", file=sys.stderr)
        return 2
    if args.output and not Path(args.output).parent.is_dir():  # checked before the query runs, not after
        print(f"omicsdw sql: no folder {Path(args.output).parent} for {Path(args.output).name}", file=sys.stderr)
        return 2
    try:
        con = connect(args.warehouse)
    except CatalogMissing as exc:
        print(f"omicsdw sql: {exc}", file=sys.stderr)
        return 1
    try:
        statements = con.extract_statements(args.query)
        if not statements:  # "" or a comment: DuckDB returns no result, not an error
            print("omicsdw sql: the query has no statement; give a SELECT, e.g. \"SELECT * FROM studies\"",
                  file=sys.stderr)
            return 2
        if len(statements) > 1:  # DuckDB returns the last statement's result: the others ran unseen
            print(f"omicsdw sql: the query holds {len(statements)} statements and only the last one's rows would "
                  "be shown; run one at a time (or join them: UNION ALL, a WITH clause)", file=sys.stderr)
            return 2
        refused = sorted({s.type.name for s in statements if s.type.name not in SQL_STATEMENTS})
        if refused:
            print(f"omicsdw sql runs read-only queries (SELECT, EXPLAIN); refused: {', '.join(refused)}",
                  file=sys.stderr)
            return 1
        frame = pl.DataFrame(con.sql(args.query).to_arrow_table())
    except duckdb.Error as exc:
        print(f"SQL error: {exc}", file=sys.stderr)
        return 1
    finally:
        con.close()
    if args.format == "table":
        with pl.Config(tbl_rows=args.max_rows, tbl_cols=-1, fmt_str_lengths=80, tbl_width_chars=200):
            print(frame)
    elif args.format == "csv":
        if args.output:
            frame.write_csv(args.output)
        else:
            sys.stdout.write(frame.write_csv())
    else:
        if not args.output:
            print("omicsdw sql: --format parquet needs --output FILE", file=sys.stderr)
            return 2
        frame.write_parquet(args.output)
    return 0


def _lake(args: argparse.Namespace) -> Lake:
    """The lake a verb works on: --lake, else $OMICSDW_LAKE, else the one its catalog was built from, else
    WAREHOUSE/lake.
    """
    from warehouse.storage import open_lake

    lake = open_lake(args.warehouse, args.lake)
    check_reachable(lake)
    return lake


def _remove(args: argparse.Namespace) -> int:
    from warehouse.catalog import refresh_catalog
    from warehouse.lake import StudyLocked
    from warehouse.load import study_folders
    from warehouse.publish import REMOVED, remove_study
    from warehouse.report import remove_study_report

    warehouse_dir = Path(args.warehouse)
    lake = _lake(args)
    if lake.is_local and not Path(lake.root).is_dir():  # a mistyped --warehouse: say so, create nothing
        print(f"omicsdw remove: no lake at {lake.root} (is --warehouse {args.warehouse} right?)", file=sys.stderr)
        return 2

    def waiting(holder: str) -> None:
        print(f"omicsdw remove: waiting for a build of {args.study!r} ({holder}) to finish ...", file=sys.stderr,
              flush=True)

    def absent() -> bool:
        if lake.exists("studies") and lake.last_fingerprint("studies", args.study) not in (None, REMOVED):
            return False
        if args.study in study_folders(lake):  # attempted only (failed, refused): its study_status row goes too
            return False
        known = sorted(lake.scan("studies").select("study_id").unique().collect()["study_id"]) \
            if lake.exists("studies") else []
        near = difflib.get_close_matches(args.study, known, n=3)  # `remove pasila`: say which one was meant
        hint = (f"; did you mean {' or '.join(repr(s) for s in near)}?" if near
                else f"; its studies: {', '.join(known)}" if 0 < len(known) <= 30 else "")
        print(f"omicsdw remove: study {args.study!r} is not in {warehouse_dir}{hint}", file=sys.stderr)
        return True

    if absent():  # before any lock: a typo leaves no lock folder behind
        return 2
    # A build of the study in progress finishes first (its whole run, not a step: removed between two of its
    # steps, the build went on and failed with "no successful ingest"); then the study is looked for again.
    try:
        with lake.study_build(args.study, on_wait=waiting):
            if absent():
                return 2
            # the study's lock, and the global one: the cross-study tables are rewritten too (as registry builds do)
            with lake.study_session(args.study), _lake(args).study_session(None):
                commit = remove_study(lake, args.study)
    except StudyLocked as locked:
        print(f"omicsdw remove: {locked}; nothing removed", file=sys.stderr)
        return 1
    # The study is gone from the lake: its report and Dagster partition go too, even when another table's damage
    # keeps the catalog from being rebuilt (that is said last, with what to run).
    not_rebuilt = None
    try:
        refresh_catalog(lake, warehouse_dir)
    except Exception as exc:
        not_rebuilt = _not_rebuilt(exc, warehouse_dir)
        not_rebuilt.__cause__ = exc
    remove_study_report(warehouse_dir, args.study, lake=lake)
    print(f"removed {args.study!r} from {len(commit.writes)} tables (one commit each); earlier versions stay "
          "readable by Delta version until vacuumed. Delete its landing folder too, or the next build loads it again.")
    status = _remove_partition(args.study)
    if not_rebuilt is not None:
        raise not_rebuilt
    return status


def _remove_partition(study_id: str) -> int:
    """Delete the study's partition from the Dagster instance of $DAGSTER_HOME, if any, so the UI stops listing it.

    Without $DAGSTER_HOME there is no instance to clean (``build`` then uses a temporary one). The landing sensor
    adds the partition again only if the study's folder is still in the landing.
    """
    if not os.environ.get("DAGSTER_HOME"):
        return 0
    import dagster as dg

    from orchestration.partitions import STUDIES

    try:
        with dg.DagsterInstance.get() as instance:
            if not instance.has_dynamic_partition(STUDIES, study_id):
                return 0
            instance.delete_dynamic_partition(STUDIES, study_id)
    except dg.DagsterError as exc:
        print(f"omicsdw remove: the warehouse no longer has {study_id!r}, but its Dagster partition in "
              f"DAGSTER_HOME={os.environ['DAGSTER_HOME']} could not be deleted: {exc}", file=sys.stderr)
        return 1
    print(f"deleted its Dagster partition {study_id!r} (DAGSTER_HOME={os.environ['DAGSTER_HOME']})")
    return 0


def _vacuum(args: argparse.Namespace) -> int:
    from warehouse.maintenance import unreadable_tables, vacuum

    lake = _lake(args)
    if lake.is_local and not Path(lake.root).is_dir():  # a mistyped --warehouse: say so, create nothing
        print(f"omicsdw vacuum: no lake at {lake.root} (is --warehouse {args.warehouse} right?)", file=sys.stderr)
        return 2
    broken = unreadable_tables(lake)
    if broken:  # which files readers need is unknown there: deleting anything could lose a published version
        for table, reason in broken.items():
            print(f"{table}: {reason}", file=sys.stderr)
        print("omicsdw vacuum: nothing deleted; `omicsdw doctor` says how to repair", file=sys.stderr)
        return 1
    with lake.study_session(None):
        done = vacuum(lake, retention_hours=args.retention_hours, dry_run=args.dry_run)
    verb = "would delete" if args.dry_run else "deleted"
    for item in done:
        if item.files or item.kept_versions:
            print(f"{item.table:<24} {verb} {len(item.files):>5} file(s); kept versions read by published "
                  f"studies or stored feature sets: {item.kept_versions or 'none'}")
    print(f"{verb} {sum(len(i.files) for i in done)} file(s) older than {args.retention_hours} h")
    return 0


def _doctor(args: argparse.Namespace) -> int:
    from transforms.ingest.genes import GeneReference
    from warehouse.maintenance import GENES_NOT_SHIPPED, doctor

    lake = _lake(args)
    problems = doctor(lake, Path(args.warehouse))
    release = GeneReference.load().release
    print(f"gene reference: {release.get('source')} (NCBI Gene {release.get('ncbi_gene_date')}; "
          f"{release.get('locations')}); in the lake: "
          + ("none yet" if not lake.exists("genes") and not any(p.startswith("genes:") for p in problems)
             else "not the shipped one" if any(p.startswith(f"genes: {GENES_NOT_SHIPPED}") for p in problems)
             else "unknown (its table is damaged, below)" if any(p.startswith("genes:") for p in problems)
             else "the shipped one"))
    for problem in problems:
        print(problem)
    print("healthy" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


FEATURE_LIST_COLUMNS = ("feature_set", "version", "versions", "created_at", "rows", "columns", "content_hash",
                        "studies")
"""What ``omicsdw features list`` says of each feature set (its newest version; ``--json``: these keys)."""


def feature_set_list(rows: pl.DataFrame) -> pl.DataFrame:
    """One row per feature set, of its newest version (:data:`FEATURE_LIST_COLUMNS`; ``studies``: the studies of
    its rows, from the manifest's spec, comma-separated, or ``all``).
    """
    import json

    import polars as pl

    studies = [", ".join(spec) if isinstance(spec := json.loads(m).get("spec", {}).get("studies", "all"), list)
               else str(spec) for m in rows["manifest"]]
    return (rows.with_columns(pl.Series("studies", studies, dtype=pl.String))
            .group_by("feature_set", maintain_order=True)
            .agg(*(pl.col(c).last() for c in FEATURE_LIST_COLUMNS[1:] if c != "versions"), pl.len().alias("versions"))
            .select(FEATURE_LIST_COLUMNS))


def aligned_table(frame: pl.DataFrame) -> str:
    """``frame`` as plain text: a header, a rule and one line per row, each column padded to its widest cell
    (numbers right-aligned; NULL as ``-``); no shape line, no types, nothing cut.
    """
    numeric = {c for c, t in frame.schema.items() if t.is_numeric()}
    cells = [[("-" if v is None else str(v)) for v in row] for row in frame.iter_rows()]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(frame.columns)]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if c in numeric else v.ljust(w)
                         for v, w, c in zip(values, widths, frame.columns, strict=True)).rstrip()

    return "\n".join([line(list(frame.columns)), line(["-" * w for w in widths]), *(line(r) for r in cells)])


def _features(args: argparse.Namespace) -> int:
    """The features verbs (build / list / show / export): heavy imports here, so the other verbs start fast."""
    import json

    import polars as pl

    from warehouse.catalog import refresh_catalog
    from warehouse.feature_sets import FeatureSetMissing, build_feature_set, feature_set_rows, read_feature_set

    warehouse_dir = Path(args.warehouse)
    if not warehouse_dir.is_dir() and not (args.lake or os.environ.get("OMICSDW_LAKE")):
        print(f"omicsdw features {args.action}: no warehouse at {warehouse_dir} (build studies first, or give "
              "--warehouse)", file=sys.stderr)
        return 2
    lake = _lake(args)
    try:
        if args.action == "build":
            from pydantic import ValidationError

            from schemas.features import load_spec
            from transforms.features.build import FeatureInputMissing

            try:
                spec = load_spec(args.spec)
            except (ValidationError, ValueError, OSError) as exc:
                print(f"omicsdw features build: {args.spec}: {_spec_error(exc)}", file=sys.stderr)
                return 2
            try:
                with lake.study_session(None):
                    built = build_feature_set(lake, spec)
            except (FeatureInputMissing, ValueError) as exc:
                print(f"omicsdw features build: {exc}", file=sys.stderr)
                return 2
            if built.new:
                refresh_catalog(lake, warehouse_dir)
            print(f"{built.name} version {built.version}: {built.rows} rows x {built.columns} columns"
                  + ("" if built.new else " (unchanged: same content as the newest version)"))
            if built.missing:
                print(f"not found (their columns are NULL): {_missing(built.missing)}")
            if built.hints:
                print("official symbols of genes written otherwise (ask for these): "
                      + ", ".join(f"{name} is {symbol}" for name, symbol in built.hints.items()))
            if built.unscalable:
                print(f"NULL after scaling (training SD zero or undefined: fewer than 2 training values, or one "
                      f"value repeated): {', '.join(built.unscalable)}")
            if built.empty_samples:
                shown = ", ".join(sample for _, sample in built.empty_samples[:10])
                more = f" and {len(built.empty_samples) - 10} more" if len(built.empty_samples) > 10 else ""
                print(f"{len(built.empty_samples)} of {built.rows} samples have no value in any column ("
                      + ("filled with the training means" if spec.impute == "train_mean" else "rows of NULLs")
                      + f"; leave them out with the spec's samples filter): {shown}{more}")
            return 0
        if args.action == "list":
            listed = feature_set_list(feature_set_rows(lake))
            if args.json:
                print(json.dumps(listed.with_columns(pl.col("created_at").dt.strftime("%Y-%m-%dT%H:%M:%S%.fZ"))
                                 .to_dicts(), indent=2))
                return 0
            if listed.height == 0:
                print("no feature sets")
                return 0
            print(aligned_table(listed.select(
                "feature_set", "version", "versions", pl.col("created_at").dt.strftime("%Y-%m-%d %H:%M:%SZ"),
                pl.format("{} x {}", "rows", "columns").alias("rows x columns"),
                pl.col("content_hash").str.slice(0, 12).alias("hash"), "studies")))
            print(f"{listed.height} feature set{'' if listed.height == 1 else 's'}; versions and spec: omicsdw "
                  "features show NAME")
            return 0
        if args.action == "show":
            rows = feature_set_rows(lake, args.name)
            if rows.height == 0:
                raise FeatureSetMissing(f"no feature set {args.name!r}")
            for row in rows.iter_rows(named=True):
                manifest = json.loads(row["manifest"])
                print(f"version {row['version']}  created {row['created_at']}  {row['rows']} rows x "
                      f"{row['columns']} columns  hash {row['content_hash']}")
                print(f"  inputs: {json.dumps(manifest['inputs'])}")
                learned = [f"scaling of {len(manifest['scaling'])} columns"] if manifest.get("scaling") else []
                learned += [f"fills of {len(manifest['imputation'])} columns"] if manifest.get("imputation") else []
                if learned:
                    print(f"  learned on {len(manifest['train'])} training samples: {', '.join(learned)} "
                          "(in the manifest: feature_versions)")
                if manifest.get("missing"):
                    print(f"  not found: {json.dumps(manifest['missing'])}")
                if manifest.get("empty_samples"):
                    print(f"  samples with no value in any column: {len(manifest['empty_samples'])}")
                if manifest.get("unscalable"):
                    print(f"  NULL after scaling (training SD zero or undefined): {', '.join(manifest['unscalable'])}")
            print(f"spec (newest): {json.dumps(json.loads(rows['manifest'][-1])['spec'])}")
            return 0
        output = Path(args.output)
        if output.suffix.lower() not in PARQUET_SUFFIXES:  # x.csv was written as Parquet, silently
            print(f"omicsdw features export: {output.name}: export writes Parquet; name the file .parquet "
                  "(for CSV: polars.read_parquet(FILE).write_csv)", file=sys.stderr)
            return 2
        if not output.parent.is_dir():
            print(f"omicsdw features export: no folder {output.parent} for {output.name}", file=sys.stderr)
            return 2
        history = feature_set_rows(lake, args.name)
        # the version is resolved once: a build between the read and the label must not relabel the file
        version = args.version or (int(history["version"][-1]) if history.height else None)
        frame = read_feature_set(lake, args.name, version)
        chosen = history.filter(pl.col("version") == version)
        # which version of which set the file holds travels with it (Parquet key-value metadata)
        frame.write_parquet(output, metadata={"omicsdw.feature_set": args.name,
                                              "omicsdw.version": str(chosen["version"].item()),
                                              "omicsdw.content_hash": str(chosen["content_hash"].item())})
        print(f"wrote {frame.height} rows x {frame.width - 2} features to {args.output}")
        return 0
    except FeatureSetMissing as exc:
        print(f"omicsdw features {args.action}: {exc}", file=sys.stderr)
        return 2


PARQUET_SUFFIXES = (".parquet", ".pq")
"""File name endings ``features export`` writes (it writes Parquet only)."""
WAREHOUSE_HELP = f"warehouse folder: catalog, lake, reports (default: $OMICSDW_WAREHOUSE or {DEFAULT_WAREHOUSE})"
LAKE_HELP = ("lake root: a path, or s3://bucket/prefix configured by the AWS_* variables (default: $OMICSDW_LAKE, "
             "else the lake the catalog was built from, else WAREHOUSE/lake)")


def _hours(text: str) -> int:
    """A retention period: a whole number of hours, 0 or more (delta-rs refuses a negative one with a traceback)."""
    try:
        hours = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of hours") from None
    if hours < 0:
        raise argparse.ArgumentTypeError(f"{hours} is negative; give 0 or more hours")
    return hours


def _jobs(text: str) -> int:
    from orchestration.build_pool import jobs_count

    return jobs_count(text)


def _warehouse_arguments(parser: argparse.ArgumentParser) -> None:
    """--warehouse and --lake, as every verb working on a built warehouse takes them."""
    parser.add_argument("--warehouse", default=DEFAULT_WAREHOUSE, help=WAREHOUSE_HELP)
    parser.add_argument("--lake", help=LAKE_HELP)


def _parser() -> argparse.ArgumentParser:
    from warehouse import __version__

    parser = argparse.ArgumentParser(prog="omicsdw", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--version", action="version", version=f"omicsdw {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    build = sub.add_parser("build", help="load study folders into the warehouse (in-process Dagster runs)",
                           description="Load every study folder of LANDING (or the --study ones) into WAREHOUSE.")
    build.add_argument("--landing", required=True, help="folder of study folders (or one study folder)")
    build.add_argument("--warehouse", default=DEFAULT_WAREHOUSE, help=WAREHOUSE_HELP)
    build.add_argument("--study", action="append", metavar="ID", help="only this study id (repeatable)")
    build.add_argument("--lake", help=LAKE_HELP)
    build.add_argument("--features", default=os.environ.get("OMICSDW_FEATURES"), metavar="DIR",
                       help="folder of feature-set specs (*.yaml) to build after the studies, each as its Dagster "
                            "asset features/<name> (default: $OMICSDW_FEATURES; unset: none)")
    build.add_argument("--no-plots", action="store_true",
                       help="draw no PNG plots (tables and report text only; default: $OMICSDW_PLOTS, else plots)")
    build.add_argument("--jobs", type=_jobs, metavar="N",
                       help="build N studies at once, each in a worker process (default: $OMICSDW_BUILD_JOBS, else "
                            "the usable cores, at most 4; 1: one after the other in this process). Peak memory is up "
                            "to N times one study's: give --jobs 1 for studies near the machine's memory")
    build.add_argument("--prerank-libraries", metavar="NAMES",
                       help="gene-set libraries prerank tests, comma-separated, 'all' for every one (default: "
                            "$OMICSDW_PRERANK_LIBRARIES, else msigdb_hallmark and the warehouse's and study's own "
                            "libraries; ORA tests every library)")
    build.add_argument("--accept-shrink", action="append", metavar="ID",
                       help="load study ID even though it loses samples or assays its published version has "
                            "(repeatable); without it such a load is held: not published, the previous version "
                            "stays, study_status names the assay, its pattern and the samples before / after")
    build.set_defaults(run=_build)

    validate = sub.add_parser("validate", help="check study folders without loading anything",
                              description="Report every problem of the study folders, as build would find it.")
    validate.add_argument("path", help="a study folder or a folder of study folders")
    validate.add_argument("--all", action="store_true", help="also list info issues")
    validate.add_argument("--format", choices=["text", "json"], default="text", help="output format")
    validate.set_defaults(run=_validate)

    sql = sub.add_parser("sql", help="run a read-only SQL query on the catalog",
                         description="Run a SELECT on the warehouse catalog; the session reads the lake only.")
    sql.add_argument("query", help="the SQL query (SELECT or EXPLAIN), e.g. \"SELECT * FROM studies\"")
    sql.add_argument("--warehouse", default=DEFAULT_WAREHOUSE, help=WAREHOUSE_HELP)
    sql.add_argument("--format", choices=["table", "csv", "parquet"], default="table", help="output format")
    sql.add_argument("--output", help="file to write (with --format csv or parquet)")
    sql.add_argument("--max-rows", type=int, default=50, help="rows shown in table format")
    sql.set_defaults(run=_sql)

    status = sub.add_parser("status", help="each study's last attempt, result, issues and first error",
                            description="Print the study_status view: per study the last ingest attempt (when, "
                                        "run, CLI or Dagster), its result (loaded, withheld, failed), the published "
                                        "version, error and warning counts and the first located error.")
    status.add_argument("--warehouse", default=DEFAULT_WAREHOUSE, help=WAREHOUSE_HELP)
    status.add_argument("--study", metavar="ID", help="only this study")
    status.add_argument("--failed", action="store_true",
                        help="only studies whose last attempt failed or was withheld; exit 1 when there is one "
                             "(for a cron job's alert)")
    status.set_defaults(run=_status)

    remove = sub.add_parser("remove", help="remove a study from every table",
                            description="Unpublish a study, then empty its rows in every table (one commit each); "
                                        "with DAGSTER_HOME set, delete its Dagster partition too.")
    remove.add_argument("study", help="study id")
    _warehouse_arguments(remove)
    remove.set_defaults(run=_remove)

    vacuum = sub.add_parser("vacuum", help="delete old files no published study or newest version needs",
                            description="Delete Parquet files older than the retention period that neither the "
                                        "newest table versions nor any published study set reads.")
    _warehouse_arguments(vacuum)
    vacuum.add_argument("--retention-hours", type=_hours, default=168,
                        help="keep files younger than this many hours, 0 or more (default 168)")
    vacuum.add_argument("--dry-run", action="store_true", help="list what would be deleted")
    vacuum.set_defaults(run=_vacuum)

    doctor = sub.add_parser("doctor", help="check a warehouse; exit 1 naming what is damaged",
                            description="Check the catalog is current and opens, every table and published file is "
                                        "readable, no orphan files, the gene reference is the shipped one.")
    _warehouse_arguments(doctor)
    doctor.set_defaults(run=_doctor)

    features = sub.add_parser("features", help="ML feature sets: build from a YAML spec, list, show, export",
                              description="Versioned ML feature sets (one row per sample, <layer>__<symbol> "
                                          "columns) built from the published tables.")
    verbs = features.add_subparsers(dest="action", required=True, metavar="ACTION")
    fbuild = verbs.add_parser("build", help="materialise SPEC.yaml as a new version (unchanged content: none)")
    fbuild.add_argument("spec", help="feature-set spec (YAML, see schemas/features.py)")
    flist = verbs.add_parser("list", help="feature sets with their newest version")
    flist.add_argument("--json", action="store_true", help="print a JSON list (one object per feature set, "
                                                           "newest version) instead of the table")
    fshow = verbs.add_parser("show", help="versions, input table versions and spec of a feature set")
    fshow.add_argument("name")
    fexport = verbs.add_parser("export", help="write one version as a wide Parquet file")
    fexport.add_argument("name")
    fexport.add_argument("--version", type=int, help="version (default: the newest)")
    fexport.add_argument("--output", required=True, help="Parquet file to write")
    for verb in (fbuild, flist, fshow, fexport):
        _warehouse_arguments(verb)
    features.set_defaults(run=_features)
    return parser


UNWRITABLE = (errno.EROFS, errno.EACCES, errno.EPERM)
"""Errors of a warehouse that cannot be written: said in one line, not a traceback (vacuum, remove, features build
on a read-only mount printed one from the lock file's open)."""


def _local_lakes(args: argparse.Namespace) -> list[Path]:
    """The local lake folders a verb may write outside ``WAREHOUSE/lake``: ``--lake``, ``$OMICSDW_LAKE`` and the
    lake the warehouse's catalog was built from (object-store lakes are not folders here).
    """
    from warehouse.storage import is_remote, recorded_lake

    return [Path(str(root).removeprefix("file://"))
            for root in (args.__dict__.get("lake"), os.environ.get("OMICSDW_LAKE"), recorded_lake(Path(args.warehouse)))
            if root and not is_remote(root)]


def _under_warehouse(exc: OSError, args: argparse.Namespace) -> bool:
    """Whether a permission error is about the warehouse folder or its local lake (not an --output file, a
    landing file or a spec): only then is it said to be a read-only warehouse.
    """
    if not exc.filename or not getattr(args, "warehouse", None):
        return False
    roots = [Path(args.warehouse), *_local_lakes(args)]
    path = Path(os.fsdecode(exc.filename)).resolve()
    return any(path.is_relative_to(root.resolve()) for root in roots)


def _lake_failure(exc: BaseException, args: argparse.Namespace) -> str | None:
    """One line saying why a verb stopped on a delta-rs error, or None to show the traceback.

    A commit that lost a race to another writer says so (it is retried by running the verb again); any other
    ``DeltaError`` names doctor only once doctor's own check finds a table whose log cannot be read (a torn or
    missing commit file: ``features export`` of such a warehouse printed a Rust traceback). Other errors (a schema
    mismatch, a network error of the store on a healthy lake) were all called damage, sending users to repair
    tables that were fine: they keep their traceback.
    """
    deltalake = sys.modules.get("deltalake")
    if deltalake is None or not isinstance(exc, deltalake.exceptions.DeltaError):
        return None
    first = str(exc).splitlines()[0][:300] if str(exc) else type(exc).__name__
    if isinstance(exc, deltalake.exceptions.CommitFailedError):
        return (f"another writer committed to the same table at the same time ({first}); this run's commit was "
                "not made: run it again")
    if not hasattr(args, "warehouse") or not hasattr(args, "lake"):
        return None
    from warehouse.maintenance import unreadable_tables

    try:
        damaged = unreadable_tables(_lake(args))
    except Exception:  # the lake cannot be checked either: the original error says more
        return None
    if not damaged:
        return None
    return (f"a table of the lake cannot be read ({first}); omicsdw doctor --warehouse {args.warehouse} names "
            "what is damaged and how to repair it")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``omicsdw`` command."""
    args = _parser().parse_args(argv)
    try:
        return int(args.run(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CatalogNotRebuilt, LakeUnreachable) as exc:
        print(f"omicsdw: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `omicsdw doctor | head`: the reader left; say nothing more, as `cat` does
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # Python's own flush at exit would fail
        return 141
    except OSError as exc:
        if exc.errno not in UNWRITABLE or not _under_warehouse(exc, args):
            raise
        verb = " ".join(v for v in (args.command, getattr(args, "action", None)) if v)
        print(f"omicsdw {verb}: the warehouse cannot be written ({exc}); a warehouse on a read-only mount or a "
              "snapshot can be read (omicsdw sql, doctor), not changed", file=sys.stderr)
        return 1
    except Exception as exc:
        if (message := _lake_failure(exc, args)) is None:
            raise
        verb = " ".join(v for v in (args.command, getattr(args, "action", None)) if v)
        print(f"omicsdw {verb}: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
