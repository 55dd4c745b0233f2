"""Study discovery: manifest problems are issues with the field named, unknown fields only warn."""

import builtins
import gzip
import random
import shutil
import threading
import zlib
from pathlib import Path

import polars as pl
import pytest

from tests.conftest import EXAMPLES
from transforms.ingest.cbioportal import read_cbioportal_study
from transforms.ingest.study import discover_study, find_studies, read_study, scan_landing
from transforms.issues import IssueLog
from warehouse.load import study_issues


def test_discover_study_reports_invalid_field(tmp_path, study_folder):
    issues = IssueLog("s")
    folder = study_folder(tmp_path, "study_id: s\nname: n\nassays:\n"
                                    "  - {name: a, kind: rna_counts, format: vcf, path: x}\n")
    assert discover_study(folder, issues=issues) is None
    (issue,) = issues.errors
    assert issue.code == "invalid_manifest"
    assert issue.column == "assays.0"
    assert "not a rna_counts layout" in issue.message


def test_discover_study_reports_yaml_syntax_with_line(tmp_path, study_folder):
    issues = IssueLog("s")
    assert discover_study(study_folder(tmp_path, "study_id: s\nname: [unclosed\n"), issues=issues) is None
    assert issues.errors[0].code == "invalid_manifest"
    assert issues.errors[0].line == 3  # PyYAML marks the end of the stream, where the ']' was still expected


def test_discover_study_warns_about_unknown_fields(tmp_path, study_folder):
    issues = IssueLog("s")
    text = ("study_id: s\nname: n\nowner: me\n"
            "assays:\n  - {name: a, kind: rna_counts, format: matrix, path: x, unit: y}\n")
    manifest = discover_study(study_folder(tmp_path, text), issues=issues)
    assert (manifest.study_id, [a.name for a in manifest.assays]) == ("s", ["a"])
    assert not issues.has_errors
    assert sorted(i.column for i in issues.issues) == ["assays[0].unit", "owner"]


def test_find_studies_keys_folders_by_declared_study_id(tmp_path, study_folder):
    study_folder(tmp_path, "study_id: declared\nname: n\n")
    assert find_studies(tmp_path) == {"declared": tmp_path / "s"}


# -- landing scan: study ids validated wherever they come from; nothing skipped silently ----------------------
MINIMAL = "study_id: s1\nname: n\n"


def test_scan_landing_invalid_folder_name_fallback_is_located_error(tmp_path, study_folder):
    # an invalid study.yaml used to fall back to the folder name unchecked: 'a=b' broke every catalog rebuild
    study_folder(tmp_path, name="a=b", manifest="name: no id here\n")
    study_folder(tmp_path, name="x%2Fy", manifest="study_id: [broken\n")
    good = study_folder(tmp_path, name="good", manifest="name: n\n")  # no study_id, but the folder name is a valid id
    found, issues = scan_landing(tmp_path)
    assert found == {"good": good}
    assert [(i.file, i.code, i.severity) for i in issues] == [
        ("a=b/study.yaml", "invalid_study_id", "error"), ("x%2Fy/study.yaml", "invalid_study_id", "error")]
    assert "'a=b'" in issues[0].message
    assert find_studies(tmp_path) == {"good": good}


def test_scan_landing_invalid_declared_study_id_is_located_error(tmp_path, study_folder):
    study_folder(tmp_path, name="s", manifest="name: n\nstudy_id: has space\n")
    found, (issue,) = scan_landing(tmp_path)
    assert found == {}
    assert (issue.file, issue.line, issue.column, issue.code) == ("s/study.yaml", 2, "study_id", "invalid_study_id")


def test_scan_landing_invalid_cbioportal_identifier_is_located_error(tmp_path, study_folder):
    folder = study_folder(tmp_path, None, name="cbio")
    (folder / "meta_study.txt").write_text("type_of_cancer: brca\ncancer_study_identifier: brca/tcga\n")
    found, (issue,) = scan_landing(tmp_path)
    assert found == {}
    assert (issue.file, issue.line, issue.column) == ("cbio/meta_study.txt", 2, "cancer_study_identifier")


def test_scan_landing_duplicate_study_id_loads_neither(tmp_path, study_folder):
    study_folder(tmp_path, MINIMAL, name="first")
    study_folder(tmp_path, MINIMAL, name="second")
    study_folder(tmp_path, name="other", manifest="study_id: s2\nname: n\n")
    found, issues = scan_landing(tmp_path)
    assert list(found) == ["s2"]
    assert [(i.file, i.code, i.line, i.column) for i in issues] == [
        ("first/study.yaml", "duplicate_study_id", 1, "study_id"),
        ("second/study.yaml", "duplicate_study_id", 1, "study_id")]
    assert all("'first', 'second'" in i.message and "none of them is loaded" in i.message for i in issues)


def test_scan_landing_study_ids_differing_only_in_case_load_neither(tmp_path, study_folder):
    """'Pasilla' and 'pasilla' loaded as two studies, whose study_id=... partitions and report folders are one
    folder on a case-insensitive file system: refused as one id declared twice, located, the other study loaded."""
    study_folder(tmp_path, "name: n\nstudy_id: Pasilla\n", name="a")
    study_folder(tmp_path, "study_id: pasilla\nname: n\n", name="b")
    study_folder(tmp_path, name="other", manifest="study_id: s2\nname: n\n")
    found, issues = scan_landing(tmp_path)
    assert list(found) == ["s2"]
    assert [(i.file, i.code, i.line, i.column) for i in issues] == [
        ("a/study.yaml", "duplicate_study_id", 2, "study_id"),
        ("b/study.yaml", "duplicate_study_id", 1, "study_id")]
    assert all("'Pasilla', 'pasilla' (folders 'a', 'b') differ only in case" in i.message
               and "none of them is loaded" in i.message for i in issues)


def test_scan_landing_reports_study_yaml_directory_and_plain_folders(tmp_path, study_folder):
    (study_folder(tmp_path, None, name="dir_manifest") / "study.yaml").mkdir()
    study_folder(tmp_path, None, name="notes")
    study_folder(tmp_path, None, name=".hidden")
    found, issues = scan_landing(tmp_path)
    assert found == {}
    assert [(i.file, i.code) for i in issues] == [("dir_manifest/study.yaml", "not_a_study"),
                                                  ("notes", "not_a_study")]


def _count_manifest_reads(monkeypatch) -> list[str]:
    """The folders whose study.yaml the landing scan parses, in order (a spy on its reader)."""
    import transforms.ingest.study as study
    from schemas.manifest import read_manifest_data

    read: list[str] = []

    def counted(path: Path):  # type: ignore[no-untyped-def]
        read.append(path.parent.name)
        return read_manifest_data(path)

    monkeypatch.setattr(study, "read_manifest_data", counted)
    return read


