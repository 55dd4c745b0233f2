"""sc_rna_counts: pseudobulk per (sample, cell type) from h5ad, 10x mtx and 10x HDF5, checked against scipy.

References are computed here independently of the reader: scipy.io.mmread of the Matrix Market file (the whole
matrix), the annotation table read with the csv module, and the group sums taken cell by cell with scipy.sparse.
"""

from __future__ import annotations

import csv
import gzip
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import scipy.io
import scipy.sparse as sp

from transforms.ingest.parse import single_cell
from transforms.ingest.study import discover_study, read_study
from transforms.issues import IssueLog
from warehouse.load import study_issues

TEST_DATA = Path(__file__).resolve().parents[2] / "data"
TENX = TEST_DATA / "single_cell_10x_chr21"
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "pbmc_chr21"
LOGNORM = TEST_DATA / "single_cell_pbmc68k_reduced" / "pbmc68k_lognorm.h5ad"

ASSAY = {
    "10x_mtx": "format: 10x_mtx\n    path: matrix\n    gene_id_type: ensembl\n    cell_annotations: cells.tsv\n",
    "10x_h5": "format: 10x_h5\n    path: matrix.h5\n    gene_id_type: ensembl\n    cell_annotations: cells.tsv\n",
    "h5ad": "format: h5ad\n    path: cells.h5ad\n    gene_id_type: symbol\n    layer: counts\n",
}


def sc_study(tmp_path: Path, layout: str, *, extra: str = "", samples: bool = True) -> Path:
    """A study folder with the vendored chr21 cells in ``layout`` (one sc_rna_counts assay named ``sc``)."""
    folder = tmp_path / layout
    folder.mkdir()
    shutil.copytree(TENX / "filtered_feature_bc_matrix", folder / "matrix")
    shutil.copy(TENX / "filtered_feature_bc_matrix.h5", folder / "matrix.h5")
    shutil.copy(TENX / "cells.tsv", folder / "cells.tsv")
    shutil.copy(EXAMPLE / "cells.h5ad", folder / "cells.h5ad")
    if samples:
        shutil.copy(EXAMPLE / "samples.tsv", folder / "samples.tsv")
    (folder / "study.yaml").write_text(
        f"study_id: sc_{layout}\nname: n\n" + ("samples: samples.tsv\n" if samples else "")
        + "assays:\n  - name: sc\n    kind: sc_rna_counts\n    sample_column: sample\n    cell_type_column: cell_type\n"
        f"    {ASSAY[layout]}{extra}")
    return folder


def table(ingest, name: str) -> pl.DataFrame:
    return pl.concat([f.collect() for f in ingest.tables[name]], how="diagonal_relaxed")


@pytest.fixture(scope="module")
def cells() -> tuple[sp.csr_matrix, list[str], list[tuple[str, str]]]:
    """(cells x Ensembl ids counts from scipy.io.mmread, Ensembl ids, (sample, cell type) per cell)."""
    with gzip.open(TENX / "filtered_feature_bc_matrix" / "matrix.mtx.gz") as fh:
        counts = sp.csr_matrix(scipy.io.mmread(fh).T)
    with gzip.open(TENX / "filtered_feature_bc_matrix" / "features.tsv.gz", "rt") as fh:
        features = [line.split("\t")[0] for line in fh]
    with gzip.open(TENX / "filtered_feature_bc_matrix" / "barcodes.tsv.gz", "rt") as fh:
        barcodes = [line.strip() for line in fh]
    with open(TENX / "cells.tsv", newline="") as fh:
        labels = {row["barcode"]: (row["sample"], row["cell_type"]) for row in csv.DictReader(fh, delimiter="\t")}
    return counts, features, [labels[b] for b in barcodes]


@pytest.fixture(scope="module")
def reference_sums(cells) -> dict[tuple[str, str], np.ndarray]:
    """Group -> summed counts, adding one cell's sparse row at a time."""
    counts, _, groups = cells
    sums: dict[tuple[str, str], np.ndarray] = {}
    for i, group in enumerate(groups):
        sums[group] = sums.get(group, 0) + counts.getrow(i).toarray().ravel()
    return sums


