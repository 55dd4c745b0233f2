"""Does Dagster's per-run cost grow with the runs an in-memory instance already holds (as in one ``omicsdw build``)?

A partitioned job shaped like a small study's (a 30-table multi-asset and one asset after it) runs once per new
dynamic partition on one ephemeral instance; prints the CPU seconds per run by blocks of runs and the fitted slope.

    python bench/dagster_run_growth.py [--runs 200]
"""

import argparse
import os
import statistics
import time

os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")

import dagster as dg

PARTITIONS = dg.DynamicPartitionsDefinition(name="s")
SPECS = [dg.AssetSpec(f"t{i}") for i in range(30)]


@dg.multi_asset(specs=SPECS, partitions_def=PARTITIONS)
def stage():  # type: ignore[no-untyped-def]
    """Thirty tables, one materialisation each (a study's tables, no work)."""
    for spec in SPECS:
        yield dg.MaterializeResult(asset_key=spec.key, metadata={"rows": 1})


@dg.asset(partitions_def=PARTITIONS, deps=[s.key for s in SPECS])
def after() -> None:
    """A step reading every table's data version, as the study's later stages do."""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    runs = parser.parse_args().runs
    job = dg.Definitions(assets=[stage, after], jobs=[dg.define_asset_job("j", selection=[stage, after])]
                         ).resolve_job_def("j")
    instance = dg.DagsterInstance.ephemeral()
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    cpu = []
    for k in range(runs):
        instance.add_dynamic_partitions("s", [f"p{k}"])
        start = time.process_time()
        job.execute_in_process(partition_key=f"p{k}", instance=instance, run_config=quiet)
        cpu.append(time.process_time() - start)
    block = max(1, runs // 5)
    for first in range(0, runs, block):
        print(f"runs {first + 1}-{min(first + block, runs)}: {statistics.fmean(cpu[first:first + block]) * 1000:.1f} "
              "ms CPU a run")
    slope = statistics.linear_regression(range(2, runs + 1), cpu[1:]).slope
    print(f"fitted growth over runs 2-{runs}: {slope * 1000:.2f} ms CPU per run already in the instance; load "
          f"average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
