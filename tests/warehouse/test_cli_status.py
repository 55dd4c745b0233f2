"""``omicsdw status`` and the study_status view: one place to see a night, failed first loads included (trialG)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from warehouse.catalog import connect
from warehouse.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A build of airway (good) and bad (airway under another id, a ragged 10th line of samples.tsv)."""
    root = tmp_path_factory.mktemp("status")
    landing = root / "landing"
    shutil.copytree(EXAMPLES / "airway", landing / "airway")
    shutil.copytree(EXAMPLES / "airway", landing / "bad")
    manifest = landing / "bad" / "study.yaml"
    manifest.write_text(manifest.read_text().replace("study_id: airway", "study_id: bad"))
    samples = landing / "bad" / "samples.tsv"
    samples.write_text(samples.read_text() + "SRRX\tNX\tuntrt\tuntrt\tNX\tGSMX\tEXTRA\n")  # 7 fields, header 6
    assert main(["build", "--landing", str(landing), "--warehouse", str(root / "wh")]) == 1  # bad fails
    return root / "wh"


def test_study_status_shows_a_failed_first_load_with_its_located_error_beside_a_loaded_study(night: Path) -> None:
    con = connect(night)
    try:
        rows = {r[0]: r for r in con.execute(
            "SELECT study_id, launched_by, result, published_version, errors, first_error_file, first_error_line, "
            "first_error, run_id IS NOT NULL, attempted_at IS NOT NULL FROM study_status").fetchall()}
        published = con.execute("SELECT delta_version FROM study_versions WHERE study_id = 'airway' "
                                "AND table_name = 'studies'").fetchall()
    finally:
        con.close()
    assert set(rows) == {"airway", "bad"}  # bad never reached studies, study_versions: it is listed all the same
    _, by, result, version, errors, file, line, reason, has_run, has_time = rows["bad"]
    assert (by, result, version, errors, file, line) == ("cli", "failed", None, 1, "samples.tsv", 10)
    assert reason.startswith("ragged_row:")
    assert has_run
    assert has_time
    assert rows["airway"][1:6] == ("cli", "loaded", published[0][0], 0, None)


def test_status_prints_a_table_and_exits_1_with_failed_only_when_a_study_failed(night: Path, capsys) -> None:
    assert main(["status", "--warehouse", str(night)]) == 0
    out = capsys.readouterr().out
    assert "| airway" in out
    assert "| bad" in out
    assert "samples.tsv:10" in out
    assert "2 studies: 1 failed, 1 loaded" in out
    assert main(["status", "--warehouse", str(night), "--failed"]) == 1  # a cron job alerts
    out = capsys.readouterr().out
    assert "| bad" in out
    assert "| airway" not in out
    assert main(["status", "--warehouse", str(night), "--failed", "--study", "airway"]) == 0
    assert "1 study" not in capsys.readouterr().out.replace("0 studies", "")
    assert main(["status", "--warehouse", str(night), "--study", "nope"]) == 1
    assert "no attempt to load nope" in capsys.readouterr().err
