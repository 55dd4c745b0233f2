"""The bundled ``examples/brca`` (mixOmics TCGA BRCA mRNA + RPPA, PAM50 subtype) through ``omicsdw build``.

It is the example that scores the shipped Hallmark library (its 200 genes reach 16 Hallmark sets with >= 5
measured genes; airway's 20-gene window reaches none) and has RNA and protein of the same samples. What the shipped
data give, checked against the files: mRNA values land unchanged, the RNA side of ``basal_vs_luma`` is Welch on
log2 (no counts), and the 200 mRNA genes and the 142 antibodies share no gene, so no RNA-protein correlation or
biomarker candidate exists (the CPTAC median Spearman of 0.4-0.5 cannot be compared on this data).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from tests.warehouse.catalog_sql import sql as _sql
from warehouse.cli import main

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "brca"


@pytest.fixture(scope="module")
def built(tmp_path_factory, example_landing) -> Path:
    tmp = tmp_path_factory.mktemp("brca_example")
    landing = example_landing(tmp, "brca")
    assert main(["build", "--landing", str(landing), "--warehouse", str(tmp / "wh")]) == 0
    return tmp / "wh"


def test_example_scores_hallmark_with_every_method(built):
    found = _sql(built, "SELECT method, count(DISTINCT gene_set), count(*) FROM signature_scores "
                        "WHERE library = 'msigdb_hallmark' GROUP BY method ORDER BY method")
    assert found == [(m, 16, 16 * 150) for m in ("singscore", "ssgsea", "weighted")]


def test_example_rna_and_protein_land_unchanged_and_share_no_gene(built):
    mrna = pl.read_csv(EXAMPLE / "mrna.tsv", separator="\t")
    protein = pl.read_csv(EXAMPLE / "protein.tsv", separator="\t")
    rows = _sql(built, "SELECT sample_id, symbol, rna_log2, protein_log2 FROM gene_sample_omics "
                       "WHERE symbol IN ('NDRG2', 'GATA3')")
    order = mrna["sample_id"].to_list()
    for sample_id, symbol, rna_log2, protein_log2 in rows:
        i = order.index(sample_id)
        if symbol == "NDRG2":
            assert (rna_log2, protein_log2) == (mrna["NDRG2"][i], None)
        else:
            assert (rna_log2, protein_log2) == (None, protein["GATA3"][i])
    assert len(rows) == 2 * 150
    both = _sql(built, "SELECT count(*) FROM gene_sample_omics WHERE rna_log2 IS NOT NULL "
                       "AND protein_log2 IS NOT NULL")
    assert both == [(0,)]
    assert _sql(built, "SELECT count(*) FROM biomarker_candidates") == [(0,)]
