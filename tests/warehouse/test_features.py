"""Feature sets end to end: built by the CLI from a BRCA study, read back by version after a new study lands."""

from __future__ import annotations

import json
import shutil

import polars as pl
import pyarrow.parquet as pq
import pytest

import warehouse
from tests.warehouse.brca_study import write_brca_study
from warehouse.cli import main

pytestmark = pytest.mark.slow

SPEC = """\
name: brca_panel
studies: {studies}
layers:
  - layer: rna
    genes: [NDRG2, RTN2]
  - layer: protein
    genes: [GATA3, AR]
  - layer: copy_number
    genes: [GATA3]
  - layer: mutation
    genes: [GATA3, NDRG2]
scale:
  method: zscore
  train: [{train}]
"""


@pytest.fixture(scope="module")
def versions(tmp_path_factory, shared_data) -> dict:
    tmp = tmp_path_factory.mktemp("features")
    mrna, protein = write_brca_study(tmp / "landing" / "brca", shared_data)
    wh = tmp / "wh"
    assert main(["build", "--landing", str(tmp / "landing"), "--warehouse", str(wh)]) == 0
    train = mrna["sample_id"].head(12).to_list()
    raw, scaled, everything = tmp / "raw.yaml", tmp / "scaled.yaml", tmp / "all.yaml"
    raw.write_text(SPEC.format(studies="[brca]", train="").replace("scale:\n  method: zscore\n  train: []\n", ""))
    scaled.write_text(SPEC.format(studies="[brca]", train=", ".join(train)).replace("brca_panel", "brca_scaled"))
    everything.write_text(SPEC.format(studies="all", train="").replace("scale:\n  method: zscore\n  train: []\n",
                                                                          "").replace("brca_panel", "brca_all"))
    for spec in (raw, scaled, everything):
        assert main(["features", "build", str(spec), "--warehouse", str(wh)]) == 0
    first = warehouse.features("brca_all", warehouse=wh)
    # a second study lands; the same spec builds version 2, version 1 stays as it was
    write_brca_study(tmp / "landing" / "brca2", shared_data, study_id="brca2")
    assert main(["build", "--landing", str(tmp / "landing"), "--warehouse", str(wh), "--study", "brca2"]) == 0
    assert main(["features", "build", str(everything), "--warehouse", str(wh)]) == 0
    return {"wh": wh, "mrna": mrna, "protein": protein, "train": train, "first": first, "tmp": tmp}


def test_features_cells_equal_the_source_files(versions):
    frame = warehouse.features("brca_panel", warehouse=versions["wh"])
    mrna, protein = versions["mrna"], versions["protein"]
    assert frame.columns == ["study_id", "sample_id", "rna__NDRG2", "rna__RTN2", "protein__GATA3", "protein__AR",
                             "copy_number__GATA3", "mutation__GATA3", "mutation__NDRG2"]
    assert frame.height == mrna.height
    joined = frame.join(mrna.select("sample_id", "NDRG2", "RTN2"), on="sample_id").join(
        protein.select("sample_id", pl.col("GATA3").alias("p_GATA3"), pl.col("AR").alias("p_AR")), on="sample_id")
    assert joined["rna__NDRG2"].to_list() == joined["NDRG2"].to_list()
    assert joined["rna__RTN2"].to_list() == joined["RTN2"].to_list()
    assert joined["protein__GATA3"].to_list() == joined["p_GATA3"].to_list()
    assert joined["protein__AR"].to_list() == joined["p_AR"].to_list()
    order = mrna["sample_id"].to_list()
    expected = {s: (None if i == 0 else float(i % 3 == 1)) for i, s in enumerate(order)}
    assert dict(zip(frame["sample_id"], frame["mutation__GATA3"], strict=True)) == expected
    assert frame["copy_number__GATA3"].null_count() == mrna.height  # log2-only CN: the default (call) is NULL


