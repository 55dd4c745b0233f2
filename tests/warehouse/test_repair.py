"""Damage a warehouse the ways disks and people do, and follow what ``omicsdw doctor`` says: the warehouse heals.

Each repair doctor prints must work as written: a study whose published files are missing or torn is removed and
loaded again. A build or a removal that cannot rebuild the catalog says so and names doctor, without a traceback.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.warehouse.catalog_sql import sql
from tests.warehouse.test_catalog import COUNTS, _publish
from warehouse.cli import CatalogNotRebuilt, _CatalogPacer, main
from warehouse.lake import Lake
from warehouse.maintenance import doctor


def test_doctor_names_a_deleted_table_folder_and_says_how_to_get_missing_files_written_again(
        lake: Lake, wh: Path) -> None:
    _publish(lake, wh, "s1", "A", COUNTS)
    (counts,) = list(Path(lake.uri("rna_counts")).rglob("*.parquet"))
    counts.unlink()
    shutil.rmtree(lake.uri("sample_qc"))
    problems = doctor(lake, wh)
    (missing,) = [p for p in problems if "readers need are missing" in p]
    assert missing.startswith("rna_counts: ")
    assert "omicsdw remove s1; omicsdw build --landing DIR --study s1" in missing
    named = [p for p in problems if p.startswith("sample_qc: ")]
    assert len(named) == 1, problems  # said once, as what it is, not as a stale catalog
    assert "is missing (published studies read it)" in named[0]
    assert "stale" not in named[0]


def test_a_catalog_rebuild_that_fails_mid_build_waits_for_the_end_and_then_names_doctor(capsys) -> None:
    class Resource:
        warehouse_dir = "wh"

        def __init__(self) -> None:
            self.calls = 0

        def refresh_catalog(self) -> None:
            self.calls += 1
            raise OSError("No files found that match the pattern lake/rna_counts/part-x.parquet")

    resource = Resource()
    pacer = _CatalogPacer(resource)
    pacer.after_study(changed=True)  # a later study may repair the lake: the build goes on
    assert resource.calls == 1
    with pytest.raises(CatalogNotRebuilt, match=r"omicsdw doctor --warehouse wh"):
        pacer.refresh()  # the end of the build: said


@pytest.mark.slow
def test_following_doctor_repairs_a_missing_file(tmp_path: Path, example_landing,
                                                                      capsys) -> None:
    landing, wh = example_landing(tmp_path, "airway"), tmp_path / "wh"
    build = ["build", "--landing", str(landing), "--warehouse", str(wh), "--no-plots"]
    assert main(build) == 0
    lake = Lake(wh / "lake")
    counts = sql(wh, "SELECT sample_id, feature_id, count FROM rna_counts ORDER BY ALL")
    assert len(counts) == 160  # 20 genes x 8 samples
    (published,) = [Path(lake.uri("rna_counts"), f) for f in lake.study_files("rna_counts", "airway")[1]]
    published.unlink()
    capsys.readouterr()
    assert main(build) == 1  # the study is unchanged, so nothing rewrites the file; the catalog cannot be built
    out = capsys.readouterr()
    assert "Traceback" not in out.out + out.err
    assert f"omicsdw doctor --warehouse {wh}" in out.err
    assert main(["doctor", "--warehouse", str(wh)]) == 1
    advice = [line for line in capsys.readouterr().out.splitlines() if "readers need are missing" in line]
    assert len(advice) == 1
    assert advice[0].startswith("rna_counts: ")
    assert "omicsdw remove airway" in advice[0]
    assert main(["remove", "airway", "--warehouse", str(wh)]) == 0  # the advice, as written
    assert main(build) == 0
    assert main(["doctor", "--warehouse", str(wh)]) == 0
    assert sql(wh, "SELECT sample_id, feature_id, count FROM rna_counts ORDER BY ALL") == counts
    for file in Path(lake.uri("genes")).glob("*.parquet"):
        file.unlink()
    capsys.readouterr()
    assert main(["doctor", "--warehouse", str(wh)]) == 1
    first = capsys.readouterr().out.splitlines()[0]
    assert first.endswith("in the lake: unknown (its table is damaged, below)"), first