def test_scan_landing_reads_an_unchanged_manifest_once_and_sees_every_change(tmp_path, study_folder, monkeypatch):
    import os

    import transforms.ingest.study as study

    monkeypatch.setattr(study, "SETTLED_NS", 0)  # the files here were written just now
    read = _count_manifest_reads(monkeypatch)
    folders = {f"s{i}": study_folder(tmp_path, f"study_id: s{i}\nname: n\n", name=f"f{i}") for i in range(4)}
    for _ in range(3):
        assert find_studies(tmp_path) == folders
    assert sorted(read) == ["f0", "f1", "f2", "f3"]  # once each, not once per scan
    read.clear()
    (folders["s0"] / "study.yaml").write_text("study_id: s10\nname: n\n")  # edited (one byte longer)
    replacement = folders["s1"] / "new.yaml"  # replaced by another file of the same size and times (new inode)
    replacement.write_text("study_id: s7\nname: n\n")
    old = (folders["s1"] / "study.yaml").stat()
    os.utime(replacement, ns=(old.st_atime_ns, old.st_mtime_ns))
    replacement.replace(folders["s1"] / "study.yaml")
    (folders["s2"] / "study.yaml").unlink()  # gone: no longer a study
    assert find_studies(tmp_path) == {"s10": folders["s0"], "s7": folders["s1"], "s3": folders["s3"]}
    assert sorted(read) == ["f0", "f1"]


def test_scan_landing_reads_a_manifest_changed_just_now_and_one_in_a_symlinked_folder_every_time(
        tmp_path, study_folder, monkeypatch):
    read = _count_manifest_reads(monkeypatch)
    fresh = study_folder(tmp_path, "study_id: fresh\nname: n\n", name="fresh")  # written within SETTLED_NS
    elsewhere = study_folder(tmp_path / "elsewhere", "study_id: linked\nname: n\n", name="real")
    (tmp_path / "landing").mkdir()
    fresh.rename(tmp_path / "landing" / "fresh")
    (tmp_path / "landing" / "link").symlink_to(elsewhere, target_is_directory=True)
    for _ in range(2):
        assert set(find_studies(tmp_path / "landing")) == {"fresh", "linked"}
    assert sorted(read) == ["fresh", "fresh", "link", "link"]


def test_ingest_study_invalid_study_id_gives_no_study(tmp_path, reference, study_folder):
    folder = study_folder(tmp_path, name="a=b", manifest="name: n\nassays: []\n")
    ingest = read_study(folder, reference=reference)
    assert ingest.valid_id is None
    assert ingest.manifest is None
    assert ingest.tables == {}
    with pytest.raises(ValueError, match="no valid study id"):
        _ = ingest.study_id
    issues = study_issues(ingest)
    assert issues.filter(pl.col("code") == "invalid_study_id")["file"].to_list() == ["study.yaml"]


def test_ingest_study_invalid_cbioportal_study_id_is_issue_not_traceback(tmp_path, reference, study_folder):
    folder = study_folder(tmp_path, None, name="cbio")
    (folder / "meta_study.txt").write_text("cancer_study_identifier: a=b\nname: n\n")
    issues = study_issues(read_study(folder, reference=reference))
    (row,) = issues.filter(pl.col("severity") == "error").iter_rows(named=True)
    assert (row["code"], row["file"], row["line"]) == ("invalid_study_id", "meta_study.txt", 1)


# -- manifest typos ------------------------------------------------------------------------------------------
def test_discover_study_names_the_likely_key_of_a_typo(tmp_path, study_folder):
    issues = IssueLog("s")
    text = "study_id: s\nname: n\nassay:\n  - {name: a, kind: rna_counts, format: matrix, path: x}\n"
    manifest = discover_study(study_folder(tmp_path, text), issues=issues)
    assert (manifest.study_id, manifest.assays) == ("s", [])
    typo, empty = issues.issues
    assert (typo.code, typo.line, typo.column) == ("unknown_manifest_field", 3, "assay")
    assert "unknown key 'assay' (did you mean 'assays'?)" in typo.message
    assert (empty.code, empty.severity) == ("no_assays", "warning")
    assert "nothing will be loaded" in empty.message


def test_discover_study_reports_missing_field_and_the_typo_beside_it(tmp_path, study_folder):
    issues = IssueLog("s")
    text = "study_id: s\nname: n\nassays:\n  - name: a\n    kind: rna_counts\n    fromat: matrix\n    path: x\n"
    assert discover_study(study_folder(tmp_path, text), issues=issues) is None
    (typo,) = [i for i in issues.issues if i.code == "unknown_manifest_field"]
    assert (typo.column, typo.line) == ("assays[0].fromat", 6)
    assert "did you mean 'format'?" in typo.message
    (missing,) = issues.errors
    assert missing.column == "assays.0.format"
    assert missing.line == 4
    assert "Field required" in missing.message
    assert "'fromat'" in missing.message


# -- reading outside the study folder ------------------------------------------------------------------------
SECRET = "outside-secret-line"


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside.tsv"
    outside.write_text(f"{SECRET}\tvalue\n{SECRET}: 1\n")
    return outside


def _leaks(issues: IssueLog | pl.DataFrame) -> list[str]:
    frame = issues if isinstance(issues, pl.DataFrame) else issues.to_frame()
    return [t for t in frame["message"].to_list() + frame["record"].to_list() if t and SECRET in t]


def test_read_cbioportal_study_symlinked_meta_file_is_not_read(tmp_path, study_folder):
    outside = _outside(tmp_path)
    folder = study_folder(tmp_path, None, name="cbio")
    (folder / "meta_study.txt").write_text("cancer_study_identifier: cbio\nname: n\n")
    (folder / "meta_leak.txt").symlink_to(outside)
    (folder / "data_gene_panel_leak.txt").symlink_to(outside)
    issues = IssueLog("cbio")
    read_cbioportal_study(folder, issues=issues)
    assert _leaks(issues) == []
    assert [(i.file, i.code) for i in issues.errors] == [("meta_leak.txt", "path_outside_study")]


@pytest.mark.parametrize("panel", ["../outside.tsv", "ABSOLUTE", "link.tsv"])
def test_ingest_study_gene_panel_matrix_outside_folder_is_not_read(tmp_path, reference, shared_data, panel,
                                                                   study_folder):
    outside = _outside(tmp_path)
    folder = study_folder(tmp_path, None, name="s")
    (folder / "link.tsv").symlink_to(outside)
    (folder / "data_gene_panel_x.txt").symlink_to(outside)
    (folder / "mutations.maf").write_bytes(
        (shared_data / "cbioportal_study_es_0" / "data_mutations_extended.maf").read_bytes())
    panel = str(outside) if panel == "ABSOLUTE" else panel
    (folder / "study.yaml").write_text(
        "study_id: s\nname: n\nassays:\n  - {name: mut, kind: variants, format: maf, path: mutations.maf,\n"
        f"     options: {{gene_panel_matrix: '{panel}'}}}}\n")
    issues = study_issues(read_study(folder, reference=reference))
    assert _leaks(issues) == []
    outside_errors = issues.filter(pl.col("code") == "path_outside_study")
    # one panel option, one error (the symlinked data_gene_panel_x.txt is not declared, so not read)
    assert outside_errors.select("file", "column").rows() == [("study.yaml", "options.gene_panel_matrix")]