def pseudobulk_matrix(frame: pl.DataFrame, features: list[str]) -> dict[tuple[str, str], np.ndarray]:
    """sc_pseudobulk rows as group -> counts in ``features`` order."""
    out = {}
    for (sample, cell_type), part in frame.group_by("sample_id", "cell_type"):
        values = dict(part.select("feature_id", "count").iter_rows())
        out[(str(sample), str(cell_type))] = np.array([values[f] for f in features])
    return out


@pytest.mark.parametrize("layout", ["10x_mtx", "10x_h5"])
def test_read_single_cell_sums_equal_scipy_sum_of_cells(tmp_path, reference, cells, reference_sums, layout):
    ingest = read_study(sc_study(tmp_path, layout), reference=reference)
    assert not ingest.issues.has_errors, ingest.issues.errors
    got = pseudobulk_matrix(table(ingest, "sc_pseudobulk"), cells[1])
    assert got.keys() == reference_sums.keys()
    for group, expected in reference_sums.items():
        np.testing.assert_array_equal(got[group], expected)


def test_read_single_cell_h5ad_layer_gives_the_same_pseudobulk_as_10x(tmp_path, reference, cells, reference_sums):
    import anndata

    ingest = read_study(sc_study(tmp_path, "h5ad"), reference=reference)
    assert not ingest.issues.has_errors, ingest.issues.errors
    var = anndata.read_h5ad(EXAMPLE / "cells.h5ad", backed="r").var
    ensembl = dict(zip(var.index, var["gene_ids"], strict=True))
    frame = table(ingest, "sc_pseudobulk").with_columns(pl.col("feature_id").replace_strict(ensembl))
    got = pseudobulk_matrix(frame, cells[1])
    for group, expected in reference_sums.items():
        np.testing.assert_array_equal(got[group], expected)


def test_read_single_cell_in_small_blocks_sums_the_same(tmp_path, reference, cells, reference_sums, monkeypatch):
    monkeypatch.setattr(single_cell, "BLOCK_NONZEROS", 1000)  # 24 blocks of cells
    monkeypatch.setattr(single_cell, "MTX_BLOCK_BYTES", 4096)  # about 40 blocks of text lines
    for layout in ("10x_mtx", "10x_h5"):
        ingest = read_study(sc_study(tmp_path, layout), reference=reference)
        got = pseudobulk_matrix(table(ingest, "sc_pseudobulk"), cells[1])
        for group, expected in reference_sums.items():
            np.testing.assert_array_equal(got[group], expected)


@pytest.mark.parametrize("layout", ["csr", "csc", "dense", "mtx"])
def test_pseudobulk_each_block_layout_sums_cell_by_cell(tmp_path, monkeypatch, layout):
    """The summation alone, on every block layout the readers yield (h5ad CSR / CSC / dense X in blocks of about
    40 values, Matrix Market text in blocks of 64 bytes), with cells left out (-1) and a feature subset: equal to
    a plain Python loop adding each cell's row of the dense matrix to its group."""
    import anndata

    rng = np.random.default_rng(3)
    dense = rng.integers(0, 4, size=(60, 9)) * (rng.random((60, 9)) < 0.3)
    dense[:, 4] = 0  # an empty feature
    dense[7] = 0  # an empty cell
    groups = rng.integers(-1, 4, size=60)
    groups[groups == 2] = 1  # group 2 has no cells: a zero row
    keep = np.array([0, 2, 3, 4, 8])
    expected = np.zeros((4, 9))
    for cell in range(60):
        if groups[cell] >= 0:
            expected[groups[cell]] += dense[cell]
    monkeypatch.setattr(single_cell, "BLOCK_NONZEROS", 40)
    monkeypatch.setattr(single_cell, "MTX_BLOCK_BYTES", 64)
    if layout == "mtx":
        folder = tmp_path / "m"
        folder.mkdir()
        cell, feature = np.nonzero(dense)
        (folder / "matrix.mtx").write_text("%%MatrixMarket matrix coordinate integer general\n"
                                           f"9 60 {cell.size}\n" + "".join(
                                               f"{f + 1} {c + 1} {dense[c, f]}\n" for c, f in zip(cell, feature,
                                                                                                strict=True)))
        (folder / "features.tsv").write_text("".join(f"G{i}\tG{i}\tGene Expression\n" for i in range(9)))
        (folder / "barcodes.tsv").write_text("".join(f"C{i}\n" for i in range(60)))
        matrix = single_cell.open_10x_mtx(folder, single_cell.mtx_files(folder, file="m"), file="m")
    else:
        x = {"csr": sp.csr_matrix, "csc": sp.csc_matrix, "dense": np.asarray}[layout](dense.astype(np.float32))
        anndata.AnnData(X=x, obs=pl.DataFrame({"i": [f"C{i}" for i in range(60)]}).to_pandas().set_index("i"),
                        var=pl.DataFrame({"i": [f"G{i}" for i in range(9)]}).to_pandas().set_index("i"),
                        ).write_h5ad(tmp_path / "x.h5ad")
        matrix = single_cell.open_h5ad(tmp_path / "x.h5ad", file="x.h5ad", layer=None)
    assert len(list(matrix.blocks())) > 3  # several blocks were read
    got = single_cell.pseudobulk(matrix, groups, n_groups=4, features=keep)
    np.testing.assert_array_equal(got, expected[:, keep])


