"""Reading a feature set back: the positional fill of long rows equals the source matrix cell for cell."""

from __future__ import annotations

import numpy as np
import polars as pl

from warehouse.feature_sets import wide_frame


def test_wide_frame_read_in_small_sample_ranges_equals_the_source_matrix(shared_data, tmp_path):
    """Real TCGA BRCA mRNA values (20 samples) as two studies' long rows with holes, stored sorted in small row
    groups, read back 3 samples at a time: every cell is the source file's value, NULL where no row was stored.
    """
    source = pl.read_csv(shared_data / "tcga_brca_mixomics" / "train_mrna.tsv", separator="\t")
    genes = source.columns[1:]
    studies = pl.Series("study_id", ["b" if i % 2 else "a" for i in range(source.height)])
    long = (source.with_columns(studies).unpivot(index=["study_id", "sample_id"], variable_name="gene")
            .with_columns(("rna__" + pl.col("gene")).alias("feature")).drop("gene"))
    holes = np.random.default_rng(1).random(long.height) < 0.1
    long.filter(~pl.Series(holes)).sort("study_id", "sample_id", "feature").write_parquet(
        tmp_path / "values.parquet", row_group_size=500)
    keys = long.select("study_id", "sample_id").unique().sort("study_id", "sample_id")
    columns = [f"rna__{g}" for g in reversed(genes)]  # column order is the manifest's, not the stored order
    wide = wide_frame(pl.scan_parquet(tmp_path / "values.parquet"), keys, columns, read_samples=3)
    assert wide.columns == ["study_id", "sample_id", *columns]
    assert wide.select("study_id", "sample_id").equals(keys)
    held = dict(zip(zip(long["sample_id"], long["feature"], strict=True), holes, strict=True))
    rows = {r["sample_id"]: r for r in source.iter_rows(named=True)}
    cells = 0
    for record in wide.iter_rows(named=True):
        for gene in genes:
            found = record[f"rna__{gene}"]
            if held[(record["sample_id"], f"rna__{gene}")]:
                assert found is None
            else:
                assert found == rows[record["sample_id"]][gene]
                cells += 1
    assert cells == int((~holes).sum())
