"""The landing sensor: a new or changed study folder (by content hash) becomes a partition and a run."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import dagster as dg

from orchestration.partitions import STUDIES, STUDY_RUN_TAG, studies
from orchestration.resources import WarehouseResource
from transforms.ingest.study import scan_landing, study_files, study_fingerprint

STUDY_GROUPS = ("ingest", "normalise", "signatures", "cross_omics", "qc", "publish", "report")

study_job = dg.define_asset_job("study_job", selection=dg.AssetSelection.groups(*STUDY_GROUPS),
                               description="Ingest one study partition, recompute what depends on it, publish it, "
                                           "write its report.")
cross_study_job = dg.define_asset_job("cross_study_job", selection=dg.AssetSelection.groups("cross_study"),
                                      description="Bring signature_matches up to date (only new or changed pairs).")

study_automation = dg.AutomationConditionSensorDefinition(
    "study_automation", target=dg.AssetSelection.groups(*STUDY_GROUPS), minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Declarative automation of the derived study assets (orchestration.checks.FOLLOWS_INPUTS): a study "
                "partition updated outside a whole study run (e.g. re-ingested alone) is recomputed, published and "
                "reported. On by default, like the landing sensor; Dagster's own automation sensor is off by default.")


def _signature(folder: Path) -> str:
    """Cheap change detector (names, sizes, mtimes); the content hash is only computed when it moves.

    A digest, not the listing: the cursor is stored with every tick (every 30 s, skipped ticks kept 7 days), so
    each study costs the cursor two digests, whatever its number of files.
    """
    files = []
    for path in study_files(folder):
        try:
            info = path.stat()
        except OSError:  # gone since it was listed, or a path too long to stat: the next evaluation looks again
            continue
        files.append((str(path.relative_to(folder)), info.st_size, info.st_mtime_ns))
    return hashlib.blake2b(json.dumps(files).encode(), digest_size=16).hexdigest()


HASH_BUDGET_S = 20.0
"""Seconds of content hashing per evaluation of the landing sensor (at least one study is hashed). Dagster stops a
sensor evaluation after 60 s and keeps no cursor from it, so a first evaluation over a landing of many large studies
would start over for ever; with a budget, the studies left over are hashed by the next evaluations."""


def _read_cursor(cursor: str | None) -> tuple[int, dict[str, list[str]]]:
    """The landing sensor's cursor: its generation and ``[signature, digest]`` per study found at the last evaluation.

    The cursor of sessions 14-18 was the studies alone (``{study: [signature, digest]}``, never a ``studies`` dict):
    read as generation 0, so a running deployment neither fails nor runs its studies again after the upgrade.
    """
    stored = json.loads(cursor) if cursor else {}
    if isinstance(stored.get("studies"), dict):
        return int(stored["generation"]), stored["studies"]
    return 0, stored


@dg.sensor(job=study_job, minimum_interval_seconds=30, default_status=dg.DefaultSensorStatus.RUNNING)
def landing_sensor(context: dg.SensorEvaluationContext, warehouse: WarehouseResource):
    """Register study folders as partitions and request a run for each new or changed one.

    The cursor holds the studies found now (a folder that disappeared leaves it: it does not grow with every study
    the landing ever held) and a generation, raised by each evaluation that requests runs; a registered partition
    stays (its study stays in the warehouse until ``omicsdw remove``).
    """
    generation, seen = _read_cursor(context.cursor)
    current: dict[str, list[str]] = {}
    found, problems = scan_landing(warehouse.landing())
    for problem in problems:  # folders that cannot be a study: no partition, so the sensor log says why
        context.log.error(str(problem))
    registered = set(context.instance.get_dynamic_partitions(STUDIES))
    new_keys = [sid for sid in found if sid not in registered]
    requests, hashed, left, started = [], 0, 0, time.monotonic()
    for sid, folder in found.items():
        signature = _signature(folder)
        if sid in seen and seen[sid][0] == signature:
            current[sid] = seen[sid]
            continue
        if hashed and time.monotonic() - started > HASH_BUDGET_S:
            left += 1  # the next evaluation finds its signature still moved
            if sid in seen:
                current[sid] = seen[sid]
            continue
        hashed += 1
        digest = study_fingerprint(folder)
        if sid not in seen or seen[sid][1] != digest:
            # Dagster drops a request whose run key any earlier run of the sensor had. Keyed on the content (and
            # file times) alone, a study reverted A -> B -> A, restored with its file times (cp -p, rsync -a) or
            # moved away and back never ran again. The generation is the stored one plus one: unique to this
            # evaluation, and the same again for a retried evaluation (Dagster keeps no cursor from a failed one),
            # which then asks under the same key for the same content, so Dagster runs it once
            requests.append(dg.RunRequest(partition_key=sid, run_key=f"{sid}:{digest}:{generation + 1}",
                                          tags={STUDY_RUN_TAG: "true"}))  # a whole-study run: FOLLOWS_INPUTS
        current[sid] = [signature, digest]
    if left:
        context.log.info(f"{hashed} new or changed study folder(s) hashed; {left} left for the next evaluation")
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[studies.build_add_request(new_keys)] if new_keys else [],
        cursor=json.dumps({"generation": generation + 1 if requests else generation, "studies": current}),
    )


MATCH_INPUTS = ("differential_expression", "gene_set_members")
"""Tables whose new content changes ``signature_matches``: any study's contrasts, the user signatures."""


def _changed(record: dg.EventLogRecord) -> bool:
    """A materialisation that wrote rows (commits of unchanged inputs report ``unchanged: True``)."""
    materialization = record.asset_materialization
    if materialization is None:
        return False
    unchanged = materialization.metadata.get("unchanged")
    return not (unchanged is not None and unchanged.value is True)


@dg.sensor(job=cross_study_job, minimum_interval_seconds=60, default_status=dg.DefaultSensorStatus.RUNNING)
def matches_sensor(context: dg.SensorEvaluationContext):
    """Request ``cross_study_job`` when a differential_expression partition (any study) or the gene-set registry
    was written with new content since the last evaluation; re-materialisations of unchanged inputs request
    nothing. The cursor is the last storage id seen per input.
    """
    seen: dict[str, int] = json.loads(context.cursor) if context.cursor else {}
    changed = []
    for table in MATCH_INPUTS:
        records = context.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(table), after_storage_id=seen.get(table)),
            limit=10_000, ascending=True).records
        if records:
            seen[table] = records[-1].storage_id
            changed += [f"{table}:{r.partition_key or '-'}" for r in records if _changed(r)]
    cursor = json.dumps(seen, sort_keys=True)
    if not changed:
        return dg.SensorResult(skip_reason="no new content in differential_expression or gene_set_members",
                               cursor=cursor)
    # the run key is unique per evaluation with changes, so a retried evaluation does not launch twice
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=f"matches:{cursor}",
                                                       tags={"omicsdw/changed": ",".join(sorted(changed))[:200]})],
                           cursor=cursor)
