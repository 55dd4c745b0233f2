import pytest
import yaml
from pydantic import ValidationError

from schemas.manifest import Assay, Contrast, StudyManifest, load_manifest


def test_assay_rejects_a_measure_the_tool_output_lacks():
    # Salmon quant.sf has NumReads and TPM only: an fpkm measure used to crash the Salmon parser with ValueError
    with pytest.raises(ValidationError, match="salmon output holds no 'fpkm' column"):
        Assay(name="a", kind="rna_abundance", format="salmon", path="*/quant.sf", measure="fpkm")


def test_assay_accepts_the_measures_rsem_writes():
    for measure in (None, "tpm", "fpkm", "counts"):
        assay = Assay(name="a", kind="rna_abundance", format="rsem", path="*.genes.results", measure=measure)
        assert assay.measure == measure
    # the measure of a count assay is not read, so not checked against the format
    assert Assay(name="c", kind="rna_counts", format="salmon", path="*/quant.sf", measure="fpkm").measure == "fpkm"


def test_check_study_id_is_the_manifest_rule(tmp_path):
    from schemas.manifest import StudyManifest, check_study_id

    assert check_study_id("TCGA-BRCA_2024.v1") == "TCGA-BRCA_2024.v1"
    for bad in ("a=b", "x%2Fy", "a/b", "has space", "-lead", "", "a" * 65):
        with pytest.raises(ValueError, match="study id"):
            check_study_id(bad)
        with pytest.raises(ValidationError):
            StudyManifest(study_id=bad, name="n")


def test_confine_rejects_absolute_dotdot_and_linked_paths(tmp_path):
    from schemas.manifest import PathOutsideStudy, confine

    study = tmp_path / "study"
    study.mkdir()
    (tmp_path / "outside.tsv").write_text("secret\n")
    (study / "inside.tsv").write_text("x\n")
    (study / "link.tsv").symlink_to(tmp_path / "outside.tsv")
    assert confine(study, "inside.tsv") == study.resolve() / "inside.tsv"
    assert confine(study, study / "inside.tsv") == study.resolve() / "inside.tsv"
    for path in ("../outside.tsv", str(tmp_path / "outside.tsv"), "link.tsv", study / "link.tsv"):
        with pytest.raises(PathOutsideStudy):
            confine(study, path)


def test_qc_key_has_documented_defaults_and_reports_typos():
    from schemas.manifest import StudyManifest, unknown_keys

    default = StudyManifest(study_id="s", name="s")
    assert (default.qc.nmads, default.qc.exclude_failed, default.qc.top_genes) == (3.0, False, 500)
    custom = StudyManifest.model_validate({"study_id": "s", "name": "s", "qc": {"nmads": 2.5, "exclude_failed": True}})
    assert (custom.qc.nmads, custom.qc.exclude_failed) == (2.5, True)
    assert StudyManifest.model_validate_json(custom.model_dump_json()).qc == custom.qc  # stored in studies.manifest
    with pytest.raises(ValidationError, match="nmads"):
        StudyManifest.model_validate({"study_id": "s", "name": "s", "qc": {"nmads": 0}})
    assert unknown_keys({"study_id": "s", "name": "s", "qc": {"nmad": 3}}) == [("qc.nmad", "nmads")]


def test_contrast_filter_takes_one_value_or_a_list():
    contrast = Contrast(name="c", factor="f", test="t", reference="r", filter={"cell_type": "B", "tissue": ["x", "y"]})
    assert contrast.filter == {"cell_type": ["B"], "tissue": ["x", "y"]}


def test_contrast_levels_and_filter_values_written_as_yaml_numbers_are_their_text():
    # trialE: `test: 10` / `reference: 2` for a dose column of samples.tsv failed the study with 'Input should be a
    # valid string' until quoted; sample attributes are text, so the number is the level as written.
    manifest = StudyManifest.model_validate(yaml.safe_load(
        "study_id: s\nname: s\ncontrasts:\n  - {name: d, factor: dose, test: 10, reference: 2, filter: {batch: 1}}\n"
        "  - {name: h, factor: time, test: 0.5, reference: 0, filter: {batch: [1, b2]}}\n"
        "zscore_reference: {attribute: batch, values: [1, 2]}\n"))
    assert [(c.test, c.reference, c.filter) for c in manifest.contrasts] == [
        ("10", "2", {"batch": ["1"]}), ("0.5", "0", {"batch": ["1", "b2"]})]
    assert manifest.zscore_reference is not None
    assert manifest.zscore_reference.values == ["1", "2"]
    # YAML's yes / no are booleans, not numbers: still refused (their text could be yes, true, on, ...)
    with pytest.raises(ValidationError, match="valid string"):
        Contrast(name="c", factor="f", test=True, reference="r")  # type: ignore[arg-type]


