"""Beyond one machine: the executor is chosen by OMICSDW_EXECUTOR, the Kubernetes definitions load and the shipped
instance / run config files validate against Dagster's schemas (no cluster needed); study runs share a pool."""

from __future__ import annotations

import shutil
from pathlib import Path

import dagster as dg
import pytest
import yaml
from dagster._config import validate_config
from dagster._core.instance.config import PoolGranularity, dagster_instance_config
from dagster_celery import celery_executor
from dagster_k8s import K8sRunLauncher, k8s_job_executor

from orchestration.definitions import STUDY_ASSETS, definitions, defs
from orchestration.executors import executor_from_env, kubernetes, steps_share_process
from orchestration.partitions import STUDY_POOL

INSTANCE = Path(__file__).resolve().parents[2] / "orchestration" / "instance"


def _yaml(path: Path) -> dict:
    with open(path) as fh:
        return yaml.safe_load(fh)


def test_executor_from_env_is_in_process_unless_multiprocess_celery_or_k8s_is_named():
    assert executor_from_env({}).name == "in_process"
    multiprocess = executor_from_env({"OMICSDW_EXECUTOR": "multiprocess"})
    assert multiprocess.name == "multiprocess"
    assert multiprocess.apply_config_mapping({}).value["config"]["start_method"] == {"spawn": {}}
    assert executor_from_env({"OMICSDW_EXECUTOR": "celery"}).name == "celery"
    assert executor_from_env({"OMICSDW_EXECUTOR": "k8s"}).name == "k8s"
    with pytest.raises(ValueError, match="choose one of in_process, multiprocess, celery, k8s"):
        executor_from_env({"OMICSDW_EXECUTOR": "dask"})


def test_only_runs_in_one_process_keep_a_stage_block_for_a_later_step():
    # normalise keeps its VST block for the structure step only when that step runs in the same process
    # (execute_in_process, what `omicsdw build` and dg.materialize use, is covered by test_qc_assets)
    assert steps_share_process(executor_from_env({}))
    for name in ("multiprocess", "celery", "k8s"):
        assert not steps_share_process(executor_from_env({"OMICSDW_EXECUTOR": name}))


def test_celery_executor_reads_broker_and_backend_when_a_run_starts(monkeypatch):
    executor = executor_from_env({"OMICSDW_EXECUTOR": "celery"})
    monkeypatch.setenv("OMICSDW_CELERY_BROKER", "redis://broker:6379/0")
    monkeypatch.setenv("OMICSDW_CELERY_BACKEND", "redis://broker:6379/1")
    config = executor.apply_config_mapping({}).value["config"]
    assert (config["broker"], config["backend"]) == ("redis://broker:6379/0", "redis://broker:6379/1")


def test_k8s_definitions_load_and_run_every_job_step_as_a_kubernetes_job():
    k8s = definitions(kubernetes())
    for name in ("study_job", "cross_study_job"):
        assert k8s.resolve_job_def(name).executor_def.name == "k8s"
    assert k8s.resolve_asset_graph().get_all_asset_keys() == defs.resolve_asset_graph().get_all_asset_keys()
    assert k8s.resolve_sensor_def("landing_sensor").job_name == "study_job"


def test_k8s_instance_config_validates_against_the_instance_and_launcher_schemas(tmp_path):
    config, _ = dagster_instance_config(str(INSTANCE / "k8s"))  # raises on a key the instance does not know
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    checked = validate_config(dg.Shape(K8sRunLauncher.config_type()), launcher["config"])
    assert checked.success, checked.errors
    misspelt = validate_config(dg.Shape(K8sRunLauncher.config_type()), {**launcher["config"], "job_namespce": "x"})
    assert not misspelt.success  # the check is strict: a typo fails
    assert config["concurrency"]["pools"]["granularity"] == "op"


def test_k8s_run_config_validates_and_names_study_job_steps():
    execution = _yaml(INSTANCE / "k8s" / "run_config.yaml")["execution"]["config"]
    checked = validate_config(k8s_job_executor.config_schema.config_type, execution)
    assert checked.success, checked.errors
    steps = {node.name for node in defs.resolve_job_def("study_job").graph.node_dict.values()}
    assert set(execution["per_step_k8s_config"]) <= steps


def test_celery_worker_config_validates_against_the_executor_schema():
    execution = _yaml(INSTANCE / "celery.yaml")["execution"]["config"]
    checked = validate_config(celery_executor.config_schema.config_type, execution)
    assert checked.success, checked.errors
    assert execution["broker"] == {"env": "OMICSDW_CELERY_BROKER"}


def test_every_study_step_is_in_the_study_pool_and_nothing_else_is():
    job = defs.resolve_job_def("study_job")
    assert {node.name: node.definition.pool for node in job.graph.node_dict.values()} == {
        step.op.name: STUDY_POOL for step in STUDY_ASSETS}
    cross = defs.resolve_job_def("cross_study_job")
    assert {node.definition.pool for node in cross.graph.node_dict.values()} == {None}


def test_instance_config_limits_study_runs_by_pool_and_one_run_per_study(tmp_path):
    shutil.copy(INSTANCE / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        concurrency = instance.get_concurrency_config()
    assert concurrency.pool_config.pool_granularity == PoolGranularity.RUN
    assert concurrency.pool_config.default_pool_limit == 2
    assert concurrency.run_queue_config is not None
    assert concurrency.run_queue_config.tag_concurrency_limits == [
        {"key": "dagster/partition", "value": {"applyLimitPerUniqueValue": True}, "limit": 1}]
