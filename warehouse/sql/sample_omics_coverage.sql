-- sample_omics_coverage: one row per sample with the omics layers it has, so analysts see which samples
-- can be joined across layers.
-- @has_rna_counts The sample has raw RNA counts.
-- @has_rna_abundance The sample has RNA abundances.
-- @has_variants The sample has variant rows.
-- @has_mutation_status The sample has gene mutation status rows.
-- @has_copy_number The sample has gene-level copy number.
-- @has_cn_segments The sample has copy-number segments.
-- @has_protein_abundance The sample has protein abundance.
-- @has_copy_number_peaks The sample has GISTIC 2.0 peak calls (copy_number_peak_calls).
-- @n_layers Number of layers with data for the sample.
-- @layers Names of those layers.
CREATE VIEW sample_omics_coverage AS
WITH layers AS (
    SELECT DISTINCT study_id, sample_id, 'rna_counts' AS layer FROM rna_counts
    UNION ALL SELECT DISTINCT study_id, sample_id, 'rna_abundance' FROM rna_abundance
    UNION ALL SELECT DISTINCT study_id, sample_id, 'variants' FROM variants
    UNION ALL SELECT DISTINCT study_id, sample_id, 'mutation_status' FROM gene_mutation_status
    UNION ALL SELECT DISTINCT study_id, sample_id, 'copy_number' FROM copy_number
    UNION ALL SELECT DISTINCT study_id, sample_id, 'cn_segments' FROM cn_segments
    UNION ALL SELECT DISTINCT study_id, sample_id, 'protein_abundance' FROM protein_abundance
    UNION ALL SELECT DISTINCT study_id, sample_id, 'copy_number_peaks' FROM copy_number_peak_calls
)
SELECT s.study_id, s.sample_id, s.subject_id,
       bool_or(l.layer = 'rna_counts') IS TRUE AS has_rna_counts,
       bool_or(l.layer = 'rna_abundance') IS TRUE AS has_rna_abundance,
       bool_or(l.layer = 'variants') IS TRUE AS has_variants,
       bool_or(l.layer = 'mutation_status') IS TRUE AS has_mutation_status,
       bool_or(l.layer = 'copy_number') IS TRUE AS has_copy_number,
       bool_or(l.layer = 'cn_segments') IS TRUE AS has_cn_segments,
       bool_or(l.layer = 'protein_abundance') IS TRUE AS has_protein_abundance,
       bool_or(l.layer = 'copy_number_peaks') IS TRUE AS has_copy_number_peaks,
       count(DISTINCT l.layer) AS n_layers,
       list_sort(list(DISTINCT l.layer) FILTER (WHERE l.layer IS NOT NULL)) AS layers
FROM samples AS s
LEFT JOIN layers AS l USING (study_id, sample_id)
GROUP BY s.study_id, s.sample_id, s.subject_id;