def test_read_single_cell_composition_counts_cells_by_hand(tmp_path, reference, cells):
    ingest = read_study(sc_study(tmp_path, "10x_h5"), reference=reference)
    composition = table(ingest, "cell_type_composition")
    per_group = Counter(cells[2])
    per_sample = Counter(sample for sample, _ in cells[2])
    got = {(s, c): (n, f) for s, c, n, f in composition.select("sample_id", "cell_type", "n_cells", "fraction")
           .iter_rows()}
    assert got == {g: (n, pytest.approx(n / per_sample[g[0]])) for g, n in per_group.items()}
    n_cells = dict(table(ingest, "sc_pseudobulk").select("sample_id", "cell_type", "n_cells").unique()
                   .select(pl.concat_str("sample_id", "cell_type", separator="/"), "n_cells").iter_rows())
    assert n_cells == {f"{s}/{c}": n for (s, c), n in per_group.items()}


def test_read_single_cell_profiles_are_rna_counts_samples_with_attributes(tmp_path, reference, reference_sums):
    ingest = read_study(sc_study(tmp_path, "10x_h5"), reference=reference)
    counts = table(ingest, "rna_counts")
    sums = dict(counts.group_by("sample_id").agg(pl.col("count").sum()).iter_rows())
    assert sums == {f"{s}__{c}": float(v.sum()) for (s, c), v in reference_sums.items()}
    samples = table(ingest, "samples")
    assert set(samples["sample_id"]) == {f"pbmc_{n}" for n in range(1, 7)} | set(sums)
    assert dict(samples.select("sample_id", "subject_id").iter_rows())["pbmc_4__monocyte"] == "pbmc_4"
    attributes = table(ingest, "sample_attributes").filter(pl.col("sample_id") == "pbmc_4__monocyte")
    assert dict(attributes.select("attribute", "value").iter_rows()) == {
        "group": "b", "cell_type": "monocyte", "parent_sample_id": "pbmc_4"}  # group: samples.tsv of pbmc_4


def test_read_single_cell_keeps_unmapped_features_with_null_gene(tmp_path, reference):
    ingest = read_study(sc_study(tmp_path, "10x_mtx"), reference=reference)
    gene_map = table(ingest, "gene_id_map")
    unmapped = set(gene_map.filter(pl.col("status") != "mapped")["feature_id"])
    assert unmapped, "chr21 has clone-based ids the reference does not know"
    rows = table(ingest, "sc_pseudobulk").filter(pl.col("feature_id").is_in(list(unmapped)))
    assert rows.height == len(unmapped) * 12
    assert rows["gene_id"].null_count() == rows.height


