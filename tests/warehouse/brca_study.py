"""A study folder over the 20-sample TCGA BRCA subset (mixOmics mRNA + RPPA) with hand-written CN and mutations.

The mRNA file is transposed here into genes x samples (log2 as given); copy-number ramps and mutation calls are
written here, so their expected values are hand-computed (:func:`ramp`).
"""

from __future__ import annotations

from pathlib import Path

import polars as pl

STUDY = """\
study_id: {study_id}
name: BRCA mRNA + RPPA subset
organism: human
reference_genome: GRCh38
assays:
  - {name: mrna, kind: rna_abundance, format: matrix, path: mrna.tsv, measure: log2}
  - {name: rppa, kind: protein_abundance, format: rppa, path: protein.tsv, platform: rppa,
     options: {orientation: samples_by_features}}
  - {name: mut, kind: mutation_status, format: matrix, path: mutations.tsv}
  - {name: cna, kind: copy_number, format: log2, path: cna.tsv}
"""

CN_GENES = {"GATA3": 3, "AR": 5, "NDRG2": 2}


def ramp(i: int, k: int) -> float:
    """Copy-number log2 ratio written for sample ``i`` of a gene with step ``k``."""
    return round((i * k) % 7 / 4 - 0.75, 2)


def write_brca_study(study: Path, shared_data: Path, *, study_id: str = "brca") -> tuple[pl.DataFrame, pl.DataFrame]:
    """Write the study folder; return the source mRNA and protein frames (samples as rows)."""
    study.mkdir(parents=True)
    folder = shared_data / "tcga_brca_mixomics"
    mrna = pl.read_csv(folder / "train_mrna.tsv", separator="\t")
    protein = pl.read_csv(folder / "train_protein.tsv", separator="\t")
    samples = mrna["sample_id"].to_list()
    wide = mrna.drop("sample_id").transpose(include_header=True, header_name="gene", column_names=samples)
    wide.write_csv(study / "mrna.tsv", separator="\t")
    (study / "protein.tsv").write_text((folder / "train_protein.tsv").read_text())
    # GATA3 (RPPA) and NDRG2 (mRNA): mutated in every third sample; the first sample not profiled (NA)
    status = ["NA"] + ["1" if i % 3 == 1 else "0" for i in range(1, len(samples))]
    (study / "mutations.tsv").write_text("gene\t" + "\t".join(samples) + "".join(
        f"\n{g}\t" + "\t".join(status) for g in ("GATA3", "NDRG2")) + "\n")
    # copy number: hand-made ramps, so CN-RNA and CN-protein correlations have a reference
    cn = {g: [f"{ramp(i, k):.2f}" for i in range(len(samples))] for g, k in CN_GENES.items()}
    (study / "cna.tsv").write_text("gene\t" + "\t".join(samples) + "\n"
                                   + "".join(f"{g}\t" + "\t".join(v) + "\n" for g, v in cn.items()))
    (study / "study.yaml").write_text(STUDY.replace("{study_id}", study_id))
    return mrna, protein