# -- unreadable and corrupt files: located issues on the validate path, never a traceback ---------------------
@pytest.fixture
def matrix_study(tmp_path: Path, study_folder):
    """A study 's' with one rna_counts matrix file (bytes as given) and ``extra`` manifest lines."""

    def write(matrix_name: str, matrix: bytes, extra: str = "") -> Path:
        return study_folder(tmp_path, f"study_id: s\nname: n\n{extra}assays:\n"
                                      f"  - {{name: rna, kind: rna_counts, format: matrix, path: {matrix_name}}}\n",
                            {matrix_name: matrix})

    return write


def _big_matrix() -> bytes:
    rng = random.Random(1)
    rows = ["gene\t" + "\t".join(f"S{j}" for j in range(20))]
    rows += [f"G{i}\t" + "\t".join(str(rng.randrange(100000)) for _ in range(20)) for i in range(4000)]
    return ("\n".join(rows) + "\n").encode()


def test_ingest_study_truncated_gzip_is_located_error(reference, matrix_study):
    packed = gzip.compress(_big_matrix())
    assert len(packed) > 3 * 65536
    folder = matrix_study("counts.tsv.gz", packed[:65536])
    issues = study_issues(read_study(folder, reference=reference))  # collects the lazy frames: no exception
    (error,) = issues.filter(pl.col("severity") == "error").iter_rows(named=True)
    assert (error["code"], error["file"]) == ("corrupt_file", "counts.tsv.gz")
    assert "truncated or corrupt" in error["message"]
    # the first line the cut stream does not hold whole (zlib's own count of the complete lines, + 1)
    whole = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(packed[:65536]).count(b"\n")
    assert whole > 1000
    assert error["line"] == whole + 1


def test_ingest_study_directory_in_place_of_a_file_is_located_error(reference, matrix_study):
    # tests run as root, which ignores chmod 000: a directory where the sample table should be is unreadable
    folder = matrix_study("counts.tsv", b"gene\tS1\nG1\t5\n", extra="samples: samples.tsv\n")
    (folder / "samples.tsv").mkdir()
    issues = study_issues(read_study(folder, reference=reference))
    (error,) = issues.filter(pl.col("severity") == "error").iter_rows(named=True)
    assert (error["code"], error["file"]) == ("unreadable_file", "samples.tsv")


def test_ingest_study_permission_denied_is_located_error(reference, monkeypatch, matrix_study):
    # root ignores file modes, so open() is made to raise PermissionError for the matrix, as for chmod 000
    folder = matrix_study("counts.tsv", b"gene\tS1\nG1\t5\n")
    real_open = builtins.open

    def denying_open(file, *args, **kwargs):
        if str(file).endswith("counts.tsv"):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", denying_open)
    issues = study_issues(read_study(folder, reference=reference))
    (error,) = issues.filter(pl.col("severity") == "error").iter_rows(named=True)
    assert (error["code"], error["file"], error["message"]) == ("unreadable_file", "counts.tsv",
                                                                "cannot read file: Permission denied")


# -- values that may not load without a word -----------------------------------------------------------------
def test_ingest_study_fractional_counts_warn_once_per_column(reference, matrix_study):
    matrix = b"gene\tS1\tS2\nG1\t3.7\t4\nG2\t5\t6\nG3\t2.5\t7\nG4\t1.5\t8.25\n"
    issues = study_issues(read_study(matrix_study("counts.tsv", matrix), reference=reference))
    warnings = issues.filter(pl.col("code") == "fractional_count")
    assert warnings.select("file", "line", "column", "severity").rows() == [
        ("counts.tsv", 2, "S1", "warning"), ("counts.tsv", 5, "S2", "warning")]
    assert "3 count(s)" in warnings["message"][0]


def test_flag_values_implausible_value_is_quarantined(reference, matrix_study):
    matrix = b"gene\tS1\nG1\t1e300\nG2\t5\n"
    issues = study_issues(read_study(matrix_study("counts.tsv", matrix), reference=reference))
    (row,) = issues.filter(pl.col("severity") == "error").iter_rows(named=True)
    assert (row["code"], row["file"], row["line"], row["column"]) == ("implausible_value", "counts.tsv", 2, "S1")
    assert "1e+15" in row["message"]


def test_quarantine_rows_never_stores_megabytes(reference, matrix_study):
    matrix = b"gene\tS1\nG1\t" + b"x" * 5_000_000 + b"\nG2\t5\n"
    issues = study_issues(read_study(matrix_study("counts.tsv", matrix), reference=reference))
    (row,) = issues.filter(pl.col("severity") == "error").iter_rows(named=True)
    assert (row["code"], row["line"], row["column"]) == ("invalid_value", 2, "S1")
    assert len(row["record"]) <= 2010
    assert len(row["message"]) <= 2010


def test_read_proteins_implausible_abundance_is_quarantined(tmp_path, reference, study_folder):
    folder = study_folder(tmp_path, "study_id: p\nname: n\nassays:\n"
                          "  - {name: prot, kind: protein_abundance, format: matrix, path: prot.tsv}\n", name="p")
    (folder / "prot.tsv").write_text("protein\tS1\tS2\nP04637\t1e300\t5\nP38398\t6\t7\n")
    issues = study_issues(read_study(folder, reference=reference))
    (row,) = issues.filter(pl.col("severity") == "error").iter_rows(named=True)
    assert (row["code"], row["file"], row["line"], row["column"]) == ("implausible_value", "prot.tsv", 2, "S1")


def test_read_proteins_negative_ms_abundance_warns_unless_measure_log2(tmp_path, reference, study_folder):
    # CPTAC log2 ratios (cBioPortal study_es_0 data_protein_quantification.txt: TP53 -1.286652 in TCGA-C8-A12T-01)
    # read as intensities lose every negative value: located warning naming `measure: log2`
    table = "protein\tS1\tS2\nTP53\t-1.286652\t-1.268997\nBRAF\t0.082298\t0.251706\n"
    for measure, expected in (("", 2), (", measure: log2", 0)):
        folder = study_folder(tmp_path / str(expected), "study_id: p\nname: n\nassays:\n  - {name: prot, "
                              f"kind: protein_abundance, format: matrix, path: prot.tsv{measure}}}\n", name="p")
        (folder / "prot.tsv").write_text(table)
        loaded = read_study(folder, reference=reference)
        warnings = study_issues(loaded).filter(pl.col("code") == "negative_abundance")
        assert warnings.height == (1 if expected else 0)
        if expected:
            assert warnings["file"][0] == "prot.tsv"
            assert warnings["message"][0].startswith("2 negative")
            assert "measure: log2" in warnings["message"][0]