def test_features_scaling_parameters_come_from_training_samples(versions):
    frame = warehouse.features("brca_scaled", warehouse=versions["wh"])
    mrna = versions["mrna"]
    train = mrna.filter(pl.col("sample_id").is_in(versions["train"]))["NDRG2"].to_numpy()
    manifest = json.loads(warehouse.feature_versions("brca_scaled", warehouse=versions["wh"])["manifest"][0])
    assert manifest["scaling"]["rna__NDRG2"]["mean"] == pytest.approx(train.mean())
    assert manifest["scaling"]["rna__NDRG2"]["sd"] == pytest.approx(train.std(ddof=1))
    expected = (mrna["NDRG2"].to_numpy() - train.mean()) / train.std(ddof=1)
    got = frame.join(mrna.select("sample_id", "NDRG2"), on="sample_id")
    order = {s: i for i, s in enumerate(mrna["sample_id"])}
    for sample, value in zip(got["sample_id"], got["rna__NDRG2"], strict=True):
        assert value == pytest.approx(expected[order[sample]])
    assert sorted(manifest["train"]) == sorted([["brca", s] for s in versions["train"]])


def test_feature_versions_and_version_read_after_a_new_study(versions):
    wh = versions["wh"]
    history = warehouse.feature_versions("brca_all", warehouse=wh)
    assert history["version"].to_list() == [1, 2]
    assert history["rows"].to_list() == [20, 40]
    assert history.columns == ["version", "created_at", "rows", "columns", "content_hash", "manifest"]
    v2 = json.loads(history["manifest"][1])
    assert set(v2["inputs"]["tables"]["gene_sample_omics"]) == {"brca", "brca2"}
    assert warehouse.features("brca_all", version=1, warehouse=wh).equals(versions["first"])
    assert warehouse.features("brca_all", warehouse=wh).height == 40
    batches = list(warehouse.feature_batches("brca_all", version=2, batch_rows=15, warehouse=wh))
    assert [b.height for b in batches] == [15, 15, 10]
    assert pl.concat(batches).equals(warehouse.features("brca_all", version=2, warehouse=wh))
    assert warehouse.features("brca_all", version=1, warehouse=wh).to_pandas().shape == (20, 9)


def test_features_list_prints_an_aligned_table_and_json_of_each_newest_version(versions, capsys):
    wh = str(versions["wh"])
    assert main(["features", "list", "--warehouse", wh]) == 0
    out = capsys.readouterr().out
    assert "shape:" not in out  # the raw polars table: a shape line, box drawing, cut columns (small19)
    assert "│" not in out
    assert "…" not in out
    header, rule, *lines, footer = out.splitlines()
    assert header.split() == ["feature_set", "version", "versions", "created_at", "rows", "x", "columns", "hash",
                              "studies"]
    assert set(rule.replace(" ", "")) == {"-"}
    start = header.index("studies")  # aligned: every row's studies value begins under its header
    assert all(line[start - 1] == " " and line[start:start + 1].strip() for line in lines), lines
    rows = {line.split()[0]: line for line in lines}
    assert sorted(rows) == ["brca_all", "brca_panel", "brca_scaled"]
    newest = warehouse.feature_versions("brca_all", warehouse=wh).row(1, named=True)
    # brca_all version 2 of 2: 2 studies x 20 samples; 7 feature columns (2 rna, 2 protein, 1 cn, 2 mutation)
    assert rows["brca_all"].split()[:3] == ["brca_all", "2", "2"]
    assert "40 x 7" in rows["brca_all"]
    assert newest["content_hash"][:12] in rows["brca_all"]
    assert rows["brca_all"].rstrip().endswith("all")
    assert rows["brca_panel"].rstrip().endswith("brca")
    assert footer.startswith("3 feature sets")
    assert main(["features", "list", "--json", "--warehouse", wh]) == 0
    listed = {row["feature_set"]: row for row in json.loads(capsys.readouterr().out)}
    assert listed["brca_all"] | {"created_at": None} == {
        "feature_set": "brca_all", "version": 2, "versions": 2, "created_at": None, "rows": 40, "columns": 7,
        "content_hash": newest["content_hash"], "studies": "all"}
    assert listed["brca_all"]["created_at"].startswith(str(newest["created_at"].date()))


