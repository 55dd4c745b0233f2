-- gene_set_overlap: per study, assay and gene set (shared libraries and the study's own), how many members the
-- set lists, how many mapped to a gene, and how many of those the assay measures (rna_normalized with a
-- log2_value). Sets with fewer than 5 measured members are not scored (signature_scores).
-- @members Distinct member identifiers as given in the library.
-- @members_mapped Members the gene resolver mapped to a gene_id.
-- @members_measured Mapped members with normalised expression in the study's assay.
-- @scored Whether signature_scores holds scores of the set for the assay.
CREATE VIEW gene_set_overlap AS
WITH measured AS (
    SELECT DISTINCT study_id, assay, gene_id FROM rna_normalized
    WHERE gene_id IS NOT NULL AND log2_value IS NOT NULL
),
assays AS (SELECT DISTINCT study_id, assay FROM measured),
sets AS (
    SELECT a.study_id, a.assay, m.library, m.gene_set, m.identifier, m.gene_id
    FROM assays a JOIN gene_set_members m ON m.study_id IS NULL OR m.study_id = a.study_id
),
scored AS (SELECT DISTINCT study_id, assay, library, gene_set FROM signature_scores)
SELECT s.study_id, s.assay, s.library, s.gene_set,
       count(DISTINCT s.identifier) AS members,
       count(DISTINCT s.identifier) FILTER (WHERE s.gene_id IS NOT NULL) AS members_mapped,
       count(DISTINCT ms.gene_id) AS members_measured,
       bool_or(sc.gene_set IS NOT NULL) AS scored
FROM sets s
LEFT JOIN measured ms ON ms.study_id = s.study_id AND ms.assay = s.assay AND ms.gene_id = s.gene_id
LEFT JOIN scored sc ON sc.study_id = s.study_id AND sc.assay = s.assay AND sc.library = s.library
                   AND sc.gene_set = s.gene_set
GROUP BY s.study_id, s.assay, s.library, s.gene_set;
