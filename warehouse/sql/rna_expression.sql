-- rna_expression: raw counts with gene symbols and subjects; one row per study, assay, sample and feature.
-- Unmapped features are kept (gene_id and symbol NULL) so sums per sample equal the library size.
-- @symbol Official symbol of gene_id (NULL when unmapped).
CREATE VIEW rna_expression AS
SELECT c.study_id, c.assay, c.sample_id, s.subject_id, c.gene_id, g.symbol, c.feature_id, c.count
FROM rna_counts AS c
LEFT JOIN genes AS g USING (gene_id)
LEFT JOIN samples AS s USING (study_id, sample_id);
