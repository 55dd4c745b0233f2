"""The study job on Dagster's Celery executor: a real Redis broker, two ``dagster-celery`` workers, and the same
tables as an in-process materialisation of the same study.

The test starts Debian's ``redis-server`` on a free port with a temporary folder and two solo-pool workers (each
a process group, stopped by the fixtures whatever happens), runs ``dg launch --job study_job`` with
``OMICSDW_EXECUTOR=celery`` against a temporary sqlite ``DAGSTER_HOME`` (the workers record their step events in
the same run storage), and compares every Delta table row for row with ``dg.materialize`` of the study assets
into another warehouse.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import redis
from polars.testing import assert_frame_equal

from orchestration.definitions import STUDY_ASSETS
from orchestration.resources import WarehouseResource
from warehouse.lake import Lake

REPO = Path(__file__).resolve().parents[2]
INSTANCE = REPO / "orchestration" / "instance"
BIN = Path(sys.executable).parent
STUDY = "airway"
pytestmark = pytest.mark.slow


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Stop a process group this test started (its leader is ``proc``): a warm shutdown, then kill what is left
    of the group (celery under dagster-celery)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(30)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A redis-server of this test only: a free port on 127.0.0.1, its folder in tmp_path, no persistence."""
    server = shutil.which("redis-server")
    assert server, "redis-server is missing: install Debian's redis-server package (.ci/run does)"
    folder = tmp_path / "redis"
    folder.mkdir()
    log = folder / "redis.log"
    for _attempt in range(3):  # another process may take the free port before redis binds it
        port = _free_port()
        with open(log, "ab") as out:
            proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(folder),
                                     "--save", "", "--appendonly", "no"],
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            client = redis.Redis(host="127.0.0.1", port=port)
            deadline = time.monotonic() + 30
            while proc.poll() is None and time.monotonic() < deadline:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.1)
            client.close()
            if proc.poll() is None:
                yield f"redis://127.0.0.1:{port}"
                return
        finally:
            _stop(proc)
    pytest.fail(f"redis-server did not start:\n{_tail(log)}")


