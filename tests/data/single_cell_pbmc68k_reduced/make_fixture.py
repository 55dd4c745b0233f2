"""Rewrite scanpy's bundled ``10x_pbmc68k_reduced.h5ad`` (anndata 0.6 layout) as a current AnnData file.

Run from the repository root with the dev environment: ``.venv/bin/python
tests/data/single_cell_pbmc68k_reduced/make_fixture.py``. X of the result is the file's ``raw.X`` (log-normalised
expression of 765 genes, as shipped; no value changed), obs keeps the real ``bulk_labels`` (cell type),
``louvain`` and ``phase`` columns; no layer. Written with gzip compression to stay small.
"""

from pathlib import Path

import anndata as ad
import scanpy as sc

HERE = Path(__file__).parent


def main() -> None:
    cells = sc.datasets.pbmc68k_reduced()
    raw = cells.raw.to_adata()
    fixture = ad.AnnData(X=raw.X.copy(), obs=cells.obs[["bulk_labels", "louvain", "phase"]].copy(),
                         var=raw.var[[]].copy())
    fixture.write_h5ad(HERE / "pbmc68k_lognorm.h5ad", compression="gzip")


if __name__ == "__main__":
    main()