def test_ingest_study_rsem_expected_counts_are_not_fractional_warnings(tmp_path, reference, shared_data, study_folder):
    # RSEM expected_count is an estimate, fractional by nature (zcat | awk '$5 != int($5)' finds many)
    folder = study_folder(tmp_path, "study_id: r\nname: n\nassays:\n"
                          "  - {name: rsem, kind: rna_counts, format: rsem, path: '*.genes.results.gz'}\n", name="r")
    source = shared_data / "rnaseq_geuvadis_rsem" / "ERR188021.genes.results.gz"
    (folder / source.name).write_bytes(source.read_bytes())
    issues = study_issues(read_study(folder, reference=reference))
    assert issues.filter(pl.col("code") == "fractional_count").height == 0
    assert issues.filter(pl.col("severity") == "error").height == 0


def test_attach_identity_long_feature_id_is_quarantined_with_cut_record(tmp_path, reference, shared_data, study_folder):
    # MAF Hugo_Symbol on file line 3 replaced by 600 characters: loaded without a word before
    maf = (shared_data / "cbioportal_study_es_0" / "data_mutations_extended.maf").read_text()
    lines = maf.splitlines()
    lines[2] = lines[2].replace("OR11H1", "X" * 600, 1)
    folder = study_folder(tmp_path, "study_id: m\nname: n\nassays:\n"
                          "  - {name: mut, kind: variants, format: maf, path: mut.maf}\n", name="m")
    (folder / "mut.maf").write_text("\n".join(lines) + "\n")
    issues = study_issues(read_study(folder, reference=reference))
    long_ids = issues.filter(pl.col("code") == "identifier_too_long")
    # one record, its identifier cut to 80 characters and marked
    assert long_ids.select("file", "line", "severity", "record").rows() == [("mut.maf", 3, "error", "X" * 80 + " ...")]


def test_ingest_study_keeps_the_matrix_row_order_for_mapped_genes(reference, matrix_study):
    # 2,000 reference gene symbols (file lines) x 20 samples: each sample's rows come out in line order, whatever
    # the thread timing (an unordered gene-id join reordered them, differently on every build)
    symbols = (reference.genes.filter(pl.col("biotype") == "protein-coding").filter(pl.len().over("symbol") == 1)
               ["symbol"].head(2000).to_list())
    rng = random.Random(2)
    lines = ["gene\t" + "\t".join(f"S{j:02d}" for j in range(20))]
    lines += [f"{s}\t" + "\t".join(str(rng.randrange(1000)) for _ in range(20)) for s in symbols]
    ingest = read_study(matrix_study("counts.tsv", ("\n".join(lines) + "\n").encode()), reference=reference)
    rows = pl.concat([frame.collect() for frame in ingest.tables["rna_counts"]])
    assert rows.height == 40_000
    assert rows["gene_id"].null_count() == 0
    for sample, part in rows.group_by("sample_id"):
        assert part["feature_id"].to_list() == symbols, sample
        assert part["line"].to_list() == list(range(2, 2002)), sample


def test_read_study_from_a_relative_path_confines_found_files_as_from_an_absolute_one(
        tmp_path, reference, monkeypatch):
    monkeypatch.chdir(EXAMPLES)  # `omicsdw validate study_es_0`: the gene panel files were looked up under
    relative = study_issues(read_study(Path("study_es_0"), reference=reference))  # study_es_0/study_es_0/
    assert relative.filter(pl.col("severity") == "error").is_empty(), relative.rows(named=True)
    landing, outside = tmp_path / "landing", tmp_path / "outside"
    landing.mkdir()
    outside.mkdir()
    shutil.copytree(EXAMPLES / "study_es_0", landing / "cb")
    (landing / "cb" / "meta_cna_log2.txt").rename(outside / "meta_cna_log2.txt")
    (landing / "cb" / "meta_cna_log2.txt").symlink_to(outside / "meta_cna_log2.txt")
    monkeypatch.chdir(tmp_path)
    issues = study_issues(read_study(Path("landing/cb"), reference=reference))
    outside_rows = issues.filter(pl.col("code") == "path_outside_study")  # the link out is never followed
    assert outside_rows.select("file", "severity").rows() == [("meta_cna_log2.txt", "error")]


def test_ingest_study_file_without_read_permission_is_located_error(reference, study_folder):
    """chmod 000 on the counts: as root (who reads any file) the read runs with the effective uid of nobody, so
    the permission check is the kernel's, not a stand-in; the folder sits in a directory nobody may enter."""
    import os
    import tempfile

    parent = Path(tempfile.mkdtemp(prefix="omicsdw-perm-"))
    try:
        parent.chmod(0o755)
        folder = study_folder(parent, "study_id: s\nname: n\nassays:\n  - {name: rna, kind: rna_counts, "
                              "format: matrix, path: counts.tsv, gene_id_type: symbol}\n",
                              {"counts.tsv": "gene\tS1\tS2\nTP53\t10\t20\n"})
        folder.chmod(0o755)
        assert study_issues(read_study(folder, reference=reference)).filter(pl.col("severity") == "error").is_empty()
        (folder / "counts.tsv").chmod(0)
        root = os.geteuid() == 0
        if root:
            os.seteuid(65534)  # what was imported by the clean read above is all the read needs
        try:
            ingest = read_study(folder, reference=reference)
        finally:
            if root:
                os.seteuid(0)
        (error,) = study_issues(ingest).filter(pl.col("severity") == "error").iter_rows(named=True)
        assert (error["code"], error["file"]) == ("unreadable_file", "counts.tsv")
        assert "Permission denied" in error["message"]
    finally:
        (parent / "s" / "counts.tsv").chmod(0o644)
        shutil.rmtree(parent)


# -- the content hash runs beside the parsers -------------------------------------------------------------------
def test_read_study_hashes_the_folder_while_the_matrix_pre_pass_runs(tmp_path, reference, monkeypatch):
    """Each side waits (bounded) until the other has started: done one after the other, the first times out."""
    import transforms.ingest.parse.matrix as matrix
    import transforms.ingest.study as study

    folder = tmp_path / "pasilla"
    shutil.copytree(EXAMPLES / "pasilla", folder)
    expected = study.load_fingerprint(folder, reference=reference, code_version="v1")  # serial, before patching
    started = {"hash": threading.Event(), "pre_pass": threading.Event()}
    real_hash, real_count = study.load_fingerprint, matrix._count_fields

    def hash_beside(*args, **kwargs):
        started["hash"].set()
        assert started["pre_pass"].wait(20), "the pre-pass did not start while the folder was being hashed"
        return real_hash(*args, **kwargs)

    def count_beside(*args, **kwargs):
        started["pre_pass"].set()
        assert started["hash"].wait(20), "the hash did not start while the pre-pass ran"
        return real_count(*args, **kwargs)

    monkeypatch.setattr(study, "load_fingerprint", hash_beside)
    monkeypatch.setattr(matrix, "_count_fields", count_beside)
    ingest = read_study(folder, reference=reference, code_version="v1")
    assert ingest.fingerprint == expected
    (studies,) = ingest.tables["studies"]
    assert studies.collect()["content_hash"].to_list() == [expected]
    assert not ingest.issues.has_errors


