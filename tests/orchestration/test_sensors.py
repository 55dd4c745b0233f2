"""The landing sensor registers study folders and requests a run only when a folder's content changes."""

import json
import shutil
from pathlib import Path

import dagster as dg
import pytest

from orchestration.resources import WarehouseResource
from orchestration.sensors import landing_sensor
from tests.conftest import EXAMPLES


def _evaluate(instance, landing: Path, cursor: str | None):
    resource = WarehouseResource(landing_dir=str(landing), warehouse_dir=str(landing.parent / "wh"))
    context = dg.build_sensor_context(instance=instance, cursor=cursor, resources={"warehouse": resource})
    return landing_sensor(context)


@pytest.fixture
def instance():
    with dg.DagsterInstance.ephemeral() as instance:
        yield instance


def test_landing_sensor_runs_new_and_changed_studies_once(tmp_path, instance, example_landing):
    landing = example_landing(tmp_path, "airway")

    first = _evaluate(instance, landing, None)
    assert [r.partition_key for r in first.run_requests] == ["airway"]
    assert first.run_requests[0].tags["omicsdw/study_run"] == "true"  # a whole-study run (FOLLOWS_INPUTS)
    assert first.dynamic_partitions_requests[0].partition_keys == ["airway"]

    again = _evaluate(instance, landing, first.cursor)
    assert again.run_requests == []

    samples = landing / "airway" / "samples.tsv"
    samples.write_text(samples.read_text().replace("GSM1275862", "GSM0000000"))
    changed = _evaluate(instance, landing, again.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["airway"]
    assert changed.run_requests[0].run_key != first.run_requests[0].run_key


def _materialise(instance, table: str, *, unchanged: bool, partition: str | None = "airway") -> None:
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key=table, partition=partition, metadata={"rows": 10, "unchanged": unchanged}))


def test_matches_sensor_runs_when_differential_expression_changed_and_not_otherwise(instance):
    from orchestration.sensors import matches_sensor

    def evaluate(cursor):
        return matches_sensor(dg.build_sensor_context(instance=instance, cursor=cursor))

    empty = evaluate(None)
    assert empty.run_requests == []

    _materialise(instance, "differential_expression", unchanged=False)
    first = evaluate(empty.cursor)
    assert len(first.run_requests) == 1
    assert first.run_requests[0].tags["omicsdw/changed"] == "differential_expression:airway"

    assert evaluate(first.cursor).run_requests == []  # nothing new since
    _materialise(instance, "differential_expression", unchanged=True)  # a re-run that wrote nothing new
    _materialise(instance, "rna_normalized", unchanged=False)  # not an input of signature_matches
    quiet = evaluate(first.cursor)
    assert quiet.run_requests == []
    assert quiet.cursor != first.cursor  # the unchanged event is consumed, not seen again

    _materialise(instance, "differential_expression", unchanged=False, partition="pasilla")
    _materialise(instance, "gene_set_members", unchanged=False, partition=None)
    again = evaluate(quiet.cursor)
    assert len(again.run_requests) == 1
    assert again.run_requests[0].tags["omicsdw/changed"] == "differential_expression:pasilla,gene_set_members:-"
    assert again.run_requests[0].run_key != first.run_requests[0].run_key


def test_matches_sensor_targets_the_cross_study_job():
    from orchestration.definitions import defs

    sensor = defs.resolve_sensor_def("matches_sensor")
    assert sensor.job_name == "cross_study_job"
    job = defs.resolve_job_def("cross_study_job")
    assert {k.to_user_string() for k in job.asset_layer.executable_asset_keys} == {"signature_matches"}


def test_landing_sensor_cursor_holds_two_digests_per_study_found_now(tmp_path, instance, example_landing):
    landing = example_landing(tmp_path, "airway", "study_es_0")  # study_es_0: 59 cBioPortal files
    first = _evaluate(instance, landing, None)
    assert sorted(r.partition_key for r in first.run_requests) == ["airway", "study_es_0"]
    cursor = json.loads(first.cursor)["studies"]
    assert sorted(cursor) == ["airway", "study_es_0"]
    # stored with every tick: two 32-hex digests a study, not its file listing (3.7 kB for study_es_0)
    assert all(len(value) == 2 and all(len(d) == 32 for d in value) for value in cursor.values())
    assert len(first.cursor) < 250

    shutil.rmtree(landing / "study_es_0")  # the folder goes: the cursor forgets it
    gone = _evaluate(instance, landing, first.cursor)
    assert gone.run_requests == []
    assert sorted(json.loads(gone.cursor)["studies"]) == ["airway"]


