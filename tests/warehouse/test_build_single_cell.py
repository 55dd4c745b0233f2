"""End to end: the single-cell example (examples/pbmc_chr21) built like `make run`; DE within one cell type.

Expected figures come from the vendored 10x files (tests/data/single_cell_10x_chr21): counts read with
scipy.io.mmread, cells grouped with the csv module, DESeq2 size factors by hand with numpy.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import scipy.sparse as sp

from tests.warehouse.catalog_sql import sql as _sql
from warehouse.cli import main

pytestmark = pytest.mark.slow

TENX = Path(__file__).resolve().parents[1] / "data" / "single_cell_10x_chr21"


@pytest.fixture(scope="module")
def built(tmp_path_factory, example_landing) -> Path:
    tmp = tmp_path_factory.mktemp("sc")
    landing = example_landing(tmp, "pbmc_chr21")
    wh = tmp / "warehouse"
    assert main(["build", "--landing", str(landing), "--warehouse", str(wh)]) == 0
    return wh


@pytest.fixture(scope="module")
def monocyte_profiles() -> dict[str, np.ndarray]:
    """pbmc_n -> summed counts of its monocytes (features in file order), from the raw 10x files."""
    with gzip.open(TENX / "filtered_feature_bc_matrix" / "matrix.mtx.gz") as fh:
        counts = sp.csr_matrix(scipy.io.mmread(fh).T)
    with gzip.open(TENX / "filtered_feature_bc_matrix" / "barcodes.tsv.gz", "rt") as fh:
        barcodes = [line.strip() for line in fh]
    with open(TENX / "cells.tsv", newline="") as fh:
        labels = {row["barcode"]: row for row in csv.DictReader(fh, delimiter="\t")}
    profiles: dict[str, np.ndarray] = {}
    for i, barcode in enumerate(barcodes):
        if labels[barcode]["cell_type"] == "monocyte":
            sample = labels[barcode]["sample"]
            profiles[sample] = profiles.get(sample, 0) + counts.getrow(i).toarray().ravel()
    return profiles


def test_build_single_cell_example_tables_in_the_catalog(built):
    profiles = _sql(built, "SELECT count(DISTINCT sample_id) FROM rna_counts WHERE study_id = 'pbmc_chr21'")
    assert profiles == [(12,)]  # 6 samples x 2 cell types (cells.tsv)
    assert _sql(built, "SELECT count(*) FROM sc_pseudobulk") == [(12 * 507,)]  # 507 features (features.tsv)
    # awk -F'\t' '$2=="pbmc_1"' cells.tsv | cut -f3 | sort | uniq -c -> 152 lymphocyte, 54 monocyte
    rows = _sql(built, "SELECT cell_type, n_cells, fraction FROM cell_type_composition WHERE sample_id = 'pbmc_1' "
                       "ORDER BY cell_type")
    assert rows == [("lymphocyte", 152, pytest.approx(152 / 206)), ("monocyte", 54, pytest.approx(54 / 206))]
    comments = dict(_sql(built, "SELECT view_name, comment FROM duckdb_views() WHERE view_name IN "
                                "('sc_pseudobulk', 'cell_type_composition')"))
    assert comments["sc_pseudobulk"].startswith("Single-cell counts summed per sample and cell type")
    attributes = dict(_sql(built, "SELECT attribute, value FROM sample_attributes "
                                  "WHERE sample_id = 'pbmc_5__lymphocyte'"))
    assert attributes == {"group": "b", "cell_type": "lymphocyte", "parent_sample_id": "pbmc_5"}


def test_build_single_cell_de_within_one_cell_type_uses_its_profiles_only(built, monocyte_profiles):
    # DESeq2 base_mean = mean over the contrast's samples of count / size factor, the size factors being the
    # median of ratios to the geometric mean over genes counted in every sample: here the 6 monocyte profiles only
    counts = np.array([monocyte_profiles[f"pbmc_{n}"] for n in range(1, 7)]).T  # genes x samples
    positive = (counts > 0).all(axis=1)
    log_geomeans = np.log(counts[positive]).mean(axis=1)
    size_factors = np.exp(np.median(np.log(counts[positive]) - log_geomeans[:, None], axis=0))
    expected = (counts / size_factors).mean(axis=1)
    with gzip.open(TENX / "filtered_feature_bc_matrix" / "features.tsv.gz", "rt") as fh:
        symbols = [line.split("\t")[1] for line in fh]
    got = dict(_sql(built, "SELECT feature_id, base_mean FROM differential_expression "
                           "WHERE contrast = 'b_vs_a_monocyte'"))
    np.testing.assert_allclose([got[s] for s in symbols], expected, rtol=1e-9)
    tested = _sql(built, "SELECT count(pvalue) FROM differential_expression WHERE contrast = 'b_vs_a_monocyte'")
    assert tested[0][0] > 100
    # the other contrast compares the two cell types on all 12 profiles, paired by parent sample
    (row,) = _sql(built, "SELECT count(*), count(pvalue) FROM differential_expression "
                         "WHERE contrast = 'monocyte_vs_lymphocyte'")
    assert row[0] == 507
