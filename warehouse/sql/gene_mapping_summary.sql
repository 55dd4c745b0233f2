-- gene_mapping_summary: per study and assay, how many source identifiers were mapped, ambiguous, unmapped
-- or duplicates; mapped_fraction is mapped / all.
-- @identifiers Distinct source identifiers of the assay.
-- @mapped Identifiers mapped to a gene.
-- @ambiguous Identifiers pointing to several genes (not guessed).
-- @unmapped Identifiers not found (kept with a NULL gene_id).
-- @duplicate Identifiers whose gene another identifier of the assay already holds.
-- @mapped_fraction mapped / identifiers.
CREATE VIEW gene_mapping_summary AS
SELECT study_id, assay,
       count(*) AS identifiers,
       count(*) FILTER (WHERE status = 'mapped') AS mapped,
       count(*) FILTER (WHERE status = 'ambiguous') AS ambiguous,
       count(*) FILTER (WHERE status = 'unmapped') AS unmapped,
       count(*) FILTER (WHERE status = 'duplicate') AS duplicate,
       round(count(*) FILTER (WHERE status = 'mapped') / count(*), 4) AS mapped_fraction
FROM gene_id_map
GROUP BY study_id, assay;