def test_landing_sensor_hashes_within_a_budget_and_finishes_over_later_evaluations(tmp_path, instance,
                                                                                    example_landing, monkeypatch):
    import orchestration.sensors

    # a landing whose first evaluation would outlast Dagster's 60 s: here every study is over the budget
    monkeypatch.setattr(orchestration.sensors, "HASH_BUDGET_S", 0.0)
    landing = example_landing(tmp_path, "airway", "laml", "pasilla")
    cursor, requested = None, []
    for _ in range(3):
        result = _evaluate(instance, landing, cursor)
        assert len(result.run_requests) == 1  # one study hashed per evaluation
        requested += [r.partition_key for r in result.run_requests]
        cursor = result.cursor
    assert sorted(requested) == ["airway", "pasilla", "tcga_laml"]
    assert _evaluate(instance, landing, cursor).run_requests == []


def test_landing_sensor_hashes_a_study_holding_a_latin1_file_name_and_a_tree_deeper_than_the_recursion_limit(
        tmp_path, instance, example_landing):
    """Neither file is read by ingest, but both are hashed: a name that is not UTF-8 and ``Path.rglob`` recursing
    1,500 folders deep raised, so every evaluation failed and no study of the landing got a run."""
    import os

    landing = example_landing(tmp_path, "airway", "pasilla")
    airway = landing / "airway"
    (airway / os.fsdecode(b"notes-caf\xe9.txt")).write_text("x")
    deep = airway
    for _ in range(1_500):
        deep = deep / "d"
        deep.mkdir()
    (deep / "leaf.txt").write_text("x")
    try:
        first = _evaluate(instance, landing, None)
        assert sorted(r.partition_key for r in first.run_requests) == ["airway", "pasilla"]
        (deep / "leaf.txt").write_text("changed")
        changed = _evaluate(instance, landing, first.cursor)
        assert [r.partition_key for r in changed.run_requests] == ["airway"]
    finally:
        while deep != airway:  # bottom up: shutil.rmtree (pytest's clean-up) recurses past the limit
            for leaf in deep.iterdir():
                leaf.unlink()
            deep.rmdir()
            deep = deep.parent


