"""``omicsdw build --jobs N``: worker processes that each build one study at a time, for the build's parent.

The parent (``warehouse.cli._build``) keeps what is global: the gene reference run, the partitions, the catalog
pacer, the cross-study assets, the progress lines, the summary and the signals. A worker runs the landing sensor's
``study_job`` for the partition it is sent, as the single-process build does (same tags, same resource settings,
the study's build lock), on a Dagster instance of its own (``$DAGSTER_HOME``'s, else a temporary one), and sends
back what the parent prints.

Workers are forked from a ``forkserver`` that imported the build's modules once (:data:`PRELOAD`, ~2.5 CPU s): a
worker pays no imports, and is not forked from the parent, whose polars / DuckDB thread pools run. The forkserver
starts while the parent scans the landing, so its imports overlap the parent's own.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time
import traceback
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

MAX_DEFAULT_JOBS = 4
"""The default number of workers is the usable cores, at most this many (each holds one study in memory)."""
JOBS_ENV = "OMICSDW_BUILD_JOBS"
PRELOAD = ["warehouse.cli", "orchestration.build_pool", "orchestration.definitions", "orchestration.sensors",
           "orchestration.ephemeral", "gseapy", "statsmodels.nonparametric.smoothers_lowess", "matplotlib.figure",
           "matplotlib.backends.backend_agg"]
"""Modules the forkserver imports once for every worker: what a study run imports (measured: a build of airway
loads these beyond ``orchestration.definitions``; ``transforms`` modules come with the definitions)."""


def default_jobs() -> int:
    """Workers of a build: ``$OMICSDW_BUILD_JOBS``, else the usable cores, at most :data:`MAX_DEFAULT_JOBS`."""
    setting = os.environ.get(JOBS_ENV)
    if setting:
        return jobs_count(setting)
    return max(1, min(len(os.sched_getaffinity(0)), MAX_DEFAULT_JOBS))


def jobs_count(text: str) -> int:
    """A number of workers: a whole number, 1 or more (argparse type of ``--jobs``, and the environment's)."""
    import argparse

    try:
        jobs = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of worker processes") from None
    if jobs < 1:
        raise argparse.ArgumentTypeError(f"{jobs} workers: give 1 or more (1: one study after another)")
    return jobs


def start_forkserver() -> multiprocessing.context.ForkServerContext:
    """The forkserver context, its server started now (it imports :data:`PRELOAD` while the parent goes on)."""
    from multiprocessing import forkserver

    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    forkserver.ensure_running()
    return context


_WORKERS_STARTED = False
"""Whether this build started a worker: if not (a build refused after the server started), stopping the server
does not wait for its imports (~4 s of a refused build's wall otherwise)."""


def stop_forkserver() -> None:
    """End the forkserver, if one runs, and wait for it: its workers' CPU time then counts in this process's
    children (``time``, a benchmark's rusage), no server outlives the build, and the next build in this process
    (tests) gets one with its own environment. No public API stops it: ``ForkServer._stop`` is what CPython's
    tests use (a no-op if absent).
    """
    from multiprocessing import forkserver

    global _WORKERS_STARTED
    server = forkserver._forkserver
    pid = getattr(server, "_forkserver_pid", None)
    if not _WORKERS_STARTED and pid is not None:  # a build refused before its studies: no wait for the imports
        with _suppress_gone():
            os.kill(pid, signal.SIGTERM)
    _WORKERS_STARTED = False
    stop = getattr(server, "_stop", None)
    if stop is not None:
        stop()


@dataclass
class StudyOutcome:
    """What a worker sends back for one study: the progress line's parts and the failure text."""

    sid: str
    took: float
    status: str
    """'ok', 'unchanged', 'FAILED', 'locked' (another build held it past the timeout), 'INTERRUPTED' (a signal
    stopped its run) or 'stopped' (a signal came after its run completed: loaded, the build stops)."""
    text: str = ""
    waited_for: str | None = None


def _worker(conn: Connection, settings: dict[str, Any], environment: dict[str, str], cwd: str) -> None:
    """A worker process: builds each study id the parent sends, until ``None`` or the parent's end."""
    os.environ.clear()  # the forkserver's environment is the one of the first build that started it
    os.environ.update(environment)
    os.chdir(cwd)
    signal.signal(signal.SIGTERM, _interrupt)  # idle: the parent may end it; in a run: the run is interrupted
    from warehouse.cli import _instance

    try:
        with _instance() as instance:  # one per worker, open while it lives
            build = _study_builder(settings, instance)
            while (sid := conn.recv()) is not None:
                conn.send(build(sid, lambda holder: conn.send(("waiting", holder))))
    except (EOFError, KeyboardInterrupt, BrokenPipeError):
        return  # the parent ended or stopped the build while this worker was idle


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _study_builder(settings: dict[str, Any], instance: Any) -> Callable[[str, Callable[[str], None]], StudyOutcome]:
    """A function building one study in this worker, as the single-process build's loop does."""
    import dagster as dg

    from orchestration.definitions import STUDY_ASSETS
    from orchestration.partitions import STUDIES
    from orchestration.resources import WarehouseResource
    from orchestration.sensors import study_job
    from warehouse.cli import CLI_TAGS, Stopped, _failure_text, _outcome, _stopped_by_signals
    from warehouse.lake import StudyLocked

    resource = WarehouseResource(**settings)
    job = dg.Definitions(assets=STUDY_ASSETS, jobs=[study_job], resources={"warehouse": resource}).resolve_job_def(
        study_job.name)
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    study_build = resource.lake().study_build

    def build(sid: str, on_wait: Callable[[str], None]) -> StudyOutcome:
        waited: list[str] = []

        def waiting(holder: str) -> None:
            waited.append(holder)
            on_wait(holder)

        t0 = time.monotonic()
        try:
            if not instance.has_dynamic_partition(STUDIES, sid):  # a temporary instance: the parent's are not here
                instance.add_dynamic_partitions(STUDIES, [sid])
            with _stopped_by_signals() as signals, study_build(sid, on_wait=waiting):
                result = signals.finished(job.execute_in_process(partition_key=sid, instance=instance,
                                                                 run_config=quiet, raise_on_error=False,
                                                                 tags=CLI_TAGS))
        except StudyLocked as locked:
            return StudyOutcome(sid, time.monotonic() - t0, "locked", str(locked), waited[0] if waited else None)
        except Stopped as stop:
            return StudyOutcome(sid, time.monotonic() - t0, "stopped" if stop.completed else "INTERRUPTED",
                                _outcome(stop.result) if stop.completed else "", waited[0] if waited else None)
        except KeyboardInterrupt:
            return StudyOutcome(sid, time.monotonic() - t0, "INTERRUPTED", "", waited[0] if waited else None)
        except Exception:  # a study's unexpected error fails that study, not the other workers' studies
            return StudyOutcome(sid, time.monotonic() - t0, "FAILED", "    " + traceback.format_exc().rstrip()
                                .replace("\n", "\n    "), waited[0] if waited else None)
        took = time.monotonic() - t0
        if result.success:
            return StudyOutcome(sid, took, _outcome(result), "", waited[0] if waited else None)
        return StudyOutcome(sid, took, "FAILED", _failure_text(result), waited[0] if waited else None)

    return build


@dataclass
class _Worker:
    process: Any
    conn: Connection
    sid: str | None = None
    started: float = 0.0


class StudyPool:
    """``jobs`` worker processes building studies; :meth:`run` hands them out and yields each outcome as it comes.

    ``stop()`` (a signal reached the parent) launches no more studies and sends SIGTERM to the workers running
    one: each run is interrupted as the single-process build's is (or completes if past its last step).
    """

    def __init__(self, context: multiprocessing.context.ForkServerContext, jobs: int, settings: dict[str, Any]) -> None:
        self.context, self.jobs, self.settings = context, jobs, settings
        self.workers: list[_Worker] = []
        self.stopping = False
        self.restarts = 0

    def _start_worker(self) -> _Worker:
        global _WORKERS_STARTED
        _WORKERS_STARTED = True
        parent, child = self.context.Pipe()
        process = self.context.Process(target=_worker, args=(child, self.settings, dict(os.environ), os.getcwd()),
                                       name="omicsdw-build-worker", daemon=True)
        with _main_module_hidden():
            process.start()
        child.close()
        worker = _Worker(process, parent)
        self.workers.append(worker)
        return worker

    def stop(self) -> None:
        """Launch no more studies; interrupt the ones running."""
        if self.stopping:
            return
        self.stopping = True
        for worker in self.workers:
            if worker.sid is not None and worker.process.pid is not None:
                with _suppress_gone():
                    os.kill(worker.process.pid, signal.SIGTERM)

    def run(self, studies: list[str], *, wakeup: int | None,
            on_wakeup: Callable[[], None]) -> Any:
        """Yield ``("waiting", sid, holder)`` and ``("done", StudyOutcome)`` as workers report; studies left
        unlaunched after :meth:`stop` are in :attr:`not_launched` at the end. ``wakeup``: a file descriptor that
        becomes readable when a signal came (the build's wakeup pipe); ``on_wakeup`` then reads it (and may stop).
        """
        from multiprocessing.connection import wait

        pending = list(studies)
        for _ in range(min(self.jobs, len(pending))):
            self._start_worker()
        try:
            while True:
                handing = not self.stopping
                while handing:  # again after a failed send: the new worker gets the study
                    handing = False
                    for worker in list(self.workers):
                        if worker.sid is None and pending:
                            sid = pending.pop(0)
                            try:
                                worker.conn.send(sid)
                            except OSError:  # an idle worker died (out of memory): its study goes to a new one
                                pending.insert(0, sid)
                                self._discard(worker)
                                self._restart(pending)
                                handing = True
                                continue
                            worker.sid, worker.started = sid, time.monotonic()
                busy = {w.conn: w for w in self.workers if w.sid is not None}
                if not busy:
                    if pending and not self.stopping:  # never: every idle worker was handed a study above
                        raise RuntimeError(f"no build worker left for {', '.join(pending)}")
                    break
                ready = wait([*busy, *([wakeup] if wakeup is not None else [])])
                if wakeup is not None and wakeup in ready:
                    on_wakeup()
                for conn in ready:
                    if conn not in busy:
                        continue
                    worker = busy[conn]  # type: ignore[index]
                    try:
                        message = conn.recv()  # type: ignore[union-attr]
                    except (EOFError, OSError):
                        yield "done", self._lost(worker)
                        if pending and not self.stopping:
                            self._restart(pending)
                        continue
                    if isinstance(message, tuple):
                        yield "waiting", worker.sid, message[1]
                        continue
                    worker.sid, self.restarts = None, 0
                    yield "done", message
            self.not_launched = pending
        finally:
            self.close()

    def _lost(self, worker: _Worker) -> StudyOutcome:
        """The outcome of a study whose worker ended without sending one (killed: out of memory, SIGKILL)."""
        worker.process.join(5)
        self._discard(worker)  # killed if it lingers
        code = worker.process.exitcode
        sid, worker.sid = worker.sid or "", None
        if self.stopping and code in (0, -signal.SIGTERM, -signal.SIGKILL):  # the stop reached it (before its run)
            return StudyOutcome(sid, time.monotonic() - worker.started, "INTERRUPTED")
        how = (f"killed by signal {-code}" + (" (SIGKILL: out of memory?)" if code == -signal.SIGKILL else "")
               if code is not None and code < 0 else f"exit code {code}")
        return StudyOutcome(sid, time.monotonic() - worker.started, "FAILED",
                            f"    its worker process ended without a result ({how}); readers keep seeing its "
                            "previous load")

    def _discard(self, worker: _Worker) -> None:
        """Forget a worker that ended: its pipe closed, its process gone (killed if it lingers)."""
        self.workers.remove(worker)
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)
        worker.conn.close()

    def _restart(self, pending: list[str]) -> None:
        """A new worker for one that died, unless 3 x jobs workers died in a row, no study finishing between
        (then the build ends with the error: a machine that kills every worker is not one to go on building on).
        """
        self.restarts += 1
        if self.restarts > 3 * self.jobs:
            raise RuntimeError(f"{self.restarts} build workers in a row ended without a result; not built: "
                               f"{', '.join(pending) or 'none'}")
        self._start_worker()

    def close(self) -> None:
        """End the workers: idle ones are told to, busy ones (the parent is leaving on an error) are ended."""
        for worker in self.workers:
            with _suppress_gone():
                if worker.sid is None:
                    worker.conn.send(None)
                elif worker.process.pid is not None:
                    os.kill(worker.process.pid, signal.SIGTERM)
        for worker in self.workers:
            worker.process.join(30)
            if worker.process.is_alive():
                worker.process.kill()
                worker.process.join()
            worker.conn.close()
        self.workers = []


@contextmanager
def _main_module_hidden() -> Iterator[None]:
    """A worker needs nothing of ``__main__`` (``python -m warehouse.cli``, pytest's script): multiprocessing has
    every new process run it again as ``__mp_main__`` (a RuntimeWarning for ``-m warehouse.cli``, which the
    forkserver had imported).
    """
    main = sys.modules["__main__"]
    sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        yield
    finally:
        sys.modules["__main__"] = main


def _suppress_gone():  # type: ignore[no-untyped-def]
    from contextlib import suppress

    return suppress(ProcessLookupError, BrokenPipeError, OSError)
