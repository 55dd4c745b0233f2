"""One count study through the Dagster assets of ingest + normalise only, one process, per asset CPU and wall.

``omicsdw build`` runs every study asset (for the whole build at 20,000 samples use ``fixed_cost_probe.py --
build``, which also gives each asset's CPU and peak RSS); this isolates ingest + normalise + VST, the part the
issue's "whole study build" ratio is about. It materialises the reference tables, then ``ingest_study`` and
``normalise_study`` (sample factors, ``rna_normalized``, ``rna_vst``) of the study, in-process with Dagster as the
CLI does, and prints each asset's CPU and wall seconds; ``--qc`` adds ``sample_qc`` before normalisation (as the
build runs it; normalisation reads it only for ``qc.exclude_failed``). Run it under ``/usr/bin/time -v`` for the
peak RSS of the whole process:

    /usr/bin/time -v python bench/bench_normalise_asset.py --landing bench/out/landing_20000 --warehouse DIR [--qc]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--landing", type=Path, required=True, help="a landing folder with one count study")
    parser.add_argument("--warehouse", type=Path, required=True, help="a fresh warehouse folder")
    parser.add_argument("--qc", action="store_true", help="materialise sample_qc before normalise_study")
    args = parser.parse_args()
    os.environ.setdefault("DAGSTER_TELEMETRY_DISABLED", "1")
    import dagster as dg

    from orchestration.assets.ingest import ingest_study_tables
    from orchestration.assets.normalise import normalised_expression
    from orchestration.assets.qc import sample_qc
    from orchestration.definitions import REFERENCE_ASSETS
    from orchestration.partitions import STUDIES
    from orchestration.resources import WarehouseResource
    from transforms.ingest.study import scan_landing

    studies, _ = scan_landing(args.landing)
    (study,) = studies
    resource = WarehouseResource(landing_dir=str(args.landing.resolve()), warehouse_dir=str(args.warehouse),
                                 refresh_catalog_on_commit=False)
    quiet = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}
    spent: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="omicsdw-bench-home-") as home:
        instance = dg.DagsterInstance.local_temp(home)
        instance.add_dynamic_partitions(STUDIES, [study])
        steps = [("reference tables", REFERENCE_ASSETS, None), ("ingest_study", [ingest_study_tables], study),
                 *([("sample_qc", [sample_qc], study)] if args.qc else []),
                 ("normalise_study", [normalised_expression], study)]
        for name, assets, partition in steps:
            cpu, wall = time.process_time(), time.perf_counter()
            dg.materialize(assets, partition_key=partition, resources={"warehouse": resource}, instance=instance,
                           run_config=quiet)
            spent[name] = {"cpu_s": round(time.process_time() - cpu, 2), "wall_s": round(time.perf_counter() - wall, 2)}
            print(f"{name}: {spent[name]}", file=sys.stderr, flush=True)
    print(json.dumps({"study": study, "load_avg_end": os.getloadavg(), "steps": spent}))


if __name__ == "__main__":
    main()
