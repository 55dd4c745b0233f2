-- omics_correlation_summary: one row per study, pair of layers and method: the distribution of per-gene
-- correlations. The published figure to compare RNA-protein with: CPTAC tumour proteomes have a median Spearman of
-- about 0.4-0.5 over thousands of genes (few genes, e.g. an RPPA panel, give a rough median only).
-- @layer_x First layer of the pair.
-- @layer_y Second layer of the pair.
-- @method spearman or pearson.
-- @n_genes Genes with a correlation (at least 5 samples with both values).
-- @median_r Median r over those genes.
-- @q25_r First quartile of r.
-- @q75_r Third quartile of r.
-- @fraction_positive Fraction of genes with r > 0.
-- @n_fdr_05 Genes with fdr < 0.05.
-- @r_histogram Genes per bin of r 0.1 wide, keyed by the bin's lower edge (-1.0 ... 0.9; r = 1 counts in 0.9).
CREATE VIEW omics_correlation_summary AS
SELECT study_id, layer_x, layer_y, method, count(r) AS n_genes, median(r) AS median_r,
       quantile_cont(r, 0.25) AS q25_r, quantile_cont(r, 0.75) AS q75_r,
       avg(CASE WHEN r > 0 THEN 1.0 ELSE 0.0 END) FILTER (WHERE r IS NOT NULL) AS fraction_positive,
       count(*) FILTER (WHERE fdr < 0.05) AS n_fdr_05,
       histogram(round(least(floor(r * 10), 9) / 10, 1)) FILTER (WHERE r IS NOT NULL) AS r_histogram
FROM omics_correlations
GROUP BY study_id, layer_x, layer_y, method;
