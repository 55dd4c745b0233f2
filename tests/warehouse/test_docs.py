from pathlib import Path

from warehouse.docs import render

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_table_reference_is_current():
    text = README.read_text()
    assert render(text) == text, "README table reference is stale: run `python -m warehouse.docs`"


def test_readme_gives_the_two_setup_commands():
    text = README.read_text()
    assert "make run" in text
    assert "make test" in text