def test_ingest_study_sample_map_naming_an_undeclared_assay_is_a_located_warning(reference, matrix_study):
    # The manifest's assay is 'rna'; the map's 'rnna' row applied to nothing, without a word.
    folder = matrix_study("counts.tsv", b"gene\tbam_1\nG1\t3\n", "sample_map: map.tsv\n")
    (folder / "map.tsv").write_text("assay\tcolumn\tsample_id\nrna\tbam_1\tS1\nrnna\tbam_2\tS2\nmultiqc\tr1\tS1\n"
                                    "\tbam_3\tS3\n")
    issues = study_issues(read_study(folder, reference=reference))
    (row,) = issues.filter(pl.col("code") == "unknown_assay").iter_rows(named=True)
    assert (row["file"], row["line"], row["column"], row["severity"]) == ("map.tsv", 3, "assay", "warning")
    assert "'rnna'" in row["message"]
    assert "did you mean 'rna'?" in row["message"]


def test_ingest_study_one_file_read_by_two_assays_reports_each_issue_once(reference, study_folder, tmp_path):
    # RSEM counts and TPM, or counts and abundance of one matrix, read the same file: its issues were stored twice.
    folder = study_folder(tmp_path, "study_id: s\nname: n\nassays:\n"
                                    "  - {name: counts, kind: rna_counts, format: matrix, path: m.tsv}\n"
                                    "  - {name: values, kind: rna_abundance, format: matrix, path: m.tsv}\n",
                          {"m.tsv": "gene\tS1\nG1\t3\nG1\t4\nG2\t5\n"})
    issues = study_issues(read_study(folder, reference=reference))
    assert issues.filter(pl.col("code") == "duplicate_feature").select("file", "line").rows() == [("m.tsv", 3)]


@pytest.mark.parametrize(("declared", "expected"), [
    ("symbol", "1 of 3 identifiers are not symbol ids but read as another type (1 ensembl_gene; e.g. "
               "'ENSG00000146648.18')"),
    ("ensembl", "2 of 3 identifiers are not ensembl ids but read as another type (2 symbol; e.g. 'TP53')"),
])
def test_ingest_study_identifiers_of_another_type_than_declared_are_a_warning(reference, study_folder, tmp_path,
                                                                              declared, expected):
    # ENSG00000146648 is EGFR (org.Hs.eg.db); under the declared type the other ids were unmapped 'not_found'
    # without a word, a user's wrong gene_id_type looking like genes missing from the reference.
    folder = study_folder(tmp_path, f"study_id: s\nname: n\nassays:\n  - {{name: rna, kind: rna_counts, "
                                    f"format: matrix, path: m.tsv, gene_id_type: {declared}}}\n",
                          {"m.tsv": "gene\tS1\nTP53\t3\nENSG00000146648.18\t4\nGAPDH\t5\n"})
    ingest = read_study(folder, reference=reference)
    issues = study_issues(ingest)
    (row,) = issues.filter(pl.col("code") == "gene_id_type_mismatch").iter_rows(named=True)
    assert (row["file"], row["column"], row["severity"]) == ("study.yaml", "assays.rna.gene_id_type", "warning")
    assert expected in row["message"]
    gene_map = pl.concat(ingest.tables["gene_id_map"]).collect()
    assert gene_map.filter(pl.col("status") == "mapped").height == 3 - int(expected.split(" ")[0])


def test_ingest_study_auto_or_fitting_gene_id_type_gives_no_mismatch_warning(reference, study_folder, tmp_path):
    folder = study_folder(tmp_path, "study_id: s\nname: n\nassays:\n  - {name: rna, kind: rna_counts, "
                                    "format: matrix, path: m.tsv, gene_id_type: symbol}\n",
                          {"m.tsv": "gene\tS1\nTP53\t3\nNOT_A_GENE_XYZ\t4\n"})
    assert study_issues(read_study(folder, reference=reference)).filter(
        pl.col("code") == "gene_id_type_mismatch").is_empty()


@pytest.mark.parametrize("declared", ["ensembl", "auto"])
def test_ingest_study_salmon_genes_map_under_a_declared_ensembl_type(tmp_path, reference, shared_data, study_folder,
                                                                     declared):
    # quant.sf holds Ensembl transcripts, so a user declares gene_id_type: ensembl. Transcripts are summed to genes
    # keyed by their Entrez id, which were then resolved as Ensembl ids: every gene unmapped, and a
    # gene_id_type_mismatch warning naming an Entrez id ('79504') the file does not hold.
    folder = study_folder(tmp_path, "study_id: s\nname: n\norganism: human\nassays:\n"
                          f"  - {{name: sal, kind: rna_counts, format: salmon, path: '*/quant.sf.gz', "
                          f"gene_id_type: {declared}}}\n", name="s")
    (folder / "SRR1039508").mkdir()
    source = shared_data / "rnaseq_airway" / "salmon" / "SRR1039508" / "quant.sf.gz"
    (folder / "SRR1039508" / "quant.sf.gz").write_bytes(source.read_bytes())
    ingest = read_study(folder, reference=reference)
    issues = study_issues(ingest)
    assert issues.filter(pl.col("severity") != "info").is_empty(), issues.rows()
    # the genes by hand: the file's transcripts (versions cut) in the org.Hs.eg.db transcript table, those of one gene
    names = pl.read_csv(source, separator="\t").select(pl.col("Name").str.replace(r"\.\d+$", ""))
    table = pl.read_csv(shared_data / "gene_annotation_human" / "ensembl_transcript_to_gene_orgHsEgDb.tsv.gz",
                        separator="\t").unique(["ensembl_transcript_id", "entrez_id"])
    one_gene = table.filter(pl.len().over("ensembl_transcript_id") == 1)
    genes = set(names.join(one_gene, left_on="Name", right_on="ensembl_transcript_id")["entrez_id"].to_list())
    assert len(genes) > 30
    (gene_map,) = ingest.tables["gene_id_map"]
    mapped = gene_map.collect().filter(pl.col("status") == "mapped")
    assert set(mapped["gene_id"].to_list()) == genes
    assert set(mapped["feature_id"].to_list()) == {str(g) for g in genes}


@pytest.mark.parametrize(("vcf", "warned"), [("vcf2maf_test_b38_input.vcf", True),
                                             ("cyvcf2_test-haploidX_VEP81_CSQ_3samples.vcf", False)])
def test_ingest_study_unannotated_vcf_is_a_warning(tmp_path, reference, shared_data, study_folder, vcf, warned):
    # vcf2maf's input VCF (no INFO annotation) loaded 25 variants without gene or consequence and no issue at all:
    # a user expecting mutation status per gene found none and no reason why.
    folder = study_folder(tmp_path, "study_id: v\nname: n\norganism: human\nreference_genome: GRCh38\nassays:\n"
                          "  - {name: calls, kind: variants, format: vcf, path: calls.vcf}\n", name="v")
    (folder / "calls.vcf").write_bytes((shared_data / "variants_annotated_vcf" / vcf).read_bytes())
    issues = study_issues(read_study(folder, reference=reference))
    assert issues.filter(pl.col("severity") == "error").is_empty(), issues.rows()
    found = issues.filter(pl.col("code") == "unannotated_vcf").select("file", "severity").rows()
    assert found == ([("calls.vcf", "warning")] if warned else [])