def test_landing_sensor_runs_a_study_reverted_to_an_earlier_content_again(tmp_path, instance, example_landing):
    """Dagster skips a request whose run key an earlier run of the sensor had: keyed on the content alone, a study
    whose bad change was reverted (A, B, A) or that was landed again after it left the landing never ran again.
    """
    import os

    landing = example_landing(tmp_path, "airway")
    samples = landing / "airway" / "samples.tsv"
    original = samples.read_text()
    first = _evaluate(instance, landing, None)
    samples.write_text(original.replace("GSM1275862", "GSM0000000"))
    changed = _evaluate(instance, landing, first.cursor)
    samples.write_text(original)  # the change reverted, as a later file time says
    stat = samples.stat()
    os.utime(samples, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    reverted = _evaluate(instance, landing, changed.cursor)
    keys = [result.run_requests[0].run_key for result in (first, changed, reverted)]
    assert len(set(keys)) == 3
    assert _evaluate(instance, landing, reverted.cursor).run_requests == []  # nothing moved since: no request

    shutil.rmtree(landing / "airway")  # the folder leaves the landing, then lands again (copied: new file times)
    gone = _evaluate(instance, landing, reverted.cursor)
    shutil.copytree(EXAMPLES / "airway", landing / "airway", copy_function=shutil.copy)  # as cp -r
    back = _evaluate(instance, landing, gone.cursor)
    assert [r.partition_key for r in back.run_requests] == ["airway"]
    assert back.run_requests[0].run_key not in keys
    # a retried evaluation (its cursor was not stored) asks under the same key: Dagster runs it once
    assert _evaluate(instance, landing, gone.cursor).run_requests[0].run_key == back.run_requests[0].run_key


def test_landing_sensor_runs_a_study_restored_with_its_original_file_times_again(tmp_path, instance,
                                                                                example_landing):
    """A restore keeping the file times (``cp -p``, ``rsync -a``, a backup) gives back the first listing's names,
    sizes and times: keyed on them, the restored study had the first run's key and Dagster dropped it."""
    landing = example_landing(tmp_path, "airway")
    samples = landing / "airway" / "samples.tsv"
    shutil.copy2(samples, tmp_path / "samples.tsv")  # the backup, with its file time
    first = _evaluate(instance, landing, None)
    samples.write_text(samples.read_text().replace("GSM1275862", "GSM0000000"))
    changed = _evaluate(instance, landing, first.cursor)
    shutil.copy2(tmp_path / "samples.tsv", samples)  # restored as cp -p: content, size and time of A
    restored = _evaluate(instance, landing, changed.cursor)
    keys = [result.run_requests[0].run_key for result in (first, changed, restored)]
    assert len(set(keys)) == 3
    assert _evaluate(instance, landing, restored.cursor).run_requests == []


def test_landing_sensor_runs_a_study_moved_away_and_back_again(tmp_path, instance, example_landing):
    """``mv`` away and back keeps every file time: the folder that lands again has the first listing."""
    landing = example_landing(tmp_path, "airway", "pasilla")
    first = _evaluate(instance, landing, None)
    key = {r.partition_key: r.run_key for r in first.run_requests}["airway"]
    (landing / "airway").rename(tmp_path / "airway")
    gone = _evaluate(instance, landing, first.cursor)
    still_gone = _evaluate(instance, landing, gone.cursor)
    assert gone.run_requests == still_gone.run_requests == []
    (tmp_path / "airway").rename(landing / "airway")
    back = _evaluate(instance, landing, still_gone.cursor)
    assert [r.partition_key for r in back.run_requests] == ["airway"]  # pasilla did not move: no request
    assert back.run_requests[0].run_key != key
    assert _evaluate(instance, landing, back.cursor).run_requests == []


def test_landing_sensor_asks_under_the_same_key_when_an_evaluation_is_retried(tmp_path, instance, example_landing):
    """Dagster keeps no cursor from a failed evaluation and evaluates again from the stored one: the same study and
    content must give the same key, whatever else changed in between, so that Dagster runs it once."""
    landing = example_landing(tmp_path, "airway")
    first = _evaluate(instance, landing, None)
    assert _evaluate(instance, landing, None).run_requests[0].run_key == first.run_requests[0].run_key

    samples = landing / "airway" / "samples.tsv"
    samples.write_text(samples.read_text().replace("GSM1275862", "GSM0000000"))
    changed = _evaluate(instance, landing, first.cursor)
    shutil.copytree(EXAMPLES / "pasilla", landing / "pasilla")  # lands between the failed evaluation and its retry
    retried = _evaluate(instance, landing, first.cursor)
    assert {r.partition_key: r.run_key for r in retried.run_requests}["airway"] == changed.run_requests[0].run_key


def test_landing_sensor_reads_the_cursor_of_the_previous_release(tmp_path, instance, example_landing):
    """A running deployment's stored cursor (``{study: [signature, digest]}``, sessions 14-18) must neither fail the
    sensor nor re-run its studies; a change afterwards runs under a key no earlier release used."""
    from orchestration.sensors import _signature
    from transforms.ingest.study import study_fingerprint

    landing = example_landing(tmp_path, "airway", "pasilla")
    old = {sid: [_signature(landing / sid), study_fingerprint(landing / sid)] for sid in ("airway", "pasilla")}
    previous_keys = {f"airway:{old['airway'][1]}", f"airway:{old['airway'][1]}:{old['airway'][0]}"}
    unchanged = _evaluate(instance, landing, json.dumps(old))
    assert unchanged.run_requests == []

    samples = landing / "airway" / "samples.tsv"
    samples.write_text(samples.read_text().replace("GSM1275862", "GSM0000000"))
    changed = _evaluate(instance, landing, unchanged.cursor)
    assert [r.partition_key for r in changed.run_requests] == ["airway"]
    assert changed.run_requests[0].run_key not in previous_keys
    assert _evaluate(instance, landing, changed.cursor).run_requests == []
    # read straight from the old cursor too (the first tick after the upgrade sees the change)
    assert [r.partition_key for r in _evaluate(instance, landing, json.dumps(old)).run_requests] == ["airway"]
