"""Make the cell annotations of the 10x chr21 subset and the single-cell example study from it (deterministic).

Run from the repository root: ``.venv/bin/python tests/data/single_cell_10x_chr21/make_example.py``. Writes
``cells.tsv`` here, and ``examples/pbmc_chr21/`` (``cells.h5ad``, ``samples.tsv``). The counts are the real ones;
what is made here is the annotation (see SOURCE.md):

- sample: ``pbmc_<n>``, n = 1 + blake2b(barcode) mod 6 (cells spread over six pseudo-donors, stable across runs);
- cell type: ``monocyte`` when the cell has at least 3 counts of CSTB (cystatin B, a monocyte marker and the
  most variable chr21 gene of the set), else ``lymphocyte``;
- group: pbmc_1-3 ``a``, pbmc_4-6 ``b`` (an arbitrary split, so a DE contrast has something to run on; no
  difference between the groups is expected).

The example h5ad holds the scanpy-style log-normalised matrix in X (normalise_total to 1e4, log1p) and the raw
counts in ``layers["counts"]``, as an analyst's file usually does; var names are the gene symbols.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.sparse as sp

HERE = Path(__file__).parent
EXAMPLE = Path("examples/pbmc_chr21")
SAMPLES = 6
MONOCYTE_CSTB = 3


def sample_of(barcode: str) -> str:
    return f"pbmc_{1 + int.from_bytes(hashlib.blake2b(barcode.encode(), digest_size=8).digest(), 'big') % SAMPLES}"


def main() -> None:
    cells = sc.read_10x_h5(HERE / "filtered_feature_bc_matrix.h5")
    counts = sp.csr_matrix(cells.X, dtype=np.float32)
    cstb = np.asarray(counts[:, cells.var_names.get_loc("CSTB")].todense()).ravel()
    obs = pd.DataFrame({"sample": [sample_of(b) for b in cells.obs_names],
                        "cell_type": np.where(cstb >= MONOCYTE_CSTB, "monocyte", "lymphocyte")},
                       index=cells.obs_names.copy())
    obs.rename_axis("barcode").to_csv(HERE / "cells.tsv", sep="\t")
    example = ad.AnnData(X=counts.copy(), obs=obs.astype("category"), var=cells.var[["gene_ids"]].copy())
    example.layers["counts"] = counts
    sc.pp.normalize_total(example, target_sum=1e4)
    sc.pp.log1p(example)
    EXAMPLE.mkdir(parents=True, exist_ok=True)
    example.write_h5ad(EXAMPLE / "cells.h5ad", compression="gzip")
    samples = pd.DataFrame({"sample_id": [f"pbmc_{n}" for n in range(1, SAMPLES + 1)],
                            "group": ["a"] * (SAMPLES // 2) + ["b"] * (SAMPLES - SAMPLES // 2)})
    samples.to_csv(EXAMPLE / "samples.tsv", sep="\t", index=False)


if __name__ == "__main__":
    main()
