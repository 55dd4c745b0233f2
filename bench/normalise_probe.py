"""Where ``normalise_study``'s CPU goes: the stage run in this process on an ingested warehouse, with CPU probes.

Runs what the ``normalise_study`` asset body runs (``StudyInputs``, :func:`transforms.expression.study.
normalise_study`, :func:`warehouse.commit.commit_frames`) without Dagster, on a warehouse whose study is already
ingested (``bench_normalise_asset.py`` leaves one), and adds up the process CPU seconds (and wall seconds) spent
inside each probed function; a generator's time is the time spent producing its items. Probes nest: a part inside
another counts in both (``_long_frames`` inside ``normalised_count_rows``). Prints JSON.

    python bench/normalise_probe.py --warehouse DIR --study bench_1000 [--repeats 1]
"""

from __future__ import annotations

import argparse
import functools
import importlib
import inspect
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # as ``omicsdw build`` sets it before numpy loads
SPENT: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])

PROBES = {
    "dense_block": ("transforms.expression.study", "dense_block"),
    "fit_counts": ("transforms.expression.study", "fit_counts"),
    "normalised_count_rows (frames)": ("transforms.expression.study", "normalised_count_rows"),
    "fit_vst": ("transforms.expression.study", "fit_vst"),
    "vst_rows (frames)": ("transforms.expression.study", "vst_rows"),
    "_long_frames (inside the two above)": ("transforms.expression.study", "_long_frames"),
    "stage files (Lake.stage_frames)": ("warehouse.lake", "Lake.stage_frames"),
    "contract checks (validate_rows)": ("schemas.validate", "validate_rows"),
    "Delta commits (Lake.commit)": ("warehouse.lake", "Lake.commit"),
}


def _add(name: str, cpu: float, wall: float) -> None:
    SPENT[name][0] += time.process_time() - cpu
    SPENT[name][1] += time.perf_counter() - wall


def _probe(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
    if inspect.isgeneratorfunction(function):
        @functools.wraps(function)
        def generator(*args: Any, **kwargs: Any) -> Iterator[Any]:
            inner = function(*args, **kwargs)
            while True:
                cpu, wall = time.process_time(), time.perf_counter()
                try:
                    item = next(inner)
                except StopIteration:
                    _add(name, cpu, wall)
                    return
                _add(name, cpu, wall)
                yield item
        return generator

    @functools.wraps(function)
    def timed(*args: Any, **kwargs: Any) -> Any:
        cpu, wall = time.process_time(), time.perf_counter()
        try:
            return function(*args, **kwargs)
        finally:
            _add(name, cpu, wall)
    return timed


def install() -> None:
    for name, (module_name, path) in PROBES.items():
        owner: Any = importlib.import_module(module_name)
        *parents, attribute = path.split(".")
        for parent in parents:
            owner = getattr(owner, parent)
        setattr(owner, attribute, _probe(name, getattr(owner, attribute)))


def run(warehouse: Path, study: str) -> dict[str, object]:
    from transforms.expression import study as stage
    from warehouse.commit import commit_frames
    from warehouse.lake import Lake
    from warehouse.study import StudyInputs

    lake = Lake(warehouse / "lake")
    SPENT.clear()
    cpu, wall = time.process_time(), time.perf_counter()
    inputs = StudyInputs.of(lake, study)
    with tempfile.TemporaryDirectory(prefix="omicsdw-probe-") as workdir:
        output = stage.normalise_study(inputs.scan("rna_counts"), inputs.scan("rna_abundance"),
                                       inputs.scan("sample_attributes").collect(), zscore_reference=None,
                                       workdir=workdir)
        commit = commit_frames(lake, output.frames, tables=list(stage.NORMALISED_TABLES), study_id=study,
                               fingerprint=f"probe-{time.time()}", inputs=inputs.load)
    assert commit.ok, commit.failures
    return {"total": [round(time.process_time() - cpu, 2), round(time.perf_counter() - wall, 2)],
            "parts (cpu_s, wall_s)": {k: [round(v[0], 2), round(v[1], 2)] for k, v in SPENT.items()},
            "rows": {t: w.rows for t, w in commit.writes.items()}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--warehouse", type=Path, required=True, help="a warehouse with the study ingested")
    parser.add_argument("--study", required=True)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    install()
    for _ in range(args.repeats):
        print(json.dumps({"load_avg": os.getloadavg()[0], **run(args.warehouse, args.study)}), flush=True)


if __name__ == "__main__":
    main()
