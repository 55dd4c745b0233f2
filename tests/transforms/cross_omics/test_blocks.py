"""gene_sample_omics block by block against a plain-Python reference of the source rules, in one and many blocks."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from schemas.tables import polars_schema
from transforms.cross_omics.blocks import gene_sample_omics_blocks
from transforms.cross_omics.joins import gene_sample_omics

SAMPLES = [f"S{j}" for j in range(10)]


def _rows(table: str, rows: list[dict]) -> pl.LazyFrame:
    schema = polars_schema(table)
    return pl.DataFrame([{c: r.get(c, "s" if c == "study_id" else None) for c in schema} for r in rows],
                        schema=schema).lazy()


def _inputs(*, rna_sources: bool, protein_sources: bool, unscored: bool) -> dict[str, list[dict]]:
    """Rows of a small study; ``*_sources``: several sources for some genes (else one per gene, every row kept);
    ``unscored``: gene 13's only RNA source has z-scores and no log2 value (it never wins).
    """
    rng = np.random.default_rng(11)
    rna, protein = [], []

    def add_rna(assay: str, source: str, feature: str, gene: int, *, zscore_only: bool = False) -> None:
        for s in SAMPLES:
            value = None if rng.random() < 0.15 else float(rng.normal(8, 2))
            rna.append({"assay": assay, "source": source, "sample_id": s, "gene_id": gene, "feature_id": feature,
                        "log2_value": None if zscore_only else value,
                        "zscore": None if value is None else (value - 8) / 2})

    def add_protein(assay: str, platform: str, feature: str, genes: list[int], *, phospho: bool = False,
                    ambiguous: bool | None = False, samples: list[str] = SAMPLES) -> None:
        for s in samples:
            value = None if rng.random() < 0.1 else float(rng.normal(20, 3))
            for gene in genes:
                protein.append({"assay": assay, "platform": platform, "sample_id": s, "gene_id": gene,
                                "feature_id": feature, "is_phospho": phospho, "is_ambiguous": ambiguous,
                                "log2_abundance": value})

    for gene in range(1, 9):
        add_rna("counts", "counts", f"G{gene}", gene)
    if rna_sources:
        add_rna("counts", "counts", "G2b", 2)  # a second feature of gene 2: the one with more samples wins
        for gene in range(1, 13):
            add_rna("tpm", "abundance", f"G{gene}", gene)  # counts win where there are any
        for gene in (11, 12, 13):
            add_rna("zs", "abundance", f"G{gene}", gene, zscore_only=True)  # never wins: no log2 value
    elif unscored:
        add_rna("zs", "abundance", "G13", 13, zscore_only=True)
    for gene in range(1, 9):
        add_protein("ms", "ms", f"P{gene}", [gene], ambiguous=None if gene == 2 else False,
                    samples=[*SAMPLES, "S10"])  # S10: protein only
    if protein_sources:
        add_protein("rppa", "rppa", "ab4", [4])  # MS wins
        add_protein("rppa", "rppa", "ab9", [9])  # the only source of gene 9
        add_protein("ms", "ms", "P3p", [3], phospho=True)  # total protein wins
        add_protein("ms", "ms", "P10;P11", [10, 11], ambiguous=True)  # shared group: MS before RPPA
        add_protein("rppa", "rppa", "ab10", [10])
    for gene, samples in ((12, SAMPLES[:3]), (13, SAMPLES[:1])):  # SD 0 and a single value: no z-score
        protein.extend({"assay": "ms", "platform": "ms", "sample_id": s, "gene_id": gene, "feature_id": f"P{gene}",
                        "is_phospho": False, "is_ambiguous": False, "log2_abundance": 5.0} for s in samples)
    cn = [{"assay": "log2", "sample_id": s, "gene_id": g, "feature_id": f"G{g}", "log2_ratio": float(rng.normal())}
          for s in SAMPLES[:4] for g in (5, 14)]  # gene 14: copy number only
    return {"rna_normalized": rna, "protein_abundance": protein, "copy_number": cn}


def _winner(rows: list[dict], rank) -> dict[int, tuple]:
    """Gene -> (assay, feature_id) of the best source: lowest rank, then most values, then name."""
    sources: dict[tuple, list[dict]] = {}
    for r in rows:
        sources.setdefault((r["gene_id"], r["assay"], r["feature_id"]), []).append(r)
    best: dict[int, tuple] = {}
    for (gene, assay, feature), members in sorted(sources.items(), key=lambda kv: (
            rank(kv[1][0]), -sum(m["value"] is not None for m in kv[1]), kv[0][1], kv[0][2])):
        if gene not in best and any(m["value"] is not None for m in members):
            best[gene] = (assay, feature)
    return best


def _reference(inputs: dict[str, list[dict]], symbols: dict[int, str]) -> dict[tuple, dict]:
    """Expected rows by hand: one source per gene and layer, protein z-scores from numpy on the sorted values."""
    out: dict[tuple, dict] = {}

    def row(sample: str, gene: int) -> dict:
        return out.setdefault((sample, gene), {"symbol": symbols.get(gene), "rna_log2": None, "rna_zscore": None,
                                               "rna_assay": None, "protein_log2": None, "protein_zscore": None,
                                               "protein_assay": None, "protein_ambiguous": None, "cn_log2": None})

    rna = [{**r, "value": r["log2_value"]} for r in inputs["rna_normalized"]]
    best = _winner(rna, lambda r: r["source"] != "counts")
    for r in rna:
        if best.get(r["gene_id"]) == (r["assay"], r["feature_id"]) and (
                r["log2_value"] is not None or r["zscore"] is not None):
            row(r["sample_id"], r["gene_id"]).update(rna_log2=r["log2_value"], rna_zscore=r["zscore"],
                                                     rna_assay=r["assay"])
    protein = [{**r, "value": r["log2_abundance"]} for r in inputs["protein_abundance"]]
    best = _winner(protein, lambda r: (bool(r["is_phospho"]), r["platform"] != "ms", bool(r["is_ambiguous"])))
    kept = [r for r in protein if best.get(r["gene_id"]) == (r["assay"], r["feature_id"]) and r["value"] is not None]
    for gene in {r["gene_id"] for r in kept}:
        mine = [r for r in kept if r["gene_id"] == gene]
        values = np.sort([r["value"] for r in mine])
        mean, sd = np.mean(values), (np.std(values, ddof=1) if len(values) > 1 else np.nan)
        for r in mine:
            row(r["sample_id"], gene).update(
                protein_log2=r["value"], protein_zscore=float((r["value"] - mean) / sd) if sd > 0 else None,
                protein_assay=f"{r['assay']}:{r['feature_id']}", protein_ambiguous=bool(r["is_ambiguous"]))
    for r in inputs["copy_number"]:
        row(r["sample_id"], r["gene_id"])["cn_log2"] = r["log2_ratio"]
    return out


@pytest.mark.parametrize(("rna_sources", "protein_sources", "unscored"),
                         [(True, False, False), (False, True, True), (False, False, False)])
def test_gene_sample_omics_blocks_equal_the_source_rules_by_hand_in_one_and_many_blocks(tmp_path, rna_sources,
                                                                                        protein_sources, unscored):
    inputs = _inputs(rna_sources=rna_sources, protein_sources=protein_sources, unscored=unscored)
    tables = {t: _rows(t, inputs.get(t, [])) for t in ("rna_normalized", "protein_abundance", "copy_number",
                                                       "gene_mutation_status", "variants")}
    symbols = {g: f"SYM{g}" for g in range(1, 13)}  # 13 and 14 have no symbol
    genes = pl.LazyFrame({"gene_id": list(symbols), "symbol": list(symbols.values())})
    expected = _reference(inputs, symbols)
    columns = ["symbol", "rna_log2", "rna_zscore", "rna_assay", "protein_log2", "protein_zscore", "protein_assay",
               "protein_ambiguous", "cn_log2"]
    lazy = gene_sample_omics(*[tables[t] for t in ("rna_normalized", "protein_abundance", "copy_number",
                                                   "gene_mutation_status", "variants")], genes,
                             study_id="s", non_silent=["missense_variant"]).collect()
    for rows_per_block, blocks in ((10**9, 1), (20, 5)):
        paths = gene_sample_omics_blocks(tables, genes, tmp_path / str(rows_per_block), study_id="s",
                                         non_silent=["missense_variant"], rows_per_block=rows_per_block)
        assert len(paths) == 1 if blocks == 1 else len(paths) > blocks
        found = pl.read_parquet(paths)
        assert found.schema == polars_schema("gene_sample_omics")
        assert found.sort("gene_id", "sample_id").equals(lazy.sort("gene_id", "sample_id"))
        assert found["study_id"].unique().to_list() == ["s"]
        assert found["cn_call"].is_null().all()
        assert found["mutated"].is_null().all()
        got = {(r["sample_id"], r["gene_id"]): {c: r[c] for c in columns} for r in found.iter_rows(named=True)}
        assert got == expected  # floats exact: the same values, z-scores the same IEEE operations