@dataclass
class Workers:
    logs: dict[str, Path]
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def wait_ready(self, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for proc, (name, log) in zip(self.procs, self.logs.items(), strict=True):
                assert proc.poll() is None, f"worker {name} exited:\n{_tail(log)}"
            if all(" ready." in log.read_text(errors="replace") for log in self.logs.values()):
                return
            time.sleep(0.5)
        pytest.fail("celery workers not ready:\n" + "\n".join(_tail(log) for log in self.logs.values()))


@pytest.fixture
def run_env(tmp_path: Path, redis_url: str, example_landing) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """Environment of the code location and of the workers: instance, landing, warehouse, executor, broker."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(INSTANCE / "dagster.yaml", home / "dagster.yaml")
    # create the instance's storage here, once: two workers starting on an empty sqlite home race to stamp its
    # schema (alembic: "more than one head")
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("studies", [STUDY])
    landing = example_landing(tmp_path, STUDY)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMICSDW_", "DAGSTER_"))}
    return {**env, "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}", "DAGSTER_HOME": str(home),
            "DO_NOT_TRACK": "1", "OMICSDW_LANDING": str(landing), "OMICSDW_WAREHOUSE": str(tmp_path / "wh_celery"),
            "OMICSDW_EXECUTOR": "celery", "OMICSDW_CELERY_BROKER": f"{redis_url}/0",
            "OMICSDW_CELERY_BACKEND": f"{redis_url}/1"}


@pytest.fixture
def celery_workers(tmp_path: Path, run_env: dict[str, str]) -> Iterator[Workers]:
    """Two dagster-celery workers (solo pool: one step at a time each, no forked children), started at once and
    importing the definitions before their first task."""
    workers = Workers({name: tmp_path / f"{name}.log" for name in ("w1", "w2")})
    try:
        for name, log in workers.logs.items():
            with open(log, "wb") as out:
                workers.procs.append(subprocess.Popen(
                    [str(BIN / "dagster-celery"), "worker", "start", "-A", "dagster_celery.app",
                     "-y", str(INSTANCE / "celery.yaml"), "-n", name, "-i", "orchestration.definitions", "--",
                     "--pool=solo", "--without-mingle", "--without-gossip"],
                    env=run_env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True))
        yield workers
    finally:
        for proc in workers.procs:
            _stop(proc)


def _delta_tables(wh: Path) -> dict[str, pl.DataFrame]:
    """Every Delta table of the warehouse at its newest version, without what differs between two builds of the
    same input: load and publication times and the Parquet file names ``study_versions`` lists."""
    lake = Lake(wh / "lake")
    found = {}
    for folder in sorted((wh / "lake").iterdir()):
        if (folder / "_delta_log").is_dir():
            frame = lake.scan(folder.name).collect()
            drop = [c for c, t in frame.schema.items() if isinstance(t, pl.Datetime) or c == "files"]
            frame = frame.drop(drop)
            found[folder.name] = frame.sort([c for c, t in frame.schema.items() if not isinstance(t, pl.List)],
                                            nulls_last=True)
    return found


def test_study_job_on_celery_with_two_workers_gives_the_in_process_tables(tmp_path, run_env, celery_workers):
    home = Path(run_env["DAGSTER_HOME"])
    # the run's steps queue in Redis while the workers start; the reference runs meanwhile in this process
    log = tmp_path / "launch.log"
    with open(log, "wb") as out:
        launch = subprocess.Popen([str(BIN / "dg"), "launch", "-m", "orchestration.definitions", "--job", "study_job",
                                   "--partition", STUDY], env=run_env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        reference = tmp_path / "wh_in_process"
        with dg.DagsterInstance.ephemeral() as instance:
            instance.add_dynamic_partitions("studies", [STUDY])
            resource = WarehouseResource(landing_dir=run_env["OMICSDW_LANDING"], warehouse_dir=str(reference))
            assert dg.materialize(STUDY_ASSETS, partition_key=STUDY, instance=instance,
                                  resources={"warehouse": resource}).success
        celery_workers.wait_ready()
        assert launch.wait(900) == 0, _tail(log, 60)
    finally:
        _stop(launch)

    with dg.DagsterInstance.from_config(str(home)) as instance:
        (run,) = instance.get_runs()
        records = instance.get_records_for_run(run.run_id, limit=100_000).records
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/partition"] == STUDY
    events = [r.event_log_entry.dagster_event for r in records if r.event_log_entry.dagster_event]
    hosts = {e.step_key: e.engine_event_data.metadata["Celery worker"].value for e in events
             if e.is_engine_event and "Celery worker" in e.engine_event_data.metadata}
    assert set(hosts) == {step.op.name for step in STUDY_ASSETS}  # every step ran as a Celery task
    assert {host.split("@")[0] for host in hosts.values()} == {"w1", "w2"}  # on both workers
    assert sum(e.event_type == dg.DagsterEventType.STEP_SUCCESS for e in events) == len(STUDY_ASSETS)

    celery, in_process = _delta_tables(Path(run_env["OMICSDW_WAREHOUSE"])), _delta_tables(reference)
    assert sorted(celery) == sorted(in_process)
    assert {"rna_counts", "rna_normalized", "differential_expression", "sample_qc", "study_versions"} <= set(celery)
    for table, frame in in_process.items():
        try:
            assert_frame_equal(celery[table], frame, rel_tol=1e-9, abs_tol=1e-12)
        except AssertionError as exc:
            raise AssertionError(f"{table}: {exc}") from None
    assert celery["rna_counts"].height == 160  # 20 featureCounts genes x 8 airway runs (examples/airway)
    assert (Path(run_env["OMICSDW_WAREHOUSE"]) / "reports" / STUDY / "index.html").is_file()
