"""What every asset reports, built once: contract check specs and results of a :class:`warehouse.commit.Commit`."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import dagster as dg

from orchestration.partitions import STUDY_RUN_TAG
from schemas.tables import TABLE_DOCS, TABLES
from warehouse.commit import Commit
from warehouse.study import StudyInputs

CONTRACT = "contract"
Metadata = Mapping[str, object]
"""Materialisation metadata of one table: numbers, text, dicts (JSON) and Dagster values (Markdown, paths)."""


def contract_check(table: str) -> dg.AssetCheckSpec:
    """The blocking check every table asset carries: its rows satisfy the pandera contract."""
    return dg.AssetCheckSpec(CONTRACT, asset=table, blocking=True,
                             description="Rows satisfy the pandera contract in schemas/tables.py.")


REFERENCE_INPUTS = dg.AssetSelection.assets("genes", "gene_xrefs", "gene_sets", "gene_set_members")
"""Warehouse-wide inputs a derived study asset does not follow: one materialisation of them would queue every
study's stages at once (a run per study), and in a deployment run by the sensors they are never materialised
(ingest and the signature stages write them when they changed), which ``eager`` reads as a missing input that
blocks forever. A new gene reference reaches the studies through ``nightly_reharmonisation`` (a re-ingest, which
its derived assets then follow); a changed gene-set library at each study's next run (the signature stages
check the registry)."""
AUTOMATION_RUN_TAG = "dagster/from_automation_condition"
"""Dagster's tag of every run an automation sensor launches."""
TRIGGERING_UPDATE = (
    dg.AutomationCondition.any_new_update_has_run_tags()  # no tag asked: any update within the tick's event ids
    & ~dg.AutomationCondition.all_new_updates_have_run_tags(tag_keys={STUDY_RUN_TAG})
    & ~dg.AutomationCondition.all_new_updates_have_run_tags(tag_keys={AUTOMATION_RUN_TAG})
    & ~dg.AutomationCondition.executed_with_root_target()
).with_label("updated_outside_a_whole_study_run")
"""An input partition updated since the last tick by some other run (a study re-ingested alone from the UI, a stage
materialised by hand), and not by a run that computes the asset too: runs tagged ``omicsdw/study_run``
(the whole ``study_job`` runs of the landing sensor, the nightly schedule and ``omicsdw build``), the automation
sensor's (a tick requests every derived asset downstream of its trigger together, in one run per study), and
Dagster's own rule.

Why not ``eager``: an automation tick is not a snapshot. It captures the newest event id when it starts; the
run-tag conditions read up to it, ``newly_updated`` reads the asset records the tick prefetches a moment later
(with ``DAGSTER_AUTOMATION_TICK_SETTLE_SECONDS`` set, up to the event id), ``in_progress`` reads live, when the
tick gets to it (18 s later on a loaded machine). A study run that wrote ``rna_normalized`` before a tick and
``signature_scores`` during it left the tick seeing the input updated, the asset neither updated nor in progress: it
requested ``signature_scores`` and every stage after it again (3 automation runs after 12 study runs through
``dagster-daemon``, all 19 commits ``unchanged``; ``bench/daemon_night.py``, ``bench/README.md`` "Session 20"), and
with ``newly_updated`` in place of the first operand here an update written during the tick was seen updated without
its run tag (2 runs). Every operand here reads the new materialisations between the previous tick's and this tick's
event ids, per study partition, so no live read decides; an update written during a tick is the next tick's.
Dagster's ``executed_with_root_target`` alone does not catch a study run: it reads only the input's newest
materialisation of any study, often another study's run."""
FOLLOWS_INPUTS = (
    dg.AutomationCondition.any_deps_match(TRIGGERING_UPDATE | dg.AutomationCondition.will_be_requested())
    .ignore(REFERENCE_INPUTS).with_label("any_deps_updated_outside_a_whole_study_run").since_last_handled()
    & ~dg.AutomationCondition.any_deps_missing().ignore(REFERENCE_INPUTS)
    & ~dg.AutomationCondition.any_deps_in_progress().ignore(REFERENCE_INPUTS)
    & ~dg.AutomationCondition.in_progress()
).with_label("follows_inputs")
"""Declarative automation of every derived study asset (all but ingest): recomputed when an input partition of
the study was updated outside a whole-study run (e.g. a study re-ingested from the UI alone), by the daemon's
automation sensor, up to its publication and report, as Dagster's ``eager`` does, without two of its parts: an
input updated by a whole-study run is no trigger (:data:`TRIGGERING_UPDATE`), and neither is a partition becoming
missing (a new study: its ``study_job`` run computes it; with the trigger it had the same race at the tick where the
run's last stages were written)."""