def test_read_single_cell_log_normalised_h5ad_names_file_and_layers(tmp_path, reference):
    folder = tmp_path / "s"
    folder.mkdir()
    shutil.copy(LOGNORM, folder / "pbmc.h5ad")
    (folder / "study.yaml").write_text(
        "study_id: s\nname: n\nassays:\n  - {name: sc, kind: sc_rna_counts, format: h5ad, path: pbmc.h5ad, "
        "sample_column: louvain, cell_type_column: bulk_labels}\n")
    (issue,) = read_study(folder, reference=reference).issues.errors
    assert (issue.file, issue.code, issue.column) == ("pbmc.h5ad", "not_counts", "layer")
    assert "X holds non-integer values" in issue.message
    assert "has no layers" in issue.message
    assert "layer: counts" in issue.message


def test_read_single_cell_fractional_10x_h5_advises_the_cell_ranger_output_not_a_layer(tmp_path, reference):
    """A Cell Ranger matrix has no layers: the refusal names the file and no `layer` key (which 10x_h5 lacks)."""
    import h5py

    folder = sc_study(tmp_path, "10x_h5")
    with h5py.File(folder / "matrix.h5", "r+") as h5:
        data = h5["matrix/data"][...].astype(np.float32)
        data[3] = 0.5
        del h5["matrix/data"]
        h5["matrix/data"] = data
    (issue,) = read_study(folder, reference=reference).issues.errors
    assert (issue.file, issue.code, issue.column) == ("matrix.h5", "not_counts", None)
    assert "matrix/data holds non-integer values (e.g. 0.5)" in issue.message
    assert "as Cell Ranger wrote it" in issue.message
    assert "layer" not in issue.message


def test_read_single_cell_log_normalised_x_without_layer_lists_the_layers(tmp_path, reference):
    folder = sc_study(tmp_path, "h5ad")
    text = (folder / "study.yaml").read_text().replace("    layer: counts\n", "")
    (folder / "study.yaml").write_text(text)
    (issue,) = read_study(folder, reference=reference).issues.errors
    assert (issue.file, issue.code) == ("cells.h5ad", "not_counts")
    assert "declare `layer:`" in issue.message
    assert "['counts']" in issue.message


def test_read_single_cell_unknown_layer_lists_the_layers(tmp_path, reference):
    folder = sc_study(tmp_path, "h5ad")
    (folder / "study.yaml").write_text((folder / "study.yaml").read_text().replace("layer: counts", "layer: raw"))
    (issue,) = read_study(folder, reference=reference).issues.errors
    assert (issue.file, issue.code, issue.column) == ("cells.h5ad", "unknown_layer", "layer")
    assert "['counts']" in issue.message


def test_read_single_cell_missing_annotation_column_is_located(tmp_path, reference):
    folder = sc_study(tmp_path, "10x_mtx")
    (folder / "study.yaml").write_text((folder / "study.yaml").read_text().replace(
        "cell_type_column: cell_type", "cell_type_column: celltype"))
    (issue,) = read_study(folder, reference=reference).issues.errors
    assert (issue.file, issue.line, issue.column, issue.code) == ("cells.tsv", 1, "celltype", "missing_column")
    assert "['barcode', 'sample', 'cell_type']" in issue.message


def test_read_single_cell_missing_obs_column_is_located(tmp_path, reference):
    folder = sc_study(tmp_path, "h5ad")
    (folder / "study.yaml").write_text((folder / "study.yaml").read_text().replace(
        "sample_column: sample", "sample_column: donor"))
    (issue,) = read_study(folder, reference=reference).issues.errors
    assert (issue.file, issue.column, issue.code) == ("cells.h5ad", "donor", "missing_column")
    assert "['sample', 'cell_type']" in issue.message


def test_read_single_cell_unknown_sample_goes_through_the_sample_resolver(tmp_path, reference):
    folder = sc_study(tmp_path, "10x_h5")
    (folder / "samples.tsv").write_text("sample_id\tgroup\npbmc_1\ta\npbmc_2\ta\npbmc_3\ta\npbmc_4\tb\npbmc_5\tb\n")
    errors = read_study(folder, reference=reference).issues.errors
    assert [(i.file, i.code, i.column) for i in errors] == [("cells.tsv", "unknown_sample", "pbmc_6")]


