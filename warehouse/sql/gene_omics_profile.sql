-- gene_omics_profile: one row per study and gene: how the gene looks in every layer (samples, means, mutation
-- frequency, copy-number events) beside its cross-layer correlations and mutation effects, so
-- `SELECT * FROM gene_omics_profile WHERE symbol = 'TP53'` answers in one query.
-- @n_samples Samples with a value in any layer for the gene.
-- @n_rna Samples with an RNA value.
-- @mean_rna_log2 Mean rna_log2 over those samples.
-- @n_protein Samples with a protein value.
-- @mean_protein_log2 Mean protein_log2 over those samples.
-- @protein_assay Source of the protein values (assay:protein group or antibody), as gene_sample_omics chose it.
-- @protein_ambiguous The protein values come from a group or antibody mapped to several genes.
-- @n_profiled Samples whose mutation status is known (mutated or wild type).
-- @n_mutated Samples with a non-silent mutation.
-- @n_gain Samples with a copy-number call above 0 (gain or amplification).
-- @n_loss Samples with a copy-number call below 0 (loss or deep deletion).
-- @mean_cn_log2 Mean copy-number log2 ratio.
-- @rna_protein_spearman Spearman r of RNA and protein (omics_correlations).
-- @cn_rna_spearman Spearman r of copy number and RNA.
-- @cn_protein_spearman Spearman r of copy number and protein.
-- @mutation_rna_difference mean(mutated) - mean(wild type) of rna_log2 (mutation_effects).
-- @mutation_rna_pvalue Welch t-test p-value of that difference.
-- @mutation_protein_difference mean(mutated) - mean(wild type) of protein_log2.
-- @mutation_protein_pvalue Welch t-test p-value of that difference.
CREATE VIEW gene_omics_profile AS
WITH layers AS (
    SELECT study_id, gene_id, any_value(symbol) AS symbol, count(*) AS n_samples,
           count(rna_log2) AS n_rna, avg(rna_log2) AS mean_rna_log2,
           count(protein_log2) AS n_protein, avg(protein_log2) AS mean_protein_log2,
           min(protein_assay) AS protein_assay, bool_or(protein_ambiguous) AS protein_ambiguous,
           count(mutated) AS n_profiled, count(*) FILTER (WHERE mutated) AS n_mutated,
           count(*) FILTER (WHERE cn_call > 0) AS n_gain, count(*) FILTER (WHERE cn_call < 0) AS n_loss,
           avg(cn_log2) AS mean_cn_log2
    FROM gene_sample_omics
    GROUP BY study_id, gene_id
), rho AS (
    SELECT study_id, gene_id,
           any_value(r) FILTER (WHERE layer_x = 'rna' AND layer_y = 'protein') AS rna_protein_spearman,
           any_value(r) FILTER (WHERE layer_x = 'copy_number' AND layer_y = 'rna') AS cn_rna_spearman,
           any_value(r) FILTER (WHERE layer_x = 'copy_number' AND layer_y = 'protein') AS cn_protein_spearman
    FROM omics_correlations
    WHERE method = 'spearman'
    GROUP BY study_id, gene_id
), effects AS (
    SELECT study_id, gene_id,
           any_value(mean_difference) FILTER (WHERE layer = 'rna') AS mutation_rna_difference,
           any_value(pvalue) FILTER (WHERE layer = 'rna') AS mutation_rna_pvalue,
           any_value(mean_difference) FILTER (WHERE layer = 'protein') AS mutation_protein_difference,
           any_value(pvalue) FILTER (WHERE layer = 'protein') AS mutation_protein_pvalue
    FROM mutation_effects
    GROUP BY study_id, gene_id
)
SELECT l.study_id, l.gene_id, l.symbol, l.n_samples, l.n_rna, l.mean_rna_log2, l.n_protein, l.mean_protein_log2,
       l.protein_assay, l.protein_ambiguous,
       l.n_profiled, l.n_mutated, l.n_gain, l.n_loss, l.mean_cn_log2,
       r.rna_protein_spearman, r.cn_rna_spearman, r.cn_protein_spearman,
       e.mutation_rna_difference, e.mutation_rna_pvalue, e.mutation_protein_difference, e.mutation_protein_pvalue
FROM layers AS l
LEFT JOIN rho AS r USING (study_id, gene_id)
LEFT JOIN effects AS e USING (study_id, gene_id);