def test_single_cell_assay_needs_its_cell_columns_and_annotations_for_10x():
    with pytest.raises(ValueError, match="needs sample_column and cell_type_column"):
        Assay(name="sc", kind="sc_rna_counts", format="h5ad", path="c.h5ad")
    with pytest.raises(ValueError, match="set `cell_annotations`"):
        Assay(name="sc", kind="sc_rna_counts", format="10x_mtx", path="m", sample_column="s", cell_type_column="c")
    with pytest.raises(ValueError, match="`layer` names an AnnData layer"):
        Assay(name="sc", kind="sc_rna_counts", format="10x_h5", path="m.h5", sample_column="s",
              cell_type_column="c", cell_annotations="cells.tsv", layer="counts")
    with pytest.raises(ValueError, match="not a sc_rna_counts layout"):
        Assay(name="sc", kind="sc_rna_counts", format="matrix", path="m", sample_column="s", cell_type_column="c")


@pytest.mark.parametrize("name", ["../../../escaped", "a/b", "a\\b", ".hidden", "", "tab\there"])
def test_contrast_and_assay_names_that_would_leave_the_report_folder_are_refused(name):
    # '../../../escaped' wrote escaped_volcano.png, escaped_ma.png and escaped_enrichment_dots.png three folders
    # above the study's report folder (outside the warehouse); an assay name does the same with its ssGSEA heatmap
    with pytest.raises(ValidationError, match="name"):
        Contrast(name=name, factor="group", test="b", reference="a")
    with pytest.raises(ValidationError, match="name"):
        Assay(name=name, kind="rna_counts", format="matrix", path="counts.tsv")


def test_contrast_and_assay_names_with_spaces_capitals_and_dots_inside_are_kept():
    assert Contrast(name="Treated vs Control 2.0", factor="g", test="b", reference="a").name == "Treated vs Control 2.0"
    assert Assay(name="RNA seq", kind="rna_counts", format="matrix", path="c.tsv").name == "RNA seq"


@pytest.mark.parametrize(("text", "line"), [
    ("a: 1\nb: {c: 1, c: 2}\n", 2),                      # a flow mapping: both on one line
    ("a: 1\nb:\n  - x: 1\n    y: 2\n    x: 3\n", 5),      # inside a list item
    ("a: 1\n'a': 2\n", 2),                               # quoting does not make another key
    ("yes: 1\ntrue: 2\n", 2),                            # one boolean key to YAML 1.1 (review)
    ("1: a\n0x1: b\n", 2),                               # one integer
    ("1.0: a\n1: b\n", 2),                               # one key of the loaded dict (1.0 == 1)
    ("~: 1\nnull: 2\n", 2),                              # one null
])
def test_compose_yaml_refuses_a_key_given_twice_at_the_repeat(text: str, line: int) -> None:
    from schemas.manifest import YamlRejected, compose_yaml

    with pytest.raises(YamlRejected, match="given twice") as refused:
        compose_yaml(text)
    assert refused.value.line == line


def test_compose_yaml_takes_merge_keys_and_keys_that_only_look_alike() -> None:
    """``<<: *anchor`` then an explicit key overrides the merged one (YAML's merge rule), and 1 (an int) is
    another key than '1' (a string): neither is a repeat."""
    import yaml

    from schemas.manifest import compose_yaml

    text = "base: &b {p: 1, q: 2}\nover:\n  <<: *b\n  p: 5\n1: int\n'1': str\n"
    compose_yaml(text)
    assert yaml.safe_load(text)["over"] == {"p": 5, "q": 2}


@pytest.mark.parametrize(("written", "text"), [
    ("010", "010"), ("01", "01"), ("0.50", "0.50"), ("1_000", "1_000"), ("1:30", "1:30"), ("0x1F", "0x1F"),
    ("1.0e+3", "1.0e+3"), ("10", "10"), ("2.5", "2.5")])
def test_a_level_written_as_a_yaml_number_is_the_text_as_written(tmp_path, written, text):
    # Review (Session 17): str() of the number YAML 1.1 made lost the spelling: 010 became '8' (octal), 01 '1',
    # 0.50 '0.5', 1_000 '1000', 1:30 '90' (sexagesimal), 0x1F '31', 1.0e+3 '1000.0'; the study then named a level
    # nobody wrote, or a filter {batch: 01} silently selected the samples of batch '1'.
    path = tmp_path / "study.yaml"
    path.write_text(f"study_id: s\nname: s\nqc: {{nmads: 2.5, top_genes: 1_000}}\ncontrasts:\n"
                    f"  - {{name: d, factor: dose, test: {written}, reference: x, filter: {{batch: {written}}}}}\n"
                    f"zscore_reference: {{attribute: batch, values: [{written}]}}\n")
    manifest = load_manifest(path)
    contrast = manifest.contrasts[0]
    assert (contrast.test, contrast.filter) == (text, {"batch": [text]})
    assert manifest.zscore_reference is not None
    assert manifest.zscore_reference.values == [text]
    # numeric fields still read as numbers (plain int / float)
    assert (manifest.qc.nmads, manifest.qc.top_genes) == (2.5, 1000)
    assert type(manifest.qc.nmads) is float
    assert type(manifest.qc.top_genes) is int