def test_ingest_study_unannotated_vcfs_of_one_assay_are_one_warning(tmp_path, reference, shared_data, study_folder):
    # a glob of per-sample VCFs without annotation gave one identical warning per file
    folder = study_folder(tmp_path, "study_id: v\nname: n\norganism: human\nreference_genome: GRCh38\nassays:\n"
                          "  - {name: calls, kind: variants, format: vcf, path: 'calls_*.vcf'}\n", name="v")
    raw = (shared_data / "variants_annotated_vcf" / "vcf2maf_test_b38_input.vcf").read_bytes()
    for sample in ("a", "b", "c"):
        (folder / f"calls_{sample}.vcf").write_bytes(raw)
    issues = study_issues(read_study(folder, reference=reference)).filter(pl.col("code") == "unannotated_vcf")
    assert issues.select("file", "severity").rows() == [("calls_a.vcf", "warning")]
    assert issues["message"].item().endswith("(2 more file(s) of this assay alike)")


def test_read_study_fits_a_level_of_one_sample_and_warns_of_a_contrast_it_cannot_fit(tmp_path, reference,
                                                                                      study_folder):
    # 'C' has one sample and, within monocytes, 'b' has one: both were errors (the DE stage refused them), though
    # DESeq2 fits them (residual df remain: 6 samples and 4 coefficients, 3 samples and 2). A contrast the samples
    # cannot support is an invalid_contrast warning at its line, not an error: its study loads and DE skips it.
    # Among lymphocytes 'Group A' has no sample; b, C and D have one each (3 coefficients for 3 samples).
    manifest = ("study_id: s\nname: s\nsamples: samples.tsv\nsubjects: subjects.tsv\nassays:\n"
                "  - {name: rna, kind: rna_counts, format: matrix, path: counts.tsv, gene_id_type: symbol}\n"
                "contrasts:\n"
                "  - {name: a_vs_b, factor: group, test: Group A, reference: b}\n"
                "  - {name: c_vs_a, factor: group, test: C, reference: Group A}\n"
                "  - {name: b_mono, factor: group, test: b, reference: Group A, filter: {cell: mono}}\n"
                "  - {name: by_sex, factor: sex, test: F, reference: M}\n"
                "  - {name: b_lymph, factor: group, test: b, reference: Group A, filter: {cell: lymph}}\n"
                "  - {name: c_lymph, factor: group, test: C, reference: b, filter: {cell: lymph}}\n"
                "  - {name: typo, factor: group, test: c, reference: b}\n")
    samples = ("sample_id\tsubject_id\tgroup\tcell\nS1\tP1\tGroup A\tmono\nS2\tP2\tGroup A\tmono\nS3\tP3\tb\tmono\n"
               "S4\tP4\tb\tlymph\nS5\tP5\tC\tlymph\nS6\tP6\tD\tlymph\n")
    subjects = "subject_id\tsex\nP1\tF\nP2\tM\nP3\tF\nP4\tM\nP5\tF\nP6\tM\n"
    counts = "gene\tS1\tS2\tS3\tS4\tS5\tS6\nTP53\t10\t20\t30\t25\t5\t6\nMYC\t5\t6\t7\t9\t1\t2\n"
    folder = study_folder(tmp_path, manifest, {"samples.tsv": samples, "subjects.tsv": subjects,
                                               "counts.tsv": counts})
    issues = study_issues(read_study(folder, reference=reference)).filter(pl.col("code") == "invalid_contrast")
    assert issues.select("file", "line", "column", "severity").rows() == [
        ("study.yaml", 12, "contrasts[4].reference", "warning"),
        ("study.yaml", 13, "contrasts[5].factor", "warning"),
        ("study.yaml", 14, "contrasts[6].test", "warning")]
    skipped = "; differential expression skips this contrast (the study's other contrasts and tables are computed "
    assert issues["message"].to_list() == [
        f"contrast 'b_lymph': reference level 'Group A' of 'group' has no sample with cell = lymph{skipped}"
        "and published)",
        "contrast 'c_lymph': design ~ group has 3 coefficients for 3 samples: no residual degrees of freedom to "
        "estimate dispersion; 'group' level(s) ['C', 'D', 'b'] have one sample each: add replicates of a level, or "
        f"drop a covariate{skipped}and published)",
        f"contrast 'typo': test level 'c' is not a value of 'group' (values: C, D, Group A, b){skipped}"
        "and published)"]


def test_read_study_warns_that_a_contrast_of_a_study_without_counts_is_skipped(tmp_path, reference, study_folder):
    # small19: a proteomics-only study's contrast was silently ignored (no DE, nothing else reads it); now a
    # located warning at the contrast's line (study.yaml lines 7 and 8) says DE needs counts and skips it
    manifest = ("study_id: s\nname: s\nsamples: samples.tsv\nassays:\n"
                "  - {name: prot, kind: protein_abundance, format: matrix, path: prot.tsv, gene_id_type: symbol}\n"
                "contrasts:\n"
                "  - {name: b_vs_a, factor: group, test: b, reference: a}\n"
                "  - {name: typo, factor: group, test: c, reference: a}\n")
    samples = "sample_id\tgroup\nS1\ta\nS2\ta\nS3\ta\nS4\tb\nS5\tb\nS6\tb\n"
    prot = "gene\tS1\tS2\tS3\tS4\tS5\tS6\nTP53\t10\t11\t12\t20\t21\t22\nMYC\t5\t6\t7\t9\t8\t7\n"
    folder = study_folder(tmp_path, manifest, {"samples.tsv": samples, "prot.tsv": prot})
    loaded = read_study(folder, reference=reference)
    issues = study_issues(loaded).filter(pl.col("code") == "invalid_contrast")
    assert issues.select("file", "line", "column", "severity").rows() == [
        ("study.yaml", 7, "contrasts[0].name", "warning"), ("study.yaml", 8, "contrasts[1].name", "warning")]
    assert issues["message"][0] == (
        "contrast 'b_vs_a': differential expression needs RNA counts (an assay of kind rna_counts or sc_rna_counts) "
        "and the study has none (assay kinds: protein_abundance); it skips this contrast, and nothing else uses it "
        "(biomarker_candidates compares a contrast's groups only in a study with RNA and protein); the study's "
        "tables are computed and published")
    assert study_issues(loaded).filter(pl.col("severity") == "error").height == 0  # the study loads


