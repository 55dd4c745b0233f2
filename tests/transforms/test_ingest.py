"""Study discovery: manifest problems are issues with the field named, unknown fields only warn."""

from pathlib import Path

from transforms.ingest import discover_study, find_studies
from transforms.issues import IssueLog


def _study(tmp_path: Path, text: str) -> Path:
    folder = tmp_path / "s"
    folder.mkdir()
    (folder / "study.yaml").write_text(text)
    return folder


def test_discover_study_reports_invalid_field(tmp_path):
    issues = IssueLog("s")
    folder = _study(tmp_path, "study_id: s\nname: n\nassays:\n  - {name: a, kind: rna_counts, format: vcf, path: x}\n")
    assert discover_study(folder, issues=issues) is None
    (issue,) = issues.errors
    assert issue.code == "invalid_manifest" and issue.column == "assays.0"
    assert "not a rna_counts layout" in issue.message


def test_discover_study_reports_yaml_syntax_with_line(tmp_path):
    issues = IssueLog("s")
    assert discover_study(_study(tmp_path, "study_id: s\nname: [unclosed\n"), issues=issues) is None
    assert issues.errors[0].code == "invalid_manifest" and issues.errors[0].line is not None


def test_discover_study_warns_about_unknown_fields(tmp_path):
    issues = IssueLog("s")
    text = ("study_id: s\nname: n\nowner: me\n"
            "assays:\n  - {name: a, kind: rna_counts, format: matrix, path: x, unit: y}\n")
    manifest = discover_study(_study(tmp_path, text), issues=issues)
    assert manifest is not None and not issues.has_errors
    assert sorted(i.column for i in issues.issues) == ["assays[0].unit", "owner"]


def test_find_studies_keys_folders_by_declared_study_id(tmp_path):
    _study(tmp_path, "study_id: declared\nname: n\n")
    assert find_studies(tmp_path) == {"declared": tmp_path / "s"}