def test_features_cli_list_show_export_and_unchanged_rebuild(versions, capsys, tmp_path):
    wh = str(versions["wh"])
    assert main(["features", "list", "--warehouse", wh]) == 0
    assert "brca_all" in capsys.readouterr().out
    assert main(["features", "show", "brca_all", "--warehouse", wh]) == 0
    assert "version 2" in capsys.readouterr().out
    out = tmp_path / "v1.parquet"
    assert main(["features", "export", "brca_all", "--version", "1", "--output", str(out), "--warehouse", wh]) == 0
    assert pl.read_parquet(out).equals(versions["first"])
    # the file says which set and version it holds (trialH: an exported matrix had no trace of its version)
    stored = {k.decode(): v.decode() for k, v in pq.read_metadata(out).metadata.items() if k.startswith(b"omicsdw.")}
    first = warehouse.feature_versions("brca_all", warehouse=wh).row(0, named=True)
    assert stored == {"omicsdw.feature_set": "brca_all", "omicsdw.version": "1",
                      "omicsdw.content_hash": first["content_hash"]}
    # a .csv name was written as Parquet, silently (trialH)
    assert main(["features", "export", "brca_all", "--output", str(tmp_path / "v1.csv"), "--warehouse", wh]) == 2
    assert "export writes Parquet; name the file .parquet" in capsys.readouterr().err
    assert not (tmp_path / "v1.csv").exists()
    assert main(["features", "show", "nope", "--warehouse", wh]) == 2
    # scaled columns: rna 2 + protein 2 + copy_number 1 (mutation is not scaled), learned on the 12 given samples
    assert main(["features", "show", "brca_scaled", "--warehouse", wh]) == 0
    assert "  learned on 12 training samples: scaling of 5 columns" in capsys.readouterr().out
    assert main(["features", "export", "brca_all", "--output", str(tmp_path / "no" / "x.parquet"),
                 "--warehouse", wh]) == 2
    assert "no folder" in capsys.readouterr().err
    spec = versions["tmp"] / "all.yaml"
    assert main(["features", "build", str(spec), "--warehouse", wh]) == 0
    assert "unchanged" in capsys.readouterr().out
    assert warehouse.feature_versions("brca_all", warehouse=wh).height == 2
    absent = tmp_path / "absent.yaml"
    absent.write_text("name: brca_absent\nstudies: [brca]\nlayers:\n  - {layer: protein, genes: [GATA3, NOPE]}\n")
    assert main(["features", "build", str(absent), "--warehouse", wh]) == 0
    # NOPE is an NCBI alias of IGDCC4 (shipped gene_xrefs), so the build names that symbol (trialH)
    assert capsys.readouterr().out.splitlines() == ["brca_absent version 1: 20 rows x 2 columns",
                                                    "not found (their columns are NULL): protein: NOPE",
                                                    "official symbols of genes written otherwise (ask for these): "
                                                    "NOPE is IGDCC4"]
    assert warehouse.features("brca_absent", warehouse=wh)["protein__NOPE"].null_count() == 20
    shutil.rmtree(versions["tmp"] / "landing" / "brca2")


def test_feature_set_asset_materialises_a_version(versions, tmp_path):
    import dagster as dg

    from orchestration.assets.features import feature_set_assets
    from orchestration.resources import WarehouseResource

    (tmp_path / "panel.yaml").write_text("name: brca_asset\nstudies: [brca]\nlayers:\n"
                                         "  - {layer: rna, genes: [NDRG2]}\n")
    resource = WarehouseResource(landing_dir=str(versions["tmp"] / "landing"), warehouse_dir=str(versions["wh"]))
    with dg.DagsterInstance.ephemeral() as instance:
        result = dg.materialize(feature_set_assets(tmp_path), resources={"warehouse": resource}, instance=instance)
    assert result.success
    frame = warehouse.features("brca_asset", warehouse=versions["wh"])
    assert frame.join(versions["mrna"], on="sample_id").select((pl.col("rna__NDRG2") == pl.col("NDRG2")).all()).item()


