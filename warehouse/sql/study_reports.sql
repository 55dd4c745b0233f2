-- study_reports: one row per published study with the path of its HTML report (sample QC, correlation, PCA,
-- clusters, DE plots, omics coverage, enrichment, signature scores, biomarker candidates, RNA-protein correlation),
-- relative to the warehouse folder; open it from a file, no server needed.
-- The page is written by the study_report asset right after the study is published.
-- @report_path The study's report, relative to the warehouse folder (reports/<study>/index.html).
CREATE VIEW study_reports AS
SELECT study_id, name, 'reports/' || study_id || '/index.html' AS report_path
FROM studies;
