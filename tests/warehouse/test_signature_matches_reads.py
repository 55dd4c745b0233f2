"""``write_signature_matches`` reads every study's contrasts through one open of each table, from that study's
files only, whatever the number of studies, and finds the rows of each study's newest commit (those a per-version
read finds).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from deltalake import DeltaTable

from transforms.signatures import connectivity
from transforms.signatures.enrichment import contrast_statistics
from warehouse.commit import commit_frames
from warehouse.lake import Lake
from warehouse.signatures import MATCHES, write_signature_matches

GENES = 40


def _study(lake: Lake, study_id: str, seed: int, fingerprint: str) -> None:
    """Commit a study's row, its 40 mapped features and one contrast's DE rows (statistics from ``seed``)."""
    rng = np.random.default_rng(seed)
    stat = rng.normal(size=GENES)
    features = [f"F{i}" for i in range(GENES)]
    studies = pl.DataFrame({"study_id": [study_id], "name": [study_id], "description": [None], "organism": ["human"],
                            "reference_genome": ["GRCh38"], "source_layout": ["study_yaml"], "content_hash": ["h"],
                            "gene_reference": ["r"], "n_samples": [4], "manifest": ["{}"],
                            "loaded_at": [datetime(2026, 1, 1, tzinfo=UTC)], "gene_reference_fingerprint": ["g"],
                            "code_fingerprint": ["c"]})
    ids = pl.DataFrame({"study_id": study_id, "assay": "counts", "namespace": "symbol", "feature_id": features,
                        "gene_id": list(range(1, GENES + 1)), "status": "mapped", "rule": "official_symbol"})
    de = pl.DataFrame({"study_id": study_id, "contrast": "b_vs_a", "assay": "counts",
                       "gene_id": list(range(1, GENES + 1)), "feature_id": features, "base_mean": 10.0,
                       "log2_fold_change": stat / 2, "lfc_se": 0.5, "stat": stat, "pvalue": 0.5, "padj": 0.5})
    for table, frame in (("studies", studies), ("gene_id_map", ids), ("differential_expression", de)):
        assert commit_frames(lake, [(table, frame)], tables=[table], study_id=study_id, fingerprint=fingerprint).ok


def _by_version(lake: Lake) -> pl.DataFrame:
    """signature_matches computed from scratch on each study's rows at the version of its newest commit."""
    targets, queries = [], []
    for study_id in sorted(lake.scan("studies").collect()["study_id"]):
        stats = contrast_statistics(lake.scan_study("differential_expression", study_id),
                                    lake.scan_study("gene_id_map", study_id))
        for contrast, frame in stats.items():
            version = str(lake.last_fingerprint("differential_expression", study_id))
            targets.append(connectivity.make_target(study_id, contrast, frame, version=version))
            queries.append(connectivity.contrast_query(study_id, contrast, frame, top=10))
    empty = pl.DataFrame(schema=lake.scan(MATCHES).collect_schema())
    return connectivity.match_signatures(queries, targets, empty)[0]


@pytest.mark.parametrize("studies", [3, 6])
def test_signature_matches_open_each_table_once_and_equal_a_read_at_each_studys_version(
        tmp_path: Path, studies: int, monkeypatch: pytest.MonkeyPatch) -> None:
    lake = Lake(tmp_path / "lake")
    for i in range(studies):
        _study(lake, f"s{i}", seed=i, fingerprint="load1")
    _study(lake, "s0", seed=99, fingerprint="load2")  # s0 replaced after the others: newer rows at a newer version
    opened = []
    original = DeltaTable.__init__

    def counting(self: DeltaTable, *args: object, **kwargs: object) -> None:
        opened.append(args[0] if args else kwargs.get("table_uri"))
        original(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(DeltaTable, "__init__", counting)
    with ThreadPoolExecutor(1) as fresh:  # a thread holding no open table (Lake keeps them per thread)
        commit, metadata = fresh.submit(write_signature_matches, Lake(tmp_path / "lake"), top=10).result()
    monkeypatch.undo()
    assert commit.ok
    assert metadata["targets"] == studies
    # opens of the DE and gene map tables: one each, not one per study
    assert sum("differential_expression" in str(u) for u in opened) == 1
    assert sum("gene_id_map" in str(u) for u in opened) == 1
    columns = ["query_study_id", "query_name", "target_study_id", "target_contrast", "score"]
    got = lake.scan(MATCHES).collect().select(columns).sort(columns[:4])
    expected = _by_version(lake).select(columns).sort(columns[:4])
    assert got.height == studies * (studies - 1)  # every contrast against every other study's
    assert got.equals(expected)


def test_signature_matches_read_each_studys_contrasts_from_its_own_files_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A filter on a whole-table scan is not pruned to the study's files (its partition value is a literal column
    of a union of per-partition scans), so each study would read every study's files: n x n reads a build."""
    import warehouse.signatures as signatures

    lake = Lake(tmp_path / "lake")
    for i in range(3):
        _study(lake, f"s{i}", seed=i, fingerprint="load1")
    plans: list[tuple[str, str]] = []

    def recording(de: pl.LazyFrame, gene_map: pl.LazyFrame) -> dict[str, pl.DataFrame]:
        stats = contrast_statistics(de, gene_map)
        (study,) = de.select("study_id").unique().collect()["study_id"]
        plans.append((study, de.explain(optimized=True) + gene_map.explain(optimized=True)))
        return stats

    monkeypatch.setattr(signatures, "contrast_statistics", recording)
    commit, metadata = write_signature_matches(lake, top=10)
    assert commit.ok
    assert metadata["targets"] == 3
    assert sorted(s for s, _ in plans) == ["s0", "s1", "s2"]
    for study, plan in plans:
        assert f"study_id={study}" in plan
        others = [s for s in ("s0", "s1", "s2") if s != study]
        assert not any(f"study_id={o}/" in plan for o in others), (study, plan)