def column_schema(table: str) -> dg.TableSchema:
    """The table's columns as its pandera contract gives them (name, type, description, nullability): the same
    descriptions as the catalog's column comments, shown by the UI on the asset's page (``dagster/column_schema``).
    """
    return dg.TableSchema(columns=[
        dg.TableColumn(name, str(column.dtype), description=column.description,
                       constraints=dg.TableColumnConstraints(nullable=bool(column.nullable)))
        for name, column in TABLES[table].to_schema().columns.items()])


def table_metadata(table: str) -> dict[str, object]:
    """Definition metadata of a table's asset: its column schema (the UI's *Columns*)."""
    return {"dagster/column_schema": column_schema(table)}


def table_spec(table: str, *, group: str, deps: list[str] | None = None, skippable: bool = False,
               derived: bool = False) -> dg.AssetSpec:
    """An asset per warehouse table, described by its contract's grain and columns; ``derived`` ones follow their
    inputs.
    """
    return dg.AssetSpec(table, group_name=group, description=TABLE_DOCS[table], deps=deps or [], kinds={"delta"},
                        skippable=skippable, automation_condition=FOLLOWS_INPUTS if derived else None,
                        metadata=table_metadata(table))


def _value(value: object) -> object:
    if isinstance(value, dict | list):
        return dg.MetadataValue.json(value)
    return value


def results(commit: Commit, metadata: Mapping[str, Metadata] | None = None, *,
            inputs: StudyInputs | None = None) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """One materialisation per written table (rows, Delta version, unchanged, the stage's metadata) followed by its
    contract check, and a failed check for each table whose contract broke (nothing of the unit was written).

    The check follows its materialisation as its own result naming asset and check, not inside
    ``MaterializeResult.check_results``: Dagster then records the same evaluation (targeting that materialisation)
    but looks the target up once, not twice (``bench/README.md``, Dagster's per-study cost).

    ``inputs``: the study inputs of a derived stage; the samples it left out (``qc.exclude_failed``) are added to
    every table's metadata as ``excluded_samples``.
    """
    metadata = metadata or {}
    excluded = inputs.excluded_samples if inputs is not None else {}
    for table in commit.tables:
        failures = commit.failures.get(table, [])
        check = dg.AssetCheckResult(check_name=CONTRACT, asset_key=table, passed=not failures,
                                    metadata={"failures": "\n".join(failures) or "none"})
        write = commit.writes.get(table)
        if write is None:
            yield check
            continue
        extra: dict[str, Any] = {k: _value(v) for k, v in metadata.get(table, {}).items() if v is not None}
        if excluded:
            extra["excluded_samples"] = dg.MetadataValue.json(excluded)
        yield dg.MaterializeResult(asset_key=table, metadata={
            "rows": write.rows, "delta_version": write.version, "unchanged": write.skipped, **extra})
        yield check


def warn_excluded(context: dg.AssetExecutionContext, inputs: StudyInputs) -> None:
    """A warning in the run log naming each sample the stage leaves out, with the QC flags it failed."""
    for note in inputs.exclusion_notes():
        context.log.warning(note)


def raise_on_failures(commit: Commit, what: str) -> None:
    """Fail the step when a contract broke (after its check results were reported)."""
    if commit.failures:
        raise dg.Failure(description=f"{what} breaks its contract; nothing was committed",
                         metadata={t: "\n".join(m) for t, m in commit.failures.items()}, allow_retries=False)