def test_read_study_warns_of_a_contrast_whose_level_has_no_sample_with_counts(tmp_path, reference, study_folder):
    # The sample table lists both levels, but the count matrix holds only the 'b' samples (a glob or an export that
    # took a few of the files): the contrast passed the ingest check, which looked at the sample table alone, and
    # the DE stage skipped it with nothing in ingest_issues, so `omicsdw validate`, build and status said nothing.
    manifest = _NUMERIC_HEAD + "  - {name: b_vs_a, factor: group, test: b, reference: a}\n"
    counts = "gene\tS4\tS5\nTP53\t25\t5\nMYC\t9\t1\n"
    folder = study_folder(tmp_path, manifest, {"samples.tsv": _NUMERIC_SAMPLES, "counts.tsv": counts})
    issues = study_issues(read_study(folder, reference=reference)).filter(pl.col("severity") != "info")
    assert issues.select("file", "line", "column", "code", "severity", "message").rows() == [
        ("study.yaml", 7, "contrasts[0].factor", "invalid_contrast", "warning",
         "contrast 'b_vs_a': on assay 'rna' (2 sample(s) with counts): reference level 'a' not found in 'group'; "
         "its levels are ['b']; differential expression skips it on assay 'rna' (another count assay whose "
         "samples support it still fits it; the study's other contrasts and tables are computed and published)")]


def test_read_study_refuses_two_per_sample_files_of_one_sample(tmp_path, reference, study_folder):
    # `*/*.genes.results` over a pipeline's first run and its re-run: both files are sample S1. Both were loaded as
    # S1 (every gene twice) and the build failed on the rna_counts contract's duplicate keys, naming no file, while
    # `omicsdw validate` reported nothing. It is one located error, as a second matrix column of one sample is.
    rsem = ("gene_id\ttranscript_id(s)\tlength\teffective_length\texpected_count\tTPM\tFPKM\n"
            "ENSG00000141510\tT1\t2000\t1800\t{}\t1.0\t1.0\nENSG00000136997\tT2\t1500\t1300\t7\t1.0\t1.0\n")
    manifest = ("study_id: s\nname: s\nassays:\n  - {name: rna, kind: rna_counts, format: rsem, "
                "path: '*/*.genes.results', gene_id_type: ensembl}\n")
    folder = study_folder(tmp_path, manifest)
    for file, count in (("run1/S1.genes.results", 10), ("run1/S2.genes.results", 20), ("run2/S1.genes.results", 30)):
        (folder / file).parent.mkdir(exist_ok=True)
        (folder / file).write_text(rsem.format(count))
    ingest = read_study(folder, reference=reference)
    issues = study_issues(ingest).filter(pl.col("severity") != "info")
    assert issues.select("file", "column", "code", "severity", "message").rows() == [
        ("run2/S1.genes.results", "S1", "duplicate_sample", "error",
         "files 'run1/S1.genes.results' and 'run2/S1.genes.results' are both sample 'S1'; only the first is kept "
         "(rename one, or narrow the assay's path glob)")]
    (counts,) = ingest.tables["rna_counts"]
    kept = counts.collect().filter(pl.col("feature_id") == "ENSG00000141510").sort("sample_id")
    assert kept.select("sample_id", "count").rows() == [("S1", 10.0), ("S2", 20.0)]


def test_read_study_loads_a_matrix_split_by_genes_over_files_of_the_same_samples(tmp_path, reference, study_folder):
    # `counts*.tsv` over counts1.tsv (TP53) and counts2.tsv (MYC), both of S1 and S2: one matrix cut by rows, a
    # layout of large matrices. Each sample has every gene once; a check refusing a sample given by two matrix files
    # (tried in review, reverted) failed this study. Matrices sharing a sample AND a gene fail the table contract.
    manifest = ("study_id: s\nname: s\nassays:\n  - {name: rna, kind: rna_counts, format: matrix, "
                "path: 'counts*.tsv', gene_id_type: symbol}\n")
    folder = study_folder(tmp_path, manifest, {"counts1.tsv": "gene\tS1\tS2\nTP53\t10\t20\n",
                                               "counts2.tsv": "gene\tS1\tS2\nMYC\t5\t6\n"})
    ingest = read_study(folder, reference=reference)
    assert study_issues(ingest).filter(pl.col("severity") == "error").is_empty()
    (counts,) = ingest.tables["rna_counts"]
    rows = counts.collect().sort("sample_id", "feature_id").select("sample_id", "feature_id", "count").rows()
    assert rows == [("S1", "MYC", 5.0), ("S1", "TP53", 10.0), ("S2", "MYC", 6.0), ("S2", "TP53", 20.0)]


def test_read_study_refuses_a_contrast_name_used_twice(tmp_path, reference, study_folder):
    # Two contrasts of one name cannot be told apart in the table: an error, as before (the study is not loaded).
    manifest = (_NUMERIC_HEAD + "  - {name: c, factor: group, test: b, reference: a}\n"
                "  - {name: c, factor: group, test: a, reference: b}\n")
    folder = study_folder(tmp_path, manifest, {"samples.tsv": _NUMERIC_SAMPLES, "counts.tsv": _NUMERIC_COUNTS})
    errors = study_issues(read_study(folder, reference=reference)).filter(pl.col("severity") == "error")
    assert errors.select("line", "column", "code", "message").rows() == [
        (8, "contrasts[1].name", "invalid_contrast", "contrast name 'c' is used twice")]


_NUMERIC_SAMPLES = ("sample_id\tgroup\trin\tbatch\nS1\ta\t7.1\t1\nS2\ta\t8.2\t2\nS3\ta\t6.5\t1\nS4\tb\t9.0\t2\n"
                    "S5\tb\t7.7\t1\nS6\tb\t8.8\t2\n")
_NUMERIC_COUNTS = "gene\tS1\tS2\tS3\tS4\tS5\tS6\nTP53\t10\t20\t30\t25\t5\t6\nMYC\t5\t6\t7\t9\t1\t2\n"
_NUMERIC_HEAD = ("study_id: s\nname: s\nsamples: samples.tsv\nassays:\n"
                 "  - {name: rna, kind: rna_counts, format: matrix, path: counts.tsv, gene_id_type: symbol}\n"
                 "contrasts:\n")


def test_read_study_warns_of_a_numeric_covariate_fitted_as_levels(tmp_path, reference, study_folder):
    # trial: covariates: [rin] (numbers, 15 distinct values) was fitted as a 15-level factor without a word, where
    # R's DESeq2 fits a numeric column as one slope. rin (6 distinct numbers) is warned at its contrast's line; a
    # batch coded 1 / 2 (two levels either way) and rin listed under numeric_covariates are not.
    manifest = (_NUMERIC_HEAD + "  - {name: levels, factor: group, test: b, reference: a, covariates: [batch, rin]}\n"
                "  - {name: slope, factor: group, test: b, reference: a, covariates: [batch, rin],\n"
                "     numeric_covariates: [rin]}\n")
    folder = study_folder(tmp_path, manifest, {"samples.tsv": _NUMERIC_SAMPLES, "counts.tsv": _NUMERIC_COUNTS})
    issues = study_issues(read_study(folder, reference=reference)).filter(pl.col("severity") != "info")
    # as 6 levels rin leaves no residual df (1 + 1 + 5 + 1 coefficients for 6 samples): the DE stage skips it
    assert issues.select("file", "line", "column", "code", "severity").rows() == [
        ("study.yaml", 7, "contrasts[0].covariates", "numeric_covariate_as_levels", "warning"),
        ("study.yaml", 7, "contrasts[0].factor", "invalid_contrast", "warning")]
    assert issues["message"][1].startswith("contrast 'levels': design ~ batch + rin + group is not full rank")
    assert issues["message"][0] == (
        "contrast 'levels': covariate 'rin' holds numbers and is fitted as 6 levels (one coefficient each); if "
        "'rin' is a measurement (RIN, age) rather than labels, list it under numeric_covariates to fit one slope, "
        "as R's DESeq2 fits a numeric column")