def test_read_single_cell_annotations_outside_the_study_are_refused(tmp_path, reference):
    folder = sc_study(tmp_path, "10x_mtx")
    (folder / "study.yaml").write_text((folder / "study.yaml").read_text().replace(
        "cell_annotations: cells.tsv", "cell_annotations: ../cells.tsv"))
    (issue,) = read_study(folder, reference=reference).issues.errors
    assert issue.code == "path_outside_study"
    assert issue.column == "assays.sc.cell_annotations"


def test_discover_study_requires_cell_annotations_for_10x(tmp_path):
    folder = sc_study(tmp_path, "10x_h5")
    (folder / "study.yaml").write_text((folder / "study.yaml").read_text().replace(
        "    cell_annotations: cells.tsv\n", ""))
    issues = IssueLog("s")
    assert discover_study(folder, issues=issues) is None
    (issue,) = issues.errors
    assert (issue.code, issue.column, issue.line) == ("invalid_manifest", "assays.0", 5)  # line of "- name: sc"
    assert "set `cell_annotations`" in issue.message


def test_study_issues_of_a_clean_single_cell_study_has_no_errors(tmp_path, reference):
    issues = study_issues(read_study(sc_study(tmp_path, "h5ad", samples=False), reference=reference))
    assert issues.filter(pl.col("severity") == "error").height == 0


def test_read_single_cell_legacy_h5ad_says_how_to_rewrite_it(tmp_path, reference):
    import h5py

    folder = tmp_path / "s"
    folder.mkdir()
    with h5py.File(folder / "old.h5ad", "w") as f:  # anndata 0.6 layout: obs as one compound dataset
        f["X"] = np.ones((2, 2), dtype=np.float32)
        f["obs"] = np.array([(b"c1", 0), (b"c2", 1)], dtype=[("index", "S2"), ("louvain", "i1")])
    (folder / "study.yaml").write_text(
        "study_id: s\nname: n\nassays:\n  - {name: sc, kind: sc_rna_counts, format: h5ad, path: old.h5ad, "
        "sample_column: louvain, cell_type_column: louvain}\n")
    (issue,) = read_study(folder, reference=reference).issues.errors
    assert (issue.file, issue.code) == ("old.h5ad", "unsupported_h5ad")
    assert "anndata.read_h5ad(path).write_h5ad(path)" in issue.message


def test_read_single_cell_repeated_barcode_with_cell_annotations_is_an_error(tmp_path, reference):
    """Annotations are joined by barcode: a barcode the matrix lists twice would give two cells one row's labels
    (a silent load before); an h5ad with repeated obs names keeps its per-row obs labels and only warns."""
    folder = sc_study(tmp_path, "10x_mtx")
    barcodes = folder / "matrix" / "barcodes.tsv.gz"
    lines = gzip.decompress(barcodes.read_bytes()).splitlines(keepends=True)
    barcodes.write_bytes(gzip.compress(b"".join([lines[0], lines[0], *lines[2:]])))
    (issue,) = read_study(folder, reference=reference).issues.errors
    assert (issue.file, issue.line, issue.code) == ("matrix/barcodes.tsv.gz", 2, "duplicate_cell_id")
    assert repr(lines[0].decode().strip()) in issue.message


def test_read_single_cell_blank_barcodes_are_a_located_error(tmp_path, reference):
    # polars reads a blank line of barcodes.tsv as a missing id: two of them are a repeated (blank) barcode
    folder = sc_study(tmp_path, "10x_mtx")
    barcodes = folder / "matrix" / "barcodes.tsv.gz"
    lines = gzip.decompress(barcodes.read_bytes()).splitlines(keepends=True)
    barcodes.write_bytes(gzip.compress(b"".join([lines[0], b"\n", b"\n", *lines[3:]])))
    (issue,) = read_study(folder, reference=reference).issues.errors
    assert (issue.file, issue.line, issue.code) == ("matrix/barcodes.tsv.gz", 3, "duplicate_cell_id")
