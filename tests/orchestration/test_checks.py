"""What every table asset reports to Dagster (``orchestration/checks.py``), read back from the run's event log."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from unittest import mock

import dagster as dg
import polars as pl

from orchestration.assets.normalise import NORMALISED, normalised_expression
from orchestration.resources import WarehouseResource
from tests.lake_rows import commit_load


def test_each_contract_check_targets_its_tables_materialisation_of_the_run_looked_up_once(
        tmp_path: Path, airway_long: pl.DataFrame, airway_attributes: pl.DataFrame) -> None:
    """The check names its table's materialisation of this run and partition (Dagster's event pointer, read here
    from the event log by run), and Dagster looks that target up once per check (an embedded
    ``check_results`` costs a second look-up: ``bench/README.md``)."""
    warehouse = WarehouseResource(landing_dir=str(tmp_path / "landing"), warehouse_dir=str(tmp_path / "warehouse"))
    commit_load(warehouse.lake(), "airway", {"rna_counts": airway_long, "sample_attributes": airway_attributes},
                load="v1")
    fetch = dg.DagsterInstance.fetch_materializations
    looked_up: list[dg.AssetKey] = []

    def counted(self: dg.DagsterInstance, records_filter, *args, **kwargs):  # type: ignore[no-untyped-def]
        looked_up.append(records_filter.asset_key)
        return fetch(self, records_filter, *args, **kwargs)

    with (dg.DagsterInstance.ephemeral() as instance,
          mock.patch.object(dg.DagsterInstance, "fetch_materializations", counted)):
        instance.add_dynamic_partitions("studies", ["airway"])
        result = dg.materialize([normalised_expression], partition_key="airway", instance=instance,
                                resources={"warehouse": warehouse})
        records = instance.get_records_for_run(result.run_id,
                                               of_type=dg.DagsterEventType.ASSET_MATERIALIZATION).records
    materialised = {r.asset_key: r.storage_id for r in records}
    assert set(materialised) == {dg.AssetKey(t) for t in NORMALISED}
    evaluations = result.get_asset_check_evaluations()
    assert sorted(e.asset_key.to_user_string() for e in evaluations) == sorted(NORMALISED)
    for evaluation in evaluations:
        assert evaluation.passed
        assert evaluation.check_name == "contract"
        assert evaluation.target_materialization_data is not None
        assert evaluation.target_materialization_data.run_id == result.run_id
        assert evaluation.target_materialization_data.storage_id == materialised[evaluation.asset_key]
    assert Counter(looked_up) == {dg.AssetKey(t): 1 for t in NORMALISED}


def test_the_contract_checks_of_a_bad_study_name_its_located_errors(tmp_path: Path) -> None:
    """A study with errors fails every table's contract check; each check says where (file, line, column, code,
    reason), as the run's failure and ``ingest_issues`` do, not only "see ingest_issues" (trialG)."""
    import shutil

    from orchestration.assets.ingest import ingest_study_tables
    from tests.conftest import EXAMPLES

    landing = tmp_path / "landing"
    shutil.copytree(EXAMPLES / "airway", landing / "airway")
    path = landing / "airway" / "featurecounts.txt"
    lines = path.read_text().splitlines(keepends=True)
    cells = lines[4].split("\t")  # line 5 of the file; column 8 is the second sample
    assert cells[7] == "0"
    assert lines[1].split("\t")[7] == "SRR1039509_subset.bam"
    cells[7] = "abc"
    lines[4] = "\t".join(cells)
    path.write_text("".join(lines))
    warehouse = WarehouseResource(landing_dir=str(landing), warehouse_dir=str(tmp_path / "warehouse"))
    with dg.DagsterInstance.ephemeral() as instance:
        instance.add_dynamic_partitions("studies", ["airway"])
        result = dg.materialize([ingest_study_tables], partition_key="airway", instance=instance,
                                resources={"warehouse": warehouse}, raise_on_error=False)
    assert not result.success
    failed = [e for e in result.get_asset_check_evaluations() if not e.passed]
    assert {e.asset_key.to_user_string() for e in failed} >= {"rna_counts", "samples", "studies"}
    for evaluation in failed:
        text = evaluation.metadata["failures"].value
        assert "featurecounts.txt:5 column 'SRR1039509_subset' [invalid_value] non-numeric value 'abc'" in text