@pytest.mark.parametrize(("values", "warned"), [
    ("1 1 2 3 3 4", False),  # a batch / lane / plate coded as numbers: labels, 4 levels
    ("7.9 8.1 6.5 7.9 9.0 8.1", True),  # RIN: not integers (3 repeats: the rule is not 'all distinct')
    ("31 45 52 60 38 41", True),  # ages in years: each sample its own value
])
def test_read_study_warns_of_numbers_fitted_as_levels_only_when_they_look_like_a_measurement(
        tmp_path, reference, study_folder, values, warned):
    # Review (Session 17): every covariate of numbers with > 2 distinct values was warned and told to become one
    # slope, a batch coded 1, 2, 3, 4 too.
    rows = "".join(f"S{i}\t{'ab'[i % 2]}\t{v}\n" for i, v in enumerate(values.split(), start=1))
    manifest = _NUMERIC_HEAD + "  - {name: c, factor: group, test: b, reference: a, covariates: [x]}\n"
    folder = study_folder(tmp_path, manifest, {"samples.tsv": "sample_id\tgroup\tx\n" + rows,
                                               "counts.tsv": _NUMERIC_COUNTS})
    issues = study_issues(read_study(folder, reference=reference))
    assert (issues["code"] == "numeric_covariate_as_levels").any() == warned


def test_read_study_refuses_a_numeric_covariate_value_that_is_no_number(tmp_path, reference, study_folder):
    manifest = (_NUMERIC_HEAD + "  - {name: slope, factor: group, test: b, reference: a, covariates: [rin],\n"
                "     numeric_covariates: [rin]}\n")
    samples = _NUMERIC_SAMPLES.replace("S5\tb\t7.7", "S5\tb\tlow")
    folder = study_folder(tmp_path, manifest, {"samples.tsv": samples, "counts.tsv": _NUMERIC_COUNTS})
    issues = study_issues(read_study(folder, reference=reference)).filter(pl.col("severity") != "info")
    # a warning: the DE stage skips this contrast, the study loads
    assert issues.select("file", "line", "column", "code", "severity", "message").rows() == [
        ("study.yaml", 7, "contrasts[0].numeric_covariates", "invalid_contrast", "warning",
         "contrast 'slope': numeric covariate 'rin' of sample 'S5' is 'low', not a finite number (1 such sample(s))"
         "; differential expression skips this contrast (the study's other contrasts and tables are computed and "
         "published)")]


def test_read_study_refuses_a_numeric_covariate_not_among_the_covariates(tmp_path, reference, study_folder):
    manifest = (_NUMERIC_HEAD + "  - {name: slope, factor: group, test: b, reference: a, covariates: [batch],\n"
                "     numeric_covariates: [rin]}\n")
    folder = study_folder(tmp_path, manifest, {"samples.tsv": _NUMERIC_SAMPLES, "counts.tsv": _NUMERIC_COUNTS})
    errors = study_issues(read_study(folder, reference=reference)).filter(pl.col("severity") == "error")
    assert errors.select("file", "line", "code").rows() == [("study.yaml", 7, "invalid_manifest")]
    assert "numeric_covariates ['rin'] must also be listed in covariates (['batch'])" in errors["message"].item()


def test_discover_study_says_to_quote_a_level_yaml_read_as_a_boolean_or_a_number(tmp_path, study_folder):
    """A factor level 'yes' (smoker: yes / no) written unquoted is a YAML boolean, a contrast name 2024 a number;
    'Input should be a valid string' alone did not say why a word the samples table holds was refused. (A level
    written as a number is its text: test_contrast_levels_and_filter_values_written_as_yaml_numbers_are_their_text.)
    """
    manifest = ("study_id: s\nname: s\nassays: []\ncontrasts:\n"
                "  - {name: smokers, factor: smoker, test: yes, reference: no}\n"
                "  - {name: 2024, factor: batch, test: 2, reference: '1'}\n")
    issues = IssueLog("s")
    assert discover_study(study_folder(tmp_path, manifest), issues=issues) is None
    messages = {i.column: i.message for i in issues.errors}
    assert "quote the value" in messages["contrasts.0.test"]
    assert "quote the value" in messages["contrasts.0.reference"]
    assert "YAML read 2024 as a number: quote it, e.g. '2024'" in messages["contrasts.1.name"]
    assert "contrasts.1.test" not in messages
    assert {i.line for i in issues.errors} == {5, 6}


def test_the_quote_hint_gives_a_yaml_number_as_written(tmp_path, study_folder):
    # a contrast name 010 is the number 8 to YAML 1.1: the hint quotes what was written, not '8'
    manifest = "study_id: s\nname: s\nassays: []\ncontrasts:\n  - {name: 010, factor: batch, test: 2, reference: 1}\n"
    issues = IssueLog("s")
    assert discover_study(study_folder(tmp_path, manifest), issues=issues) is None
    assert "YAML read 010 as the number 8: quote it, e.g. '010'" in issues.errors[0].message


@pytest.mark.parametrize("separator", ["\n", "\u2028", "\x85"], ids=["newline", "line_separator", "nel"])
def test_ingest_study_sample_label_with_a_newline_from_a_file_name_is_a_located_error(tmp_path, reference,
                                                                                       shared_data, study_folder,
                                                                                       separator):
    """Per-sample files take their sample from the file name: a name holding a newline (a script's
    'ERR\\n188021' join) loaded a sample 'ERR\\n188021' with no issue, which breaks every line-based export; so do
    U+2028 and NEL, line breaks to str.splitlines (review)."""
    folder = study_folder(tmp_path, "study_id: r\nname: n\nassays:\n"
                          "  - {name: rsem, kind: rna_counts, format: rsem, path: '*.genes.results.gz'}\n", name="r")
    source = (shared_data / "rnaseq_geuvadis_rsem" / "ERR188021.genes.results.gz").read_bytes()
    (folder / "ERR188021.genes.results.gz").write_bytes(source)
    (folder / f"ERR{separator}188088.genes.results.gz").write_bytes(source)
    ingest = read_study(folder, reference=reference)
    issues = study_issues(ingest)
    (error,) = issues.filter(pl.col("severity") == "error").iter_rows(named=True)
    label = f"ERR{separator}188088"
    assert (error["code"], error["file"], error["column"]) == (
        "invalid_sample_label", f"{label}.genes.results.gz", repr(label)[1:-1])
    assert repr(label) in error["message"]
