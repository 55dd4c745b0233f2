"""``omicsdw build --jobs N``: studies built by N worker processes give the tables of the one-by-one build, and the
build still reports each study, fails the broken one alone, waits for a study another build holds, and stops on
a signal saying which studies it did not build."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from polars.testing import assert_frame_equal

from orchestration.build_pool import MAX_DEFAULT_JOBS, default_jobs
from tests.warehouse.catalog_sql import sql
from tests.warehouse.test_cli import PER_STUDY, TINY_COUNTS, TINY_STUDY, _study_rows
from warehouse.cli import main

OMICSDW = str(Path(sys.executable).with_name("omicsdw"))
pytestmark = pytest.mark.slow

BROKEN_COUNTS = {"counts.tsv": "gene\tS1\tS2\tS3\nTP53\t10\tmany\t30\nEGFR\t5\t0\t7\n"}
"""A count that is not a number: the study's ingest fails (file, line, column) and nothing of it loads."""


def _progress(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith("[")]


def test_build_with_two_jobs_loads_what_the_one_by_one_build_loads_and_fails_the_broken_study_alone(
        tmp_path: Path, capsys, example_landing, study_folder, examples_built) -> None:
    studies = ("airway", "pasilla", "study_es_0")
    landing, wh = example_landing(tmp_path, *studies), tmp_path / "wh"
    study_folder(landing, TINY_STUDY.format(sid="broken"), BROKEN_COUNTS, name="broken")
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots", "--jobs", "2"]) == 1
    out = capsys.readouterr().out
    assert out.splitlines()[0].endswith("(2 at a time)")
    lines = _progress(out)
    # one line per study as it finishes, numbered in the order they finished
    assert [line.split(" ", 1)[0] for line in lines] == [f"[{i}/4]" for i in range(1, 5)]
    by_study = {line.split()[1]: line for line in lines}
    assert sorted(by_study) == ["airway", "broken", "pasilla", "study_es_0"]
    assert all(by_study[s].split(" ... ")[1].startswith("ok (") for s in studies), lines
    assert by_study["broken"].endswith("broken ... FAILED")
    failure = out.split(by_study["broken"] + "\n", 1)[1].split("\n[", 1)[0]
    assert failure.startswith("    ingest_study: study 'broken' failed with 1 error(s)"), failure  # step, reason
    assert "counts.tsv:2 column 'S2' [invalid_value]" in failure
    assert out.rstrip().endswith("failed: broken")
    assert sql(wh, "SELECT DISTINCT study_id FROM studies ORDER BY 1") == [(s,) for s in studies]
    for table in PER_STUDY:  # as the one-by-one build of the examples, to the last bits of float summation order
        both, serial = _study_rows(wh, table, studies), _study_rows(examples_built[1], table, studies)
        assert both.height > 0 or table == "differential_expression", table
        assert_frame_equal(both, serial, rel_tol=1e-12)
    # each study's attempt is the CLI's, by its own run (each worker has a Dagster instance of its own)
    attempts = sql(wh, "SELECT study_id, launched_by, result, run_id FROM study_status ORDER BY 1")
    assert [row[:3] for row in attempts] == [("airway", "cli", "loaded"), ("broken", "cli", "failed"),
                                             ("pasilla", "cli", "loaded"), ("study_es_0", "cli", "loaded")]
    assert len({row[3] for row in attempts}) == 4
    assert all(row[3] for row in attempts)


def test_build_jobs_is_one_or_more_and_defaults_to_the_usable_cores_at_most_four(tmp_path: Path, capsys,
                                                                                   monkeypatch) -> None:
    (tmp_path / "landing").mkdir()
    with pytest.raises(SystemExit):
        main(["build", "--landing", str(tmp_path / "landing"), "--jobs", "0"])
    assert "0 workers: give 1 or more" in capsys.readouterr().err
    monkeypatch.setenv("OMICSDW_BUILD_JOBS", "two")
    assert main(["build", "--landing", str(tmp_path / "landing")]) == 2
    assert "OMICSDW_BUILD_JOBS: 'two' is not a whole number" in capsys.readouterr().err
    monkeypatch.delenv("OMICSDW_BUILD_JOBS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert default_jobs() == MAX_DEFAULT_JOBS == 4
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {3})
    assert default_jobs() == 1


