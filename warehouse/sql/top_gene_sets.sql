-- top_gene_sets: per study, contrast and method, the gene sets ranked by FDR (then p-value), with the rank;
-- filter rank <= 10 for the top ten of each contrast.
-- @rank 1 = smallest FDR within the study, contrast and method.
-- @direction up when the set is enriched among up-regulated genes (NES > 0, or ora_up), else down.
CREATE VIEW top_gene_sets AS
SELECT study_id, contrast, method, library, gene_set, size, es, nes, pvalue, fdr, leading_edge,
       CASE WHEN method = 'ora_up' OR nes > 0 THEN 'up' ELSE 'down' END AS direction,
       row_number() OVER (PARTITION BY study_id, contrast, method ORDER BY fdr NULLS LAST, pvalue NULLS LAST,
                          gene_set) AS rank
FROM gene_set_enrichment;
