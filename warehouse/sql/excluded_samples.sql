-- excluded_samples: one row per study, count assay and sample that failed QC in a study whose study.yaml says
-- `qc: exclude_failed: true`; normalisation, DE, signatures, enrichment, cross-omics, PCA / clusters and feature
-- sets of that assay do not contain it. The Delta commits of those tables record the same list
-- (omicsdw.excluded_samples).
-- @qc_flags The QC checks the sample failed.
CREATE VIEW excluded_samples AS
SELECT study_id, assay, sample_id, qc_flags, library_size, detected_genes
FROM sample_qc
WHERE excluded;