def test_features_signature_layer_cells_equal_stored_signature_scores(versions):
    wh, tmp = versions["wh"], versions["tmp"]
    stored = (warehouse.table("signature_scores", warehouse=wh)
              .filter((pl.col("study_id") == "brca") & (pl.col("library") == "msigdb_hallmark")).collect())
    assert stored.filter(pl.col("gene_set") == "HALLMARK_HYPOXIA")["assay"].unique().to_list() == ["mrna"]
    for name, method in (("brca_ssgsea", None), ("brca_singscore", "singscore")):
        spec = tmp / f"{name}.yaml"
        spec.write_text(f"name: {name}\nstudies: [brca]\nlayers:\n  - layer: signature\n"
                        "    genes: [HALLMARK_HYPOXIA, HALLMARK_GLYCOLYSIS]\n"
                        + (f"    method: {method}\n" if method else ""))
        assert main(["features", "build", str(spec), "--warehouse", str(wh)]) == 0
        frame = warehouse.features(name, warehouse=wh)
        assert frame.columns == ["study_id", "sample_id", "signature__HALLMARK_HYPOXIA",
                                 "signature__HALLMARK_GLYCOLYSIS"]
        assert frame.height == 20
        for gene_set in ("HALLMARK_HYPOXIA", "HALLMARK_GLYCOLYSIS"):
            expected = stored.filter((pl.col("gene_set") == gene_set) & (pl.col("method") == (method or "ssgsea")))
            cells = frame.select("sample_id", f"signature__{gene_set}").join(
                expected.select("sample_id", "score"), on="sample_id", how="full")
            assert cells.height == 20
            assert cells[f"signature__{gene_set}"].to_list() == cells["score"].to_list()


def test_features_verbs_refuse_a_missing_warehouse_without_creating_it(tmp_path, capsys):
    missing = tmp_path / "nowhere"
    for verb in (["list"], ["show", "x"], ["export", "x", "--output", str(tmp_path / "x.parquet")]):
        assert main(["features", *verb, "--warehouse", str(missing)]) == 2
        assert f"no warehouse at {missing}" in capsys.readouterr().err
    assert not missing.exists()


def test_features_build_names_each_spec_problem_on_one_line(tmp_path, capsys):
    (tmp_path / "wh").mkdir()
    spec = tmp_path / "bad.yaml"
    spec.write_text("name: x\nstudies: [brca]\nlayer:\n  - {layer: rna, genes: [TP53]}\n")
    assert main(["features", "build", str(spec), "--warehouse", str(tmp_path / "wh")]) == 2
    assert capsys.readouterr().err == (f"omicsdw features build: {spec}: 2 problem(s): layers: Field required; "
                                       "layer: Extra inputs are not permitted\n")


def test_build_features_folder_reports_a_failing_spec_and_exits_1(tmp_path, example_landing, capsys):
    landing = example_landing(tmp_path, "pasilla")
    specs = tmp_path / "specs"
    specs.mkdir()
    (specs / "p.yaml").write_text("name: p\nstudies: [nope]\nlayers:\n  - {layer: rna, genes: [TP53]}\n")
    # A spec that does not validate is named by its file and does not stop the others (trialE: it printed
    # 'features: 1 problem(s): spec: ...' naming no file, and no spec of the folder was built).
    (specs / "a_dup.yaml").write_text("name: d\nstudies: [pasilla]\nlayers:\n  - {layer: rna, top_variable: 5}\n"
                                      "  - {layer: rna, genes: [TP53]}\n")
    assert main(["build", "--landing", str(landing), "--warehouse", str(tmp_path / "wh"),
                 "--features", str(specs)]) == 1
    captured = capsys.readouterr()
    assert "features: a_dup.yaml: 1 problem(s): spec: Value error, layer(s) listed twice: rna\n" in captured.err
    assert "features: FAILED feature set 'p': studies not published: nope\n" in captured.err
    assert "failed: feature spec a_dup.yaml, feature sets" in captured.out