def test_a_study_another_build_holds_past_the_timeout_fails_alone_in_a_build_with_two_jobs(
        tmp_path: Path, study_folder) -> None:
    """The worker that waits for the lock says whom it waited for on the study's line; the other studies load."""
    from warehouse.storage import open_lake

    landing, wh = tmp_path / "landing", tmp_path / "wh"
    for sid in ("s1", "s2", "s3"):
        study_folder(landing, TINY_STUDY.format(sid=sid), TINY_COUNTS, name=sid)
    held, release = threading.Event(), threading.Event()

    def stopped_build() -> None:  # stands for a stopped `omicsdw build` holding s1
        with open_lake(wh).study_build("s1"):
            held.set()
            release.wait(120)

    holder = threading.Thread(target=stopped_build)
    holder.start()
    try:
        assert held.wait(10)
        done = subprocess.run([OMICSDW, "build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots",
                               "--jobs", "2"], capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMICSDW_BUILD_LOCK_TIMEOUT": "1"})
    finally:
        release.set()
        holder.join(10)
    assert done.returncode == 1, done.stdout + done.stderr
    who = f"process {os.getpid()} on {socket.gethostname()}"
    lines = {line.split()[1]: line for line in _progress(done.stdout)}
    assert lines["s1"].endswith(f"s1 ... waiting for another build of it ({who}) to finish ... FAILED")
    assert f"study 's1' is still being built by {who} after waiting 1 s" in done.stdout
    assert lines["s2"].split(" ... ")[1].startswith("ok (")
    assert lines["s3"].split(" ... ")[1].startswith("ok (")
    assert done.stdout.rstrip().endswith("failed: s1")
    assert sql(wh, "SELECT study_id FROM studies ORDER BY 1") == [("s2",), ("s3",)]


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does to a job it starts in the background


def test_sigterm_stops_a_background_build_with_two_jobs_and_names_the_studies_it_did_not_build(
        tmp_path: Path, study_folder) -> None:
    """``kill`` of the build (its parent process) launches no more studies and interrupts the running ones, as the
    one-by-one build interrupts its one; the build says which studies it did not build, exits 130, and leaves no
    worker behind (the pipes of its output close). A second build finishes the job."""
    landing, wh = tmp_path / "landing", tmp_path / "wh"
    sids = [f"s{i}" for i in range(1, 6)]
    for sid in sids:
        study_folder(landing, TINY_STUDY.format(sid=sid), TINY_COUNTS, name=sid)
    command = [OMICSDW, "build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots", "--jobs", "2"]
    build = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             preexec_fn=_ignore_sigint)
    assert build.stdout is not None
    seen = ""
    while not seen.startswith("[1/5]"):  # the first study finished: a worker is on the third, the other on the second
        seen = build.stdout.readline()
        assert seen, "the build ended before its first study"
    time.sleep(0.3)
    build.send_signal(signal.SIGTERM)
    out = seen + build.stdout.read()  # returns once every process holding the pipe has ended
    err = build.stderr.read() if build.stderr else ""
    build.wait(120)
    build.stdout.close()
    if build.stderr:
        build.stderr.close()
    assert build.returncode == 130, out + err
    loaded = [line.split()[1] for line in _progress(out) if line.split(" ... ")[1].startswith("ok (")]
    interrupted = [line.split()[1] for line in _progress(out) if line.endswith(" ... INTERRUPTED")]
    assert len(loaded) + len(interrupted) == len(_progress(out)) < 5, out
    not_built = [s for s in sids if s not in loaded]
    assert f"stopped by a signal: {', '.join(not_built)} not built ({len(not_built)} of 5)" in err, err
    assert all(f"{sid}: readers keep seeing its previous load" in err for sid in interrupted)
    assert err.endswith("interrupted\n")
    # an interrupted study is not loaded, unless the signal came between its publication and its run's end
    assert set(loaded) <= {s for (s,) in sql(wh, "SELECT study_id FROM studies")} <= set(loaded) | set(interrupted)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert sql(wh, "SELECT study_id FROM studies ORDER BY 1") == [(s,) for s in sids]


@pytest.mark.parametrize(("stopping", "status"), [(True, "INTERRUPTED"), (False, "FAILED")])
def test_a_worker_that_ends_without_a_result_is_interrupted_when_the_build_was_stopping(stopping, status):
    """A stop that reaches a worker before its run begins ends it quietly (exit code 0): its study was not built,
    as an interrupted one (the stop message counts it), not FAILED (review19b); without a stop it failed.
    """
    import multiprocessing

    from orchestration.build_pool import StudyPool, _Worker

    context = multiprocessing.get_context("fork")
    process = context.Process(target=int)
    process.start()
    process.join()
    parent, child = context.Pipe()
    child.close()
    pool = StudyPool(context, 1, {})  # type: ignore[arg-type]
    worker = _Worker(process, parent, sid="s1", started=time.monotonic())
    pool.workers, pool.stopping = [worker], stopping
    outcome = pool._lost(worker)
    assert (outcome.sid, outcome.status) == ("s1", status)
    assert pool.workers == []
    assert parent.closed
    assert ("exit code 0" in outcome.text) is (not stopping)


def test_the_study_of_an_idle_worker_that_died_goes_to_a_new_worker(monkeypatch, tmp_path):
    """A worker dead before it is handed a study (out of memory while idle): the send fails, a new worker builds
    the study. The new worker was never handed it, so the build ended with studies neither built nor named, exit 0
    (review19c).
    """
    import multiprocessing

    from orchestration import build_pool

    died = tmp_path / "died"

    def worker(conn, settings, environment, cwd):  # the first one dies at once; the others build every study
        if not died.exists():
            died.touch()
            return
        while (sid := conn.recv()) is not None:
            conn.send(build_pool.StudyOutcome(sid, 0.0, "ok"))

    start = build_pool.StudyPool._start_worker

    def started(self):  # the first worker is dead before the pool sends it a study
        new = start(self)
        if self.restarts == 0:
            new.process.join(10)
        return new

    monkeypatch.setattr(build_pool, "_worker", worker)
    monkeypatch.setattr(build_pool.StudyPool, "_start_worker", started)
    pool = build_pool.StudyPool(multiprocessing.get_context("fork"), 1, {})  # type: ignore[arg-type]
    reports = list(pool.run(["s1", "s2", "s3"], wakeup=None, on_wakeup=lambda: None))
    assert [(kind, outcome.sid, outcome.status) for kind, outcome in reports] == [
        ("done", "s1", "ok"), ("done", "s2", "ok"), ("done", "s3", "ok")]
    assert pool.not_launched == []
