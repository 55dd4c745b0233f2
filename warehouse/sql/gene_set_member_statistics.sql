-- gene_set_member_statistics: each member of each gene set with its DESeq2 results in every contrast of the
-- studies that use the library (shared libraries: every study; study libraries: that study).
-- @identifier Member identifier as given in the library.
-- @symbol Official symbol of the member's gene (genes dimension).
-- @sign +1 / -1 for up / down members of a signature; NULL for plain sets.
-- @weight Weight of the member in a weighted signature.
CREATE VIEW gene_set_member_statistics AS
SELECT d.study_id, d.contrast, d.assay, m.library, m.gene_set, m.identifier, m.gene_id, g.symbol, m.sign,
       m.weight, d.base_mean, d.log2_fold_change, d.stat, d.pvalue, d.padj
FROM gene_set_members m
JOIN differential_expression d ON d.gene_id = m.gene_id AND (m.study_id IS NULL OR m.study_id = d.study_id)
LEFT JOIN genes g ON g.gene_id = m.gene_id;
