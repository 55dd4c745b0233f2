"""The report index lists every study the warehouse knows, a failed first load too, with its last attempt's result
and first located error; a published study whose latest attempt failed keeps its page, which says so (small19)."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from warehouse.cli import main
from warehouse.report import INDEX, REPORTS

pytestmark = pytest.mark.slow
EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RAGGED = "SRRX\tNX\tuntrt\tuntrt\tNX\tGSMX\tEXTRA\n"
"""A 10th line of airway's samples.tsv with 7 fields (its header has 6): a ragged_row error at line 10."""


def _rows(index: str) -> dict[str, list[str]]:
    """Cells of each row of the index's table, by study id, tags removed."""
    rows = {}
    for row in re.findall(r"<tr[^>]*>(.*?)</tr>", index, flags=re.S)[1:]:
        cells = [re.sub(r"<[^>]+>", " ", c).split() for c in re.findall(r"<td>(.*?)</td>", row, flags=re.S)]
        rows[cells[0][0]] = [" ".join(c) for c in cells]
    return rows


@pytest.fixture(scope="module")
def night(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """airway published, then failing (a ragged line); bad (airway under another id, ragged) never published."""
    root = tmp_path_factory.mktemp("index")
    landing = root / "landing"
    shutil.copytree(EXAMPLES / "airway", landing / "airway")
    assert main(["build", "--landing", str(landing), "--warehouse", str(root / "wh")]) == 0
    shutil.copytree(EXAMPLES / "airway", landing / "bad")
    manifest = landing / "bad" / "study.yaml"
    manifest.write_text(manifest.read_text().replace("study_id: airway", "study_id: bad"))
    for study in ("airway", "bad"):
        samples = landing / study / "samples.tsv"
        samples.write_text(samples.read_text() + RAGGED)
    assert main(["build", "--landing", str(landing), "--warehouse", str(root / "wh")]) == 1
    return root / "wh"


def test_report_index_lists_a_failed_first_load_and_a_failed_published_study_with_their_first_errors(night):
    rows = _rows((night / REPORTS / INDEX).read_text())
    assert sorted(rows) == ["airway", "bad"]  # bad was only in omicsdw status before
    study, result, _, published, errors, _, first = rows["bad"]
    assert (study, result, published, errors) == ("bad", "failed", "never", "1")
    assert first.startswith("samples.tsv:10: ragged_row:")
    study, result, _, published, errors, _, first = rows["airway"]
    assert result == "failed"
    assert published.startswith("version ")
    assert published.endswith("(the report shows it)")
    assert first.startswith("samples.tsv:10: ragged_row:")
    index = (night / REPORTS / INDEX).read_text()
    assert 'href="airway/index.html"' in index
    assert 'href="bad/' not in index  # no page: nothing was ever published
    assert "2 studies: 2 failed" in index


def test_a_published_study_whose_latest_attempt_failed_keeps_its_page_with_a_note(night):
    page = (night / REPORTS / "airway" / INDEX).read_text()
    assert '<section id="sample-qc">' in page  # the previous good version, whole
    note = page[page.index("<!--omicsdw:attempt-->"):page.index("<!--/omicsdw:attempt-->")]
    assert "The latest attempt to load this study" in note
    assert "failed (1 error; first: samples.tsv:10: ragged_row:" in note
    assert "which readers still see" in note
    assert page.index("</h1>") < page.index("<!--omicsdw:attempt-->") < page.index('<section id="summary">')
