-- gene_mapping_summary: per study and assay, how many source identifiers were mapped, ambiguous, unmapped
-- or duplicates, and the fraction whose table rows carry a gene_id.
-- @identifiers Distinct source identifiers of the assay.
-- @mapped Identifiers mapped to a gene.
-- @ambiguous Identifiers pointing to several genes (not guessed).
-- @unmapped Identifiers not found (kept with a NULL gene_id).
-- @duplicate Identifiers whose gene another identifier of the assay already holds.
-- @with_gene Identifiers whose rows carry a gene_id: the mapped ones, and for protein assays the duplicates too (several phosphosites or antibodies of one gene each keep it; RNA duplicates get a NULL gene_id).
-- @mapped_fraction with_gene / identifiers.
CREATE VIEW gene_mapping_summary AS
WITH protein_assays AS (SELECT DISTINCT study_id, assay FROM protein_abundance),
counted AS (
    SELECT m.study_id, m.assay,
           count(*) AS identifiers,
           count(*) FILTER (WHERE m.status = 'mapped') AS mapped,
           count(*) FILTER (WHERE m.status = 'ambiguous') AS ambiguous,
           count(*) FILTER (WHERE m.status = 'unmapped') AS unmapped,
           count(*) FILTER (WHERE m.status = 'duplicate') AS duplicate,
           bool_or(p.assay IS NOT NULL) AS is_protein
    FROM gene_id_map AS m
    LEFT JOIN protein_assays AS p USING (study_id, assay)
    GROUP BY m.study_id, m.assay
)
SELECT study_id, assay, identifiers, mapped, ambiguous, unmapped, duplicate,
       mapped + CASE WHEN is_protein THEN duplicate ELSE 0 END AS with_gene,
       round((mapped + CASE WHEN is_protein THEN duplicate ELSE 0 END) / identifiers, 4) AS mapped_fraction
FROM counted;
