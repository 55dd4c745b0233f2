"""What the shrink check (``study_would_shrink``, :func:`warehouse.load._shrunk`) adds to a changed load of a large
published study: it reads the (assay, sample_id) pairs of the published rna_counts files and of the staged ones.

Loads a generated GENES x SAMPLES count matrix once (:func:`warehouse.load.load_folder`, the ingest alone), then
times, alternating, the ingest of the study again (a new code fingerprint, so it is read and committed again) and
one read of the sample sets of its committed files (:func:`warehouse.load._sample_sets`); the check does two such
reads (published and staged files) and a few footer lookups. Prints medians and the ratio.

    python bench/bench_shrink_check.py --samples 1000 --repeats 3
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

from bench_ingest import GENES, study_folder, write_counts_tsv  # noqa: E402

from transforms.ingest.genes import GeneReference  # noqa: E402
from warehouse.lake import Lake  # noqa: E402
from warehouse.load import _sample_sets, load_folder  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=BENCH / "out" / "shrink")
    args = parser.parse_args()
    args.workdir.mkdir(parents=True, exist_ok=True)
    tsv = args.workdir / f"counts_{GENES}x{args.samples}.tsv"
    if not tsv.exists():
        write_counts_tsv(GENES, args.samples, tsv)
    folder = study_folder(tsv, args.workdir, samples=args.samples)
    lake, reference = Lake(args.workdir / f"lake_{args.samples}"), GeneReference.load()
    ingest, read = [], []
    for i in range(args.repeats + 1):
        start = time.perf_counter()
        load = load_folder(lake, folder, reference=reference, code_version=f"bench-{time.time_ns()}")
        took = time.perf_counter() - start
        assert load.ok, load.errors
        _, files = lake.study_files("rna_counts", load.study_id)
        start = time.perf_counter()
        sets = _sample_sets(lake.scan_files("rna_counts", files, typed=True))
        taken = time.perf_counter() - start
        assert sum(len(s) for s in sets.values()) == args.samples
        if i:  # the first ingest creates the tables: not timed
            ingest.append(took)
            read.append(taken)
    print(f"{GENES} genes x {args.samples} samples ({GENES * args.samples:,} rna_counts rows), {args.repeats} "
          f"alternations: ingest median {statistics.median(ingest):.2f} s {[round(t, 2) for t in ingest]}; one "
          f"sample-set read median {statistics.median(read):.3f} s {[round(t, 3) for t in read]}; the check's two "
          f"reads / ingest = {2 * statistics.median(read) / statistics.median(ingest):.1%}")


if __name__ == "__main__":
    main()
